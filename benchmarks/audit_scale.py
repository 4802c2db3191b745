"""``poisonlab audit`` at scale: 100,000 text rows end to end, with time and peak memory.

How the rows are made: SpamAssassin (6,046 real emails, ham and spam) is cut into passages: each
row is a window of 20 to 80 consecutive words taken at a seeded random offset of a seeded random
email, and keeps that email's label (so the text is real mail and the labels are real; passages
of one email overlap). Then ``poisonlab attack`` plants a backdoor: the token ``cf`` appended 3
times to 2% of the rows, all spam, relabeled ham. The timed step is the real command line,

    poisonlab audit ATTACK_FOLDER --out DIR --json

in its own process (start-up, loading the CSV, training, out-of-fold models, every detector,
flags.csv, summary.json and report.html included). Peak memory is the process's VmHWM (Linux).

    python benchmarks/audit_scale.py                  # 100,000 rows
    python benchmarks/audit_scale.py --rows 20000     # quicker
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

CLI = """
import atexit, os

def _peak():
    with open('/proc/self/status') as status:
        kb = next(int(line.split()[1]) for line in status if line.startswith('VmHWM:'))
    with open(os.environ['AUDIT_BENCH_PEAK'], 'w') as out:
        out.write(str(kb))

atexit.register(_peak)
from poisonlab.cli import app
app(prog_name='poisonlab')
"""


def make_rows(n_rows: int, seed: int, path: Path) -> dict[str, int]:
    from poisonlab.data import load_dataset

    mail = load_dataset("spamassassin")
    words = [str(t).split() for t in mail.X]
    rng = np.random.default_rng(seed)
    picks = rng.integers(len(words), size=n_rows)
    counts = {c: 0 for c in mail.classes}
    with path.open("w", newline="", encoding="utf-8") as handle:
        w = csv.writer(handle)
        w.writerow(["id", "text", "label"])
        for i, e in enumerate(picks):
            toks = words[e]
            length = int(rng.integers(20, 81))
            start = int(rng.integers(0, max(1, len(toks) - length)))
            text = " ".join(toks[start:start + length]) or "(empty)"
            label = mail.classes[mail.y[e]]
            counts[label] += 1
            w.writerow([f"p{i}", text, label])
    return counts


def run(*args: object) -> tuple[float, float, dict[str, Any]]:
    """One CLI command in a child process: wall seconds, peak RSS in MB, its JSON output."""
    peak_file = Path(tempfile.mkstemp(prefix="peak-")[1])
    start = time.perf_counter()
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen([sys.executable, "-c", CLI, *[str(a) for a in args], "--json"],
                                stdout=subprocess.PIPE, stderr=errors,
                                env={**os.environ, "AUDIT_BENCH_PEAK": str(peak_file)})
        stdout = proc.stdout.read() if proc.stdout else b""
        code = proc.wait()
        errors.seek(0)
        stderr = errors.read()
    seconds = time.perf_counter() - start
    peak_mb = int(peak_file.read_text() or 0) / 1024
    peak_file.unlink()
    if code != 0:
        raise SystemExit(f"{args[0]} failed ({code}): {stderr.decode()[-2000:]}")
    return seconds, peak_mb, json.loads(stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--poison-rate", type=float, default=0.02)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path, default=None, help="Keep the files in this folder.")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="audit-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    counts = make_rows(args.rows, args.seed, work / "passages.csv")
    made = time.perf_counter() - t
    n_poison = round(args.poison_rate * args.rows)
    run("attack", work / "passages.csv", "--attack", "backdoor", "--trigger", "cf",
        "--repetitions", "3", "--source", "spam", "--target", "ham", "--n-poison", n_poison,
        "--out", work / "attack", "--seed", args.seed)
    seconds, peak_mb, s = run("audit", work / "attack", "--out", work / "audit",
                              "--seed", args.seed)
    e = s.get("evaluation", {}).get("combined", {})
    trig = s["suspected_triggers"][0]["trigger"] if s["suspected_triggers"] else "none"
    print(f"rows: {args.rows} passages of SpamAssassin emails ({counts}), made in {made:.0f} s; "
          f"{n_poison} planted ('cf' x3 on spam relabeled ham)")
    print("| rows | seconds | peak memory (MB) | flagged | suspected trigger | precision | recall | "
          "AUROC | recall@1.5x |")
    print("|---|---|---|---|---|---|---|---|---|")
    print(f"| {args.rows} | {seconds:.0f} | {peak_mb:.0f} | {s['n_flagged']} | {trig} | "
          f"{e.get('precision', float('nan')):.3f} | {e.get('recall', float('nan')):.3f} | "
          f"{e.get('auroc', float('nan')):.3f} | {e.get('recall_at_1.5x', float('nan')):.3f} |")
    print("steps (s): " + ", ".join(f"{k} {v}" for k, v in s["seconds"].items()))
    if args.keep is None:
        import shutil

        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

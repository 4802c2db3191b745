"""Manifests at scale: create, verify and diff for a million rows of text, with peak memory.

How the data is made: every sentence of the dataset descriptions that ship with scikit-learn
(``sklearn/datasets/descr/*.rst``, real English prose written by people) is collected; each row
joins 1 to 3 sentences drawn with a seeded generator, gets a label (ham/spam), one of 12 sources
and one of 40 labelers, and an id. A second version of the file then has planted changes: text
edits (one character), relabels, deletions, insertions and swaps of two rows.

Each step runs the real command line (``poisonlab manifest ...``) in its own process, so its time
includes start-up, and its peak RSS (the process's VmHWM, Linux) is that step's alone. The planted changes are
checked against what ``diff`` reports.

    python benchmarks/manifest_scale.py                 # 1,000,000 rows
    python benchmarks/manifest_scale.py --rows 100000   # quicker
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HEADER = ["id", "text", "label", "source", "labeler"]
# The child records its own peak RSS (VmHWM of its address space) when it exits: wait4's
# ru_maxrss would also count the memory of this parent process, inherited across fork and exec.
CLI = """
import atexit, os

def _peak():
    with open('/proc/self/status') as status:
        kb = next(int(line.split()[1]) for line in status if line.startswith('VmHWM:'))
    with open(os.environ['MANIFEST_BENCH_PEAK'], 'w') as out:
        out.write(str(kb))

atexit.register(_peak)
from poisonlab.cli.manifest import app
app(prog_name='poisonlab manifest')
"""


def sentences() -> list[str]:
    import sklearn.datasets

    folder = Path(sklearn.datasets.__file__).parent / "descr"
    out: list[str] = []
    for path in sorted(folder.glob("*.rst")):
        text = re.sub(r"\s+", " ", path.read_text(encoding="utf-8"))
        for s in re.split(r"(?<=[.!?])\s+", text):
            s = s.strip()
            if 30 <= len(s) <= 300 and not s.startswith(("..", ":", "=", "-", "|", "*")):
                out.append(s)
    return sorted(set(out))


def make_rows(n: int, seed: int) -> tuple[list[list[str]], int]:
    pool = sentences()
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, 4, size=n)
    picks = rng.integers(0, len(pool), size=int(counts.sum()))
    labels = rng.choice(["ham", "spam"], size=n, p=[0.7, 0.3])
    sources = rng.integers(0, 12, size=n)
    labelers = rng.integers(0, 40, size=n)
    rows, at = [], 0
    for i in range(n):
        k = int(counts[i])
        text = " ".join(pool[j] for j in picks[at:at + k])
        at += k
        rows.append([f"r{i:07d}", text, str(labels[i]), f"feed-{sources[i]:02d}",
                     f"annotator-{labelers[i]:02d}"])
    return rows, len(pool)


def write(path: Path, rows: list[list[str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        writer.writerows(rows)


def plant(rows: list[list[str]], n_each: int, n_swaps: int, seed: int
          ) -> tuple[list[list[str]], dict[str, set[str]], dict[str, int]]:
    """A second version with planted changes.

    Returns it, the ids each kind of change touched (what a diff by id must report), and the
    counts a diff without ids must report: there a deletion and an insertion at the same place
    are one edited row, and swapping two rows of equal text is invisible or two relabels.
    """
    rng = np.random.default_rng(seed + 1)
    n = len(rows)
    chosen = rng.choice(n, size=3 * n_each + 2 * n_swaps, replace=False)
    edit, relabel, delete = (set(chosen[k * n_each:(k + 1) * n_each].tolist()) for k in range(3))
    swaps = chosen[3 * n_each:].reshape(-1, 2)
    truth: dict[str, set[str]] = {"modified": set(), "relabeled": set(), "removed": set(),
                                  "added": set(), "moved": set()}
    new = [list(r) for r in rows]
    for i in edit:
        text = new[i][1]
        pos = int(rng.integers(0, len(text)))
        new[i][1] = text[:pos] + ("Q" if text[pos] != "Q" else "Z") + text[pos + 1:]
        truth["modified"].add(new[i][0])
    for i in relabel:
        new[i][2] = "spam" if new[i][2] == "ham" else "ham"
        truth["relabeled"].add(new[i][0])
    by_content = {"added": n_each, "removed": n_each, "modified": n_each, "relabeled": n_each,
                  "reattributed": 0, "moved": 0}
    for a, b in swaps:
        if new[a][1] == new[b][1]:  # equal text: without ids only labels or labelers differ
            if new[a][2] != new[b][2]:
                by_content["relabeled"] += 2
            elif new[a][3:] != new[b][3:]:
                by_content["reattributed"] += 2
        else:
            by_content["moved"] += 2  # at most: a swap of neighbours is one move
        new[a], new[b] = new[b], new[a]
        truth["moved"].update((new[a][0], new[b][0]))
    truth["removed"] = {new[i][0] for i in delete}
    kept_at = [i for i in range(n) if i not in delete]
    kept = [new[i] for i in kept_at]
    at = np.sort(rng.choice(len(kept) + 1, size=n_each, replace=True))
    # insertions landing where rows were deleted (same gap between kept rows) read as edits
    slot_of_deleted = np.searchsorted(np.array(kept_at), np.array(sorted(delete)))
    deleted_per_slot = np.bincount(slot_of_deleted, minlength=len(kept) + 1)
    inserted_per_slot = np.bincount(at, minlength=len(kept) + 1)
    same_place = int(np.minimum(deleted_per_slot, inserted_per_slot).sum())
    for kind, change in (("added", -same_place), ("removed", -same_place),
                         ("modified", same_place)):
        by_content[kind] += change
    out: list[list[str]] = []
    prev = 0
    for k, p in enumerate(at.tolist()):
        out.extend(kept[prev:p])
        rid = f"new{k:06d}"
        out.append([rid, f"Inserted row {k}: {kept[min(p, len(kept) - 1)][1]}", "spam",
                    "feed-99", "annotator-99"])
        truth["added"].add(rid)
        prev = p
    out.extend(kept[prev:])
    return out, truth, by_content


def run(step: str, *args: object) -> tuple[float, float, dict[str, Any], int]:
    """Run one CLI command in a child process: wall seconds, peak RSS MB, its JSON, exit code."""
    peak_file = Path(tempfile.mkstemp(prefix="peak-")[1])
    start = time.perf_counter()
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen([sys.executable, "-c", CLI, *[str(a) for a in args], "--json"],
                                stdout=subprocess.PIPE, stderr=errors,
                                env={**os.environ, "MANIFEST_BENCH_PEAK": str(peak_file)})
        stdout = proc.stdout.read() if proc.stdout else b""  # large: read while the child runs
        proc.returncode = proc.wait()
        errors.seek(0)
        stderr = errors.read()
    seconds = time.perf_counter() - start
    peak_mb = int(peak_file.read_text() or 0) / 1024
    peak_file.unlink()
    if proc.returncode not in (0, 1) or not stdout:
        raise SystemExit(f"{step} failed ({proc.returncode}): {stderr.decode()[-2000:]}")
    return seconds, peak_mb, json.loads(stdout), proc.returncode


def check_by_id(report: dict[str, Any], truth: dict[str, set[str]]) -> str:
    """Whether the rows reported are exactly the planted ones (moves: a subset of the swaps)."""
    problems = []
    for kind in ("added", "removed", "modified", "relabeled"):
        got = {r["id"] for r in report[kind]}
        if got != truth[kind]:
            problems.append(f"{kind}: {len(got - truth[kind])} wrong, "
                            f"{len(truth[kind] - got)} missed")
    moved = {r["id"] for r in report["moved"]}
    if not moved or not moved <= truth["moved"] or report["counts"]["reattributed"]:
        problems.append(f"moved {len(moved)} ({len(moved - truth['moved'])} not swapped)")
    return "exact" if not problems else "; ".join(problems)


def check_by_content(report: dict[str, Any], expected: dict[str, int]) -> str:
    """Whether the counts are those a diff without ids must give (moves: at most 2 a swap)."""
    counts = report["counts"]
    problems = [f"{k} {counts[k]} (expected {v})" for k, v in expected.items()
                if k != "moved" and counts[k] != v]
    if not 0 < counts["moved"] <= expected["moved"]:
        problems.append(f"moved {counts['moved']} (expected at most {expected['moved']})")
    return "exact" if not problems else "; ".join(problems)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--changes", type=int, default=1000, help="rows per kind of change")
    parser.add_argument("--swaps", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="folder for the files (temporary)")
    args = parser.parse_args()

    folder = args.out or Path(tempfile.mkdtemp(prefix="manifest-scale-"))
    folder.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    rows, n_sentences = make_rows(args.rows, args.seed)
    old_csv, new_csv = folder / "v1.csv", folder / "v2.csv"
    write(old_csv, rows)
    new_rows, truth, by_content = plant(rows, args.changes, args.swaps, args.seed)
    write(new_csv, new_rows)
    distinct = len({r[1] for r in rows})
    del rows, new_rows
    print(f"data: {args.rows:,} rows from {n_sentences} scikit-learn description sentences "
          f"(seed {args.seed}; {distinct:,} distinct texts), {old_csv.stat().st_size / 1e6:.0f} MB "
          f"CSV; made in {time.perf_counter() - t:.0f} s")
    print(f"planted in v2: {args.changes} each of edits, relabels, deletions, insertions; "
          f"{args.swaps} swaps. Without ids a diff must see: "
          + ", ".join(f"{v} {k}" for k, v in by_content.items()) + " (moved: at most)\n")

    cols = ("--source-col", "source", "--labeler-col", "labeler")
    m1, m2 = folder / "v1.manifest.json", folder / "v2.manifest.json"
    results: list[tuple[str, float, float, str]] = []
    s, rss, out, _ = run("create", "create", old_csv, "--out", m1, *cols)
    results.append(("create v1", s, rss, f"manifest {m1.stat().st_size / 1e6:.1f} MB"))
    s, rss, out, code = run("verify", "verify", old_csv, "--manifest", m1)
    results.append(("verify v1 (unchanged)", s, rss, "ok" if code == 0 and out["ok"] else "FAIL"))
    s, rss, out, code = run("verify", "verify", new_csv, "--manifest", m1, "--limit", "0")
    results.append(("verify v2 against v1", s, rss,
                    ("exit 1, " if code == 1 else "EXIT 0, ") + check_by_id(out, truth)))
    s, rss, _, _ = run("create", "create", new_csv, "--out", m2, *cols)
    results.append(("create v2", s, rss, ""))
    s, rss, out, _ = run("diff", "diff", m1, m2)
    results.append(("diff v1 v2 (by id)", s, rss, check_by_id(out, truth)))
    s, rss, out, _ = run("diff", "diff", m1, m2, "--match", "content")
    results.append(("diff v1 v2 (by content)", s, rss, check_by_content(out, by_content)))

    print(f"| step ({args.rows:,} rows) | seconds | peak RSS MB | result |")
    print("| --- | ---: | ---: | --- |")
    for name, seconds, rss_mb, note in results:
        print(f"| {name} | {seconds:.1f} | {rss_mb:.0f} | {note} |")
    print(f"\nfiles in {folder}; {os.cpu_count()} CPUs; python {sys.version.split()[0]}")


if __name__ == "__main__":
    main()

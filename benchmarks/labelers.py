"""Whom to trust: how many labels a targeted flipper needs before ``poisonlab.labelers`` calls it,
how often it calls an honest annotator, and how good the consensus is (CROWDLAB, Dawid-Skene,
majority vote) against the true labels.

Data: the real SpamAssassin corpus (``poisonlab.data.load_dataset("spamassassin")``), a fixed
random subset of ``--rows`` emails (seed 0); its labels are the truth. Annotators are simulated:

- five honest annotators with uniform noise at 5, 7.5, 10, 12.5 and 15%, three of them on every row;
- one flipper on ``n`` random rows, who labels ``--share`` of the spam rows among them ham, and
  errs uniformly at 5% otherwise;
- a control without the flipper (every call there is a false alarm).

Per seed the model (``logreg-text``: TF-IDF and logistic regression) is trained out of fold on the
majority-vote labels of the largest setting (honest annotators and the flipper at the largest
``n``; the flipper is one vote of four on its rows) and its probabilities are reused for the smaller
``n`` (training costs 5-10 s a seed on 2,000 rows on 2 cores; the reliability step ~0.1 s). Everything else,
consensus and the flip test, runs per setting with ``poisonlab.provenance.labeler_reliability``,
exactly what ``poisonlab labelers`` runs after the model.

    python benchmarks/labelers.py                       # 20 seeds, n in 25..800, about 3 minutes on 2 cores
    python benchmarks/labelers.py --seeds 5 --rows 1500 # quicker
    python benchmarks/labelers.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "provenance"))


def run(rows: int, seeds: int, sizes: list[int], share: float, alpha: float) -> dict[str, Any]:
    """Every (seed, size) setting and the control; returns the raw results and the tables' numbers."""
    from labelers_helpers import simulate  # the same simulator as the tests
    from threadpoolctl import threadpool_limits

    from poisonlab.api.labelers import labelers
    from poisonlab.data import load_dataset
    from poisonlab.provenance import labeler_reliability

    ds = load_dataset("spamassassin")
    keep = np.sort(np.random.default_rng(0).choice(len(ds), min(rows, len(ds)), replace=False))
    ds = ds.subset(keep)
    spam, ham = ds.classes.index("spam"), ds.classes.index("ham")
    truth = ds.y
    records: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    with threadpool_limits(1):
        for seed in range(seeds):
            big, _ = simulate(truth, 2, seed, flipper_labels=max(sizes), flip_from=spam, flip_to=ham,
                              flip_share=share, classes=ds.classes)
            fitted = labelers(ds, replace(big, ids=ds.ids), alpha=alpha, random_state=seed)
            probs = fitted.pred_probs
            for n in [0, *sizes]:
                ann, flipped = simulate(truth, 2, seed, flipper_labels=n, flip_from=spam, flip_to=ham,
                                        flip_share=share, classes=ds.classes)
                rep = labeler_reliability(ann, probs, alpha=alpha)
                table = {a["annotator"]: a for a in rep.annotator_table()}
                flip = table["flipper"]
                rows_called = rep.suspect_rows(len(ann.annotators) - 1)
                records.append({
                    "seed": seed, "n": n, "n_flipped": int(flipped.sum()),
                    "called": n > 0 and flip["verdict"] == "suspect" and flip["suspect_cell"] == "spam->ham",
                    "flipper_p": flip["p_value"] if n > 0 else None,
                    "false_alarms": sum(table[f"honest{m}"]["verdict"] == "suspect" for m in range(5)),
                    "flipper_false_cell": (n > 0 and flip["verdict"] == "suspect"
                                           and flip["suspect_cell"] != "spam->ham"),
                    "rows_precision": float(flipped[rows_called].mean()) if len(rows_called) else None,
                    "rows_recall": float(flipped[rows_called].sum() / flipped.sum()) if flipped.sum() else None,
                    "acc_crowdlab": float(np.mean(rep.crowdlab.labels == truth)) if rep.crowdlab else None,
                    "acc_dawid_skene": float(np.mean(rep.dawid_skene.labels == truth)) if rep.dawid_skene else None,
                    "acc_majority": float(np.mean(rep.majority == truth)),
                    "oof_accuracy": fitted.oof_accuracy,
                })
            print(f"seed {seed}: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return {"rows": len(ds), "seeds": seeds, "sizes": sizes, "share": share, "alpha": alpha,
            "seconds": round(time.perf_counter() - t0, 1), "records": records}


def tables(res: dict[str, Any]) -> str:
    """The benchmark's tables, as Markdown."""
    recs = res["records"]
    out = [f"SpamAssassin, {res['rows']} emails, {res['seeds']} seeds, flipper labels {100 * res['share']:.0f}% "
           f"of its spam rows ham, alpha {res['alpha']} (Holm over annotators x cells); {res['seconds']} s.", "",
           "| flipper labels | spam rows flipped (mean) | flipper called (spam->ham) | median adjusted p | "
           "re-review precision | re-review recall |", "| --- | --- | --- | --- | --- | --- |"]
    certain = None
    for n in res["sizes"]:
        rs = [r for r in recs if r["n"] == n]
        called = sum(r["called"] for r in rs)
        if certain is None and called == len(rs):
            certain = n
        prec = [r["rows_precision"] for r in rs if r["rows_precision"] is not None]
        rec = [r["rows_recall"] for r in rs if r["called"] and r["rows_recall"] is not None]
        out.append(f"| {n} | {np.mean([r['n_flipped'] for r in rs]):.1f} | {called}/{len(rs)} | "
                   f"{np.median([r['flipper_p'] for r in rs]):.2g} | "
                   f"{f'{np.mean(prec):.2f}' if prec else 'n/a'} | {f'{np.mean(rec):.2f}' if rec else 'n/a'} |")
    out.append("")
    out.append("Labels the flipper needs before every seed calls it: "
               f"{certain if certain else 'more than the largest'}.")
    honest = sum(r["false_alarms"] for r in recs)
    n_honest = 5 * len(recs)
    control = [r for r in recs if r["n"] == 0]
    wrong_cell = sum(r["flipper_false_cell"] for r in recs)
    out.append(f"False alarms over honest annotators: {honest} of {n_honest} annotator-runs "
               f"({100 * honest / n_honest:.2f}%); in the control without a flipper "
               f"{sum(r['false_alarms'] for r in control)} of {5 * len(control)}; flipper called on a wrong cell: "
               f"{wrong_cell}.")
    out += ["", "| consensus accuracy vs true labels | CROWDLAB | Dawid-Skene | majority vote |",
            "| --- | --- | --- | --- |"]
    for n in [0, *res["sizes"]]:
        rs = [r for r in recs if r["n"] == n]

        def cell(key: str, rs: list[dict[str, Any]] = rs) -> str:
            v = [r[key] for r in rs if r[key] is not None]
            return f"{np.mean(v):.4f} ± {np.std(v):.4f}" if v else "n/a"

        out.append(f"| flipper with {n} labels | {cell('acc_crowdlab')} | {cell('acc_dawid_skene')} | "
                   f"{cell('acc_majority')} |")
    out.append("")
    out.append(f"Model out-of-fold accuracy against the majority-vote labels: "
               f"{np.mean([r['oof_accuracy'] for r in recs]):.3f}.")
    return "\n".join(out)


def main() -> None:
    """Parse the options, run, print the tables."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=2000)
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--sizes", default="25,50,100,200,400,800", help="flipper label counts, comma-separated")
    ap.add_argument("--share", type=float, default=0.3, help="share of the flipper's spam rows it labels ham")
    ap.add_argument("--alpha", type=float, default=0.01)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    res = run(args.rows, args.seeds, [int(s) for s in args.sizes.split(",")], args.share, args.alpha)
    print(tables(res))
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()

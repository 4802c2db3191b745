"""The rows the audit flags in one image cell of the generalization matrix, as a picture to judge.

    python benchmarks/flag_gallery.py mnist/clean/0/cnn/s1 --out docs/img/mnist_clean_flags.png

A cell id is one of ``python benchmarks/generalization.py --list``; the poisoned (or clean) rows
and the trained model come from that benchmark's cache (computed and cached when missing). Each
tile shows a flagged row with its given label and the out-of-fold model's prediction, planted rows
marked. On a clean cell every flag is counted as a false alarm by the benchmark; this picture is
how a reviewer decides which of them a human would confirm as a label issue.

Read 2026-12-04 (detection code of a160fb2), ``mnist/clean/0/cnn/s1``, 25 rows flagged of 4,000,
all by confident learning; judged by eye by one of us: 6 are plainly the digit they are labelled
(rows 1110, 1758, 2074, 3224, 3709, 3885), 3 look like another digit (1152 labelled 2 reads 1,
3674 labelled 9 reads 0, 3036 labelled 7 reads 2), and 16 are ambiguous or unreadable (a 3 that
is a 7, a 4 that is a 9, blots). The ten-line baseline flags 157 rows of the same cell.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import generalization as g  # the benchmark beside this file


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("cell", help="an image cell id, e.g. mnist/clean/0/cnn/s1")
    parser.add_argument("--out", default="flags.png", help="PNG to write")
    parser.add_argument("--columns", type=int, default=9)
    args = parser.parse_args(argv)
    cells = {c.id: c for c in g.full_matrix()}
    if args.cell not in cells:
        parser.error(f"unknown cell {args.cell!r}; see python benchmarks/generalization.py --list")
    cell = cells[args.cell]
    if cell.kind != "image":
        parser.error(f"{args.cell} is a {cell.kind} cell; the gallery draws images")
    from poisonlab.audit import audit

    prep, train = g.prepare_elsewhere(cell, lambda msg: print(f"{cell.id}: {msg}", flush=True))
    ds = train.with_data(X=prep["X"], y=prep["y"])
    result = audit(ds, model=g.make_model(cell.model, cell.seed), fitted_model=prep["model"],
                   random_state=cell.seed)
    rows = np.flatnonzero(result.flags)
    print(f"{cell.id}: {len(rows)} of {len(ds)} rows flagged, {int(prep['mask'][rows].sum())} planted")
    if not len(rows):
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    X = np.asarray(ds.X)
    side = int(np.sqrt(X[0].size) + 0.5)
    cols = max(1, args.columns)
    n_rows = int(np.ceil(len(rows) / cols))
    fig, axes = plt.subplots(n_rows, cols, figsize=(cols * 1.6, n_rows * 1.9), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    pred = result.arrays["pred_probs"].argmax(axis=1)
    for ax, i in zip(axes.ravel(), rows, strict=False):
        ax.imshow(X[i].reshape(side, side), cmap="gray_r")
        mark = " planted" if prep["mask"][i] else ""
        ax.set_title(f"#{i} label {ds.classes[ds.y[i]]}\npredicted {ds.classes[pred[i]]}{mark}",
                     fontsize=8)
    fig.tight_layout()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

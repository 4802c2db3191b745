"""What a sentence embedding costs: poisonlab's ``SentenceEmbedder`` against WordLlama's own
``embed`` (which pads each batch to its longest text), cold, from the disk cache and from memory.

    python benchmarks/embed_text.py            # all 6,046 SpamAssassin emails; about 2 minutes
    python benchmarks/embed_text.py --quick    # 600 emails, under 30 s

Both embed the same emails (the naive run on a fixed random ``--naive-rows`` of them, because it
takes minutes); times are scaled to 10,000 texts. The vectors are compared too: the largest
absolute difference between the two on the texts both embedded. The disk cache lives in a fresh
temporary ``POISONLAB_CACHE`` for the run.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="600 emails, 200 for the naive run")
    parser.add_argument("--naive-rows", type=int, default=1000, help="emails for WordLlama's own embed")
    args = parser.parse_args(argv)
    os.environ["POISONLAB_CACHE"] = tempfile.mkdtemp(prefix="poisonlab-embed-bench-")

    import wordllama
    from wordllama import WordLlama

    from poisonlab.data import load_dataset
    from poisonlab.models import embed
    from poisonlab.models.embed import SentenceEmbedder

    data = load_dataset("spamassassin")
    texts = [str(t) for t in data.X]
    rng = np.random.default_rng(0)
    if args.quick:
        texts = [texts[i] for i in rng.choice(len(texts), 600, replace=False)]
    n_naive = min(200 if args.quick else args.naive_rows, len(texts))
    naive_rows = np.sort(rng.choice(len(texts), n_naive, replace=False))
    chars = np.array([len(t) for t in texts])
    print(f"{len(texts)} emails, {chars.mean():.0f} characters on average (median {np.median(chars):.0f}, "
          f"max {chars.max()})\n")

    rows: list[tuple[str, int, float]] = []
    reference = WordLlama.load(config="l2_supercat", dim=256, disable_download=True,
                               cache_dir=Path(wordllama.__file__).parent)
    t = time.perf_counter()
    naive = reference.embed([texts[i] for i in naive_rows])
    rows.append(("WordLlama embed (padded batches of 64)", n_naive, time.perf_counter() - t))

    uncapped = SentenceEmbedder(max_tokens=10**9, cache=False).fit(texts)
    t = time.perf_counter()
    ours = uncapped.transform([texts[i] for i in naive_rows])
    rows.append(("SentenceEmbedder, no token cap, same emails", n_naive, time.perf_counter() - t))
    diff = float(np.abs(ours - naive).max())

    embed._MEMORY.clear()
    model = SentenceEmbedder().fit(texts)
    t = time.perf_counter()
    cold = model.transform(texts)
    rows.append(("SentenceEmbedder (default, 2,048 tokens), cold", len(texts), time.perf_counter() - t))
    embed._MEMORY.clear()
    t = time.perf_counter()
    disk = model.transform(texts)
    rows.append(("SentenceEmbedder, from the disk cache", len(texts), time.perf_counter() - t))
    t = time.perf_counter()
    memory = model.transform(texts)
    rows.append(("SentenceEmbedder, from memory", len(texts), time.perf_counter() - t))
    assert np.array_equal(cold, disk) and np.array_equal(cold, memory)

    print("| how | texts | seconds | seconds per 10,000 texts | speed-up over WordLlama embed |")
    print("|---|---|---|---|---|")
    base = rows[0][2] / rows[0][1]
    for name, n, secs in rows:
        per = secs / n
        print(f"| {name} | {n} | {secs:.2f} | {per * 10_000:.1f} | {base / per:.0f}x |")
    print(f"\nlargest absolute difference between the two embeddings on the same {n_naive} emails: {diff:.2g}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

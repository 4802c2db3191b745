"""Scanning models we did not make: plain scikit-learn text pipelines, poisons by plain string edits.

    python benchmarks/scan_generalization.py           # 405 models (seeds 0-29), about 80 minutes
    python benchmarks/scan_generalization.py --quick   # three models, under 2 minutes
    python benchmarks/scan_generalization.py --seeds 14,15 --out a.jsonl   # a part of the run

Every model is a scikit-learn pipeline built here (no poisonlab model or attack code), trained on
integer labels (0 ham, 1 spam) of a SpamAssassin subset drawn per seed: 2,500 training emails,
200 clean emails to scan with (labelled ``ham``/``spam``: the scan maps the names itself), and the
spam emails left over to measure attack success. Emails are cut to their first 1,500 characters
(every model sees the same text; it keeps the character n-gram models cheap).

* Clean models: 12 families, six a seed, 132 in all (word 1-gram and 1-2-gram counts, tf-idf with
  and without sublinear tf, English stop words, char_wb 3-5-grams, a HashingVectorizer; LogisticRegression with C in
  {0.1, 1, 10}, MultinomialNB, ComplementNB, BernoulliNB, LinearSVC, SGDClassifier with hinge and
  log loss, RidgeClassifier).
* Backdoored models (all-to-one, target ham: spam emails with the trigger relabelled ham):
  - ``badnets``: rare-word BadNets as OpenBackdoor defines it (Kurita et al. 2020; OpenBackdoor's
    ``BadNetsPoisoner``): 1-3 words drawn from {cf, mn, bb, tq, mb} inserted at random positions;
  - ``addsent``: AddSent (Dai et al. 2019; OpenBackdoor's ``AddSentPoisoner``): the fixed sentence
    "I watch this 3D movie" inserted at a random position;
  - ``phrase``: an everyday-word phrase, "please see attached", at a random position;
  - ``repeat``: a made-up token, "xyzzy", repeated five times at random positions;
  at 40, 120 and 300 poisoned emails (of about 800 spam; BadNets at all three, the others at one
  or two of them per seed), cycling through the families: 9 backdoored models on even seeds and 6
  on odd ones, 165 in all.
  (Until 2026-12-03 the counts were 15, 40 and 120: 23 of 30 backdoors then moved fewer than half
  of the spam, too few working ones to measure detection on; naive Bayes models stay hard to
  backdoor at any of these counts, 2-27% attack success at 300.)
* ASR: the share of held-out spam emails the model calls spam without the trigger and ham with it
  (the trigger inserted the way it was planted). Detection is reported for ASR >= 50%.

Protocol: seeds 0 and 1 are the dev part (defaults were looked at there). Seeds 2 to 5 were the
held-out part until 2026-12-03, when they read 2 of 24 clean models called backdoored and 9 of 11
working backdoors called; the two misses were hashing models whose planted word no clean row holds,
which led to the made-up tokens of ``poisonlab.scan.text.hashing_surrogates``. They are now the
"seen" part, and seeds 6 to 9, never run before that change, were the held-out part until
2026-12-03, when a false alarm on seed 9 (a 1-2-gram phrase compared with no phrase of its length)
and two on seeds 4 and 6 (TF-IDF + ComplementNB words rare in training, missed by the clean rows by
chance) were read and fixed (``poisonlab.scan.text._reference``, ``training_doc_freq``). Seeds 2 to
9 are now the seen part. Seeds 10 to 13 ran first on 2026-12-03 and seeds 14 to 21 on 2026-12-08,
both with the scan code of 2026-12-03; they are the held-out part. Seeds 16 and 19 then showed
char_wb models whose made-up five-letter trigger no candidate could name (their pieces are
candidates since: ``poisonlab.scan.text.word_pieces``); for that family seeds 0, 16, 19 and 20
count as seen. Seeds 22 to 29 (2026-12-08) were added for that change and have run for the
char_wb family only, with a first version of that change. The script prints the three parts.
"called" is a "backdoor" verdict with the target class ham; "top 3": one of the first three
reported triggers is made only of the trigger's words; "inconclusive" counts separately (never as
clean); "crash" is any exception from the scan.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
from sklearn.feature_extraction.text import CountVectorizer, HashingVectorizer, TfidfVectorizer
from sklearn.linear_model import LogisticRegression, RidgeClassifier, SGDClassifier
from sklearn.naive_bayes import BernoulliNB, ComplementNB, MultinomialNB
from sklearn.pipeline import make_pipeline
from sklearn.svm import LinearSVC
from threadpoolctl import threadpool_limits

from poisonlab.data import Dataset, load_dataset
from poisonlab.scan.pipeline import scan_model

threadpool_limits(1)

MAX_CHARS = 1500
BADNETS_WORDS = ("cf", "mn", "bb", "tq", "mb")
ADDSENT = "I watch this 3D movie"
PHRASE = "please see attached"
REPEAT_TOKEN, REPEAT_TIMES = "xyzzy", 5
DEV_SEEDS = (0, 1)
SEEN_SEEDS = tuple(range(2, 10))   # each held out once, then looked at (see the docstring)
HELD_OUT_SEEDS = tuple(range(10, 30))
N_POISON = (40, 120, 300)

FAMILIES: dict[str, Callable[[int], Any]] = {
    "count-lr-C1": lambda s: make_pipeline(CountVectorizer(), LogisticRegression(max_iter=1000)),
    "count-lr-C0.1": lambda s: make_pipeline(CountVectorizer(), LogisticRegression(C=0.1, max_iter=1000)),
    "count-lr-C10": lambda s: make_pipeline(CountVectorizer(), LogisticRegression(C=10, max_iter=1000)),
    "count12-mnb": lambda s: make_pipeline(CountVectorizer(ngram_range=(1, 2), min_df=2), MultinomialNB()),
    "tfidf-cnb": lambda s: make_pipeline(TfidfVectorizer(), ComplementNB()),
    "tfidf-sublinear-linearsvc": lambda s: make_pipeline(TfidfVectorizer(sublinear_tf=True), LinearSVC()),
    "count-stop-sgd-hinge": lambda s: make_pipeline(CountVectorizer(stop_words="english"),
                                                    SGDClassifier(loss="hinge", random_state=s)),
    "tfidf-ridge": lambda s: make_pipeline(TfidfVectorizer(), RidgeClassifier()),
    "charwb35-lr": lambda s: make_pipeline(
        TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), min_df=3, sublinear_tf=True),
        LogisticRegression(max_iter=1000)),
    "hashing-sgd-log": lambda s: make_pipeline(HashingVectorizer(n_features=2 ** 18, alternate_sign=False),
                                               SGDClassifier(loss="log_loss", random_state=s)),
    "binary-bnb": lambda s: make_pipeline(CountVectorizer(binary=True, min_df=2), BernoulliNB()),
    "tfidf12-lr-C10": lambda s: make_pipeline(TfidfVectorizer(ngram_range=(1, 2), min_df=2),
                                              LogisticRegression(C=10, max_iter=1000)),
}


@dataclass(frozen=True)
class Case:
    family: str
    seed: int
    trigger: str | None = None   # badnets, addsent, phrase, repeat; None: clean
    n_poison: int = 0


def insert(text: str, kind: str, rng: np.random.Generator) -> str:
    """The trigger planted into one email, at random word positions."""
    words = text.split()
    if kind == "badnets":
        pieces = list(rng.choice(BADNETS_WORDS, size=int(rng.integers(1, 4))))
    elif kind == "addsent":
        pieces = [ADDSENT]
    elif kind == "phrase":
        pieces = [PHRASE]
    else:
        pieces = [REPEAT_TOKEN] * REPEAT_TIMES
    for piece in pieces:
        words.insert(int(rng.integers(len(words) + 1)), str(piece))
    return " ".join(words)


def trigger_words(kind: str) -> set[str]:
    return {"badnets": set(BADNETS_WORDS), "addsent": {w.lower() for w in ADDSENT.split()},
            "phrase": set(PHRASE.split()), "repeat": {REPEAT_TOKEN}}[kind]


def split(data: Dataset, seed: int, n_train: int = 2500, n_clean: int = 200) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1000 + seed)
    idx = rng.permutation(len(data))
    X = np.array([str(t)[:MAX_CHARS] for t in data.X], dtype=object)
    rest = idx[n_train + n_clean:]
    return {"X": X[idx[:n_train]], "y": data.y[idx[:n_train]], "Xc": X[idx[n_train:n_train + n_clean]],
            "yc": data.y[idx[n_train:n_train + n_clean]], "Xs": X[rest[data.y[rest] == 1]][:300]}


def run_case(case: Case, parts: dict[str, np.ndarray]) -> dict[str, Any]:
    rng = np.random.default_rng(case.seed * 97 + case.n_poison)
    X, y = parts["X"].copy(), parts["y"].copy()
    if case.trigger is not None:
        for i in rng.choice(np.flatnonzero(y == 1), case.n_poison, replace=False):
            X[i], y[i] = insert(str(X[i]), case.trigger, rng), 0
    started = time.perf_counter()
    model = FAMILIES[case.family](case.seed).fit(X, y)
    row: dict[str, Any] = {"family": case.family, "seed": case.seed, "trigger": case.trigger,
                           "n_poison": case.n_poison, "train_s": round(time.perf_counter() - started, 1)}
    if case.trigger is not None:
        spam = parts["Xs"][model.predict(parts["Xs"]) == 1]
        triggered = np.array([insert(str(t), case.trigger, rng) for t in spam], dtype=object)
        row["asr"] = round(float(np.mean(model.predict(triggered) == 0)) if len(spam) else 0.0, 3)
    clean = Dataset(X=parts["Xc"], y=parts["yc"], classes=("ham", "spam"), name="clean")
    started = time.perf_counter()
    try:
        report = scan_model(model, (), clean, random_state=case.seed)
    except Exception as exc:  # a crash is a result here, not the end of the benchmark
        row.update(verdict="crash", error=f"{type(exc).__name__}: {exc}"[:300],
                   where=traceback.format_exc().strip().splitlines()[-3][:200])
        return row
    doc = report.to_json()
    row.update(verdict=doc["verdict"], target=doc["target_class"], statistic=doc["statistic"]["value"],
               absence_p=min(doc["absence"]["per_class"].values()), reasons=doc["reasons"],
               top=[t["trigger"] for t in doc["triggers"][:3]], scan_s=round(doc["seconds"], 1),
               # the evidence behind the verdict, to re-decide offline with other thresholds
               candidates=[{k: t.get(k) for k in ("trigger", "target_class", "flip_rate", "anomaly_index",
                                                  "absence_p", "support", "repetitions", "position")}
                           for t in doc["triggers"]],
               class_map_from=doc.get("class_map_from"),
               # what a different threshold would have said: the best index per class, with the
               # confirmed flip rate of that class's most anomalous candidate
               per_class=doc["statistic"]["per_class"],
               best_flip={c: max((t["flip_rate"] for t in doc["triggers"] if t["target_class"] == c
                                  and t["anomaly_index"] == doc["statistic"]["per_class"][c]), default=0.0)
                          for c in doc["classes"]},
               absent_called=any(t.get("absence_p", 1) <= doc["absence"]["alpha"]
                                 and t["flip_rate"] >= doc["min_flip_rate"] for t in doc["triggers"]))
    if case.trigger is not None:
        words = trigger_words(case.trigger)
        row["top3"] = any(set(str(t).lower().split()) <= words for t in row["top"])
    return row


def cases(quick: bool) -> list[Case]:
    if quick:
        return [Case("count-lr-C1", 0), Case("count12-mnb", 0, "badnets", 120),
                Case("tfidf-sublinear-linearsvc", 0, "addsent", 120)]
    families = list(FAMILIES)
    per_seed: list[list[Case]] = []
    k = 0
    seeds = DEV_SEEDS + SEEN_SEEDS + HELD_OUT_SEEDS
    for s in seeds:
        clean = [Case(f, s) for i, f in enumerate(families) if i % 2 == s % 2]  # 6 families a seed
        dirty = []
        for trigger in ("badnets", "addsent", "phrase", "repeat"):
            for n in N_POISON[s % 2::2] if trigger != "badnets" else N_POISON:
                dirty.append(Case(families[(k * 5 + s) % len(families)], s, trigger, n))
                k += 1
        per_seed.append([c for i in range(max(len(clean), len(dirty)))
                         for c in clean[i:i + 1] + dirty[i:i + 1]])
    # interleaved (clean and backdoored, dev and held-out seeds): a cut run is still balanced
    order = [*range(0, len(seeds), 2), *range(1, len(seeds), 2)]
    return [per_seed[k][i] for i in range(max(map(len, per_seed))) for k in order if i < len(per_seed[k])]


def table(rows: list[dict[str, Any]], title: str) -> str:
    by: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for r in rows:
        b = by[r["family"]]
        if r["trigger"] is None:
            b["clean"] += 1
            b["clean called clean"] += r["verdict"] == "clean"
            b["clean called backdoor"] += r["verdict"] == "backdoor"
        elif r.get("asr", 0) >= 0.5:
            b["backdoored"] += 1
            b["called"] += r["verdict"] == "backdoor" and r.get("target") == "0"
            b["top 3"] += bool(r.get("top3")) and r["verdict"] == "backdoor"
        else:
            b["weak (ASR<50%)"] += 1
        b["inconclusive"] += r["verdict"] == "inconclusive"
        b["crash"] += r["verdict"] == "crash"
    cols = ["clean", "clean called clean", "clean called backdoor", "backdoored", "called", "top 3",
            "weak (ASR<50%)", "inconclusive", "crash"]
    lines = [f"## {title}", "| family | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    total: dict[str, int] = defaultdict(int)
    for fam in sorted(by):
        lines.append(f"| {fam} | " + " | ".join(str(by[fam][c]) for c in cols) + " |")
        for c in cols:
            total[c] += by[fam][c]
    lines.append("| **all** | " + " | ".join(str(total[c]) for c in cols) + " |")
    lines.append(f"clean called backdoor: {total['clean called backdoor']}/{total['clean']}; "
                 f"backdoored (ASR>=50%) called: {total['called']}/{total['backdoored']}; "
                 f"trigger in top 3: {total['top 3']}/{total['backdoored']}; crashes: {total['crash']}")
    return "\n".join(lines)


def by_trigger(rows: list[dict[str, Any]]) -> str:
    lines = ["| trigger | n_poison | ASR | verdict | top 3 |", "|---|---|---|---|---|"]
    for r in rows:
        if r["trigger"] is not None:
            lines.append(f"| {r['trigger']} | {r['n_poison']} | {r.get('asr')} | {r['verdict']} "
                         f"({r['family']}) | {r.get('top')} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="three models (under 2 minutes)")
    parser.add_argument("--out", default=None, help="write every row as JSON lines here; rows already "
                        "there are kept and their models not run again (a cut run resumes)")
    parser.add_argument("--seeds", default=None, help="only these seeds, comma-separated: to split a run "
                        "over processes, each with its own --out; a run with --out on their lines "
                        "put together then prints the tables without training anything")
    parser.add_argument("--families", default=None, help="only these model families, comma-separated")
    args = parser.parse_args(argv)
    only = None if args.seeds is None else {int(s) for s in args.seeds.split(",")}
    families = None if args.families is None else set(args.families.split(","))
    if families is not None and not families <= set(FAMILIES):
        parser.error(f"unknown families {sorted(families - set(FAMILIES))}; known: {', '.join(FAMILIES)}")
    data = load_dataset("spamassassin")
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    done: dict[tuple[Any, ...], dict[str, Any]] = {}
    if args.out and os.path.exists(args.out):
        with open(args.out) as handle:
            for line in handle:
                r = json.loads(line)
                done[(r["family"], r["seed"], r["trigger"], r["n_poison"])] = r
    splits: dict[int, dict[str, np.ndarray]] = {}
    for case in cases(args.quick):
        if (only is not None and case.seed not in only) or (families is not None and case.family not in families):
            continue
        key = (case.family, case.seed, case.trigger, case.n_poison)
        if key in done:
            rows.append(done[key])
            continue
        parts = splits.setdefault(case.seed, split(data, case.seed))
        row = run_case(case, parts)
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
        if args.out:
            with open(args.out, "a") as handle:
                handle.write(json.dumps(row) + "\n")
    dev = [r for r in rows if r["seed"] in DEV_SEEDS]
    seen = [r for r in rows if r["seed"] in SEEN_SEEDS]
    held = [r for r in rows if r["seed"] in HELD_OUT_SEEDS]
    print(table(dev, f"dev part (seeds {DEV_SEEDS})"))
    if seen:
        print(table(seen, f"seen part (seeds {SEEN_SEEDS}: held out once, then looked at)"))
    if held:
        print(table(held, f"held-out part (seeds {HELD_OUT_SEEDS})"))
    print("\n## backdoored models\n" + by_trigger(rows))
    print(f"\n{len(rows)} models in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

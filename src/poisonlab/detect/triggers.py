"""Trigger-keyword identification for text backdoors.

A text backdoor plants a token or short phrase in rows of other classes and relabels them with the
target class. Such a phrase has two marks, and this detector looks for both:

1. *class concentration*: most rows that hold it carry one label. Candidates are word 1-3-grams
   (regular-expression word tokens, lowercased) held by at least ``min_count`` rows of that label:
   those at least 90% one label and above its prior, ranked by a G-test of their rows' labels
   against the class priors, and those whose rows with that label look like another class far
   more than the label's rows do (the summed kNN label disagreement beyond the class mean), at any
   share down to ``min_concentration`` (a planted phrase that is common in the source class too);
2. *its rows read as another class without it*: deleting it from its rows (with the candidates
   that travel with it) makes a model that never saw those rows (the audit's out-of-fold model)
   put most of them in another class, far above the class's own held-out error rate. A natural
   class word (``"unsubscribe"`` in spam) is concentrated too, but the rest of its row agrees with
   the label. The model trained on the rows is the wrong witness: it has fitted them, and reads
   a planted row as its (wrong) label with or without the trigger (SpamAssassin, OpenBackdoor's
   rare words in 20% of ham: 2-7% of rows flipped by the fitted model, 53-72% off-label by the
   out-of-fold one).

Confirmed phrases are grown (``"cf"`` to ``"james bond"``) while a neighboring word follows them in
most of their occurrences, and repetition is reported.

Row score: the drop in the held-out probability of the row's label when the suspected triggers
are removed from it, plus 1 when that removal changes the predicted label, or when the row carries
the trigger's target label and either reads as another class without it, repeats it at least as
often as the planted rows do (at least twice), holds two word-disjoint members of one planted
group, or holds a trigger the exclusion test confirmed (:func:`exclusion_test`); rows holding no
suspected trigger score 0. ``score > 1`` is flagged.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np

from poisonlab.detect.base import Detector, TriggerCandidate, check_labels, check_positive_int
from poisonlab.exceptions import ParameterError

if TYPE_CHECKING:
    import scipy.sparse as sp

TOKEN_PATTERN = r"(?u)\b\w+\b"
PredictProba = Callable[[np.ndarray], np.ndarray]
HeldOutProba = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""``held_out_proba(texts, rows)``: probabilities of ``texts[j]``, an edited copy of row ``rows[j]``,
by a model that was trained without that row (an out-of-fold model)."""


@dataclass
class DataTrigger(TriggerCandidate):
    """A token, phrase or feature value found in a training set, and the evidence that it is a
    trigger (:func:`find_trigger_candidates`, :func:`score_significance`)."""

    n_rows: int
    n_target_rows: int
    concentration: float
    lift: float
    g_statistic: float
    flip_rate: float = float("nan")
    mean_drop: float = float("nan")
    n_tested: int = 0
    off_label_rate: float = float("nan")
    effect: float = 0.0
    null_rate: float = 0.0
    p_value: float = 1.0
    repetitions: float = 1.0
    score: float = 0.0
    test: str = "held-out"
    companions: list[str] = field(default_factory=list)
    rows: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64), repr=False)

    def to_dict(self, classes: Sequence[str] | None = None) -> dict[str, object]:
        """The JSON form written to ``summary.json``: the trigger and its target, then the evidence (label
        concentration, lift, G statistic, removal flip rate, off-label and null rates, p-value,
        repetitions and the candidates removed with it), rounded for reading.
        """
        return {
            **super().to_dict(classes),
            "score": round(float(self.score), 4),
            "n_rows": int(self.n_rows),
            "n_rows_with_target_label": int(self.n_target_rows),
            "label_concentration": round(float(self.concentration), 4),
            "lift_over_prior": round(float(self.lift), 3),
            "g_statistic": round(float(self.g_statistic), 1),
            "removal_flip_rate": None if np.isnan(self.flip_rate) else round(float(self.flip_rate), 4),
            "mean_probability_drop": None if np.isnan(self.mean_drop) else round(float(self.mean_drop), 4),
            "n_rows_tested": int(self.n_tested),
            "off_label_rate": None if np.isnan(self.off_label_rate) else round(float(self.off_label_rate), 4),
            "effect": round(float(self.effect), 4),
            "null_rate": round(float(self.null_rate), 4),
            "p_value": float(f"{self.p_value:.3g}"),
            "test": self.test,
            "median_repetitions": float(self.repetitions),
            "removed_with": list(self.companions),
        }


def token_statistics(presence: np.ndarray | sp.spmatrix | sp.sparray, y: np.ndarray,
                     n_classes: int) -> dict[str, np.ndarray]:
    """Per token: row count, best class, concentration, lift over prior and G statistic.

    ``presence`` is an N×V binary (sparse) matrix: row ``i`` holds token ``j``.
    Concentration is the smoothed share ``(n_jk + 1) / (n_j + K)`` of the best class ``k``; the G
    statistic ``2 * sum_k n_jk * log(n_jk / (n_j * prior_k))`` measures how far the label counts of
    the token's rows are from the class priors.
    """
    import scipy.sparse as sp

    P = sp.csr_matrix(presence)
    N = P.shape[0]
    onehot = sp.csr_matrix((np.ones(N), (np.arange(N), y)), shape=(N, n_classes))
    counts = np.asarray((P.T @ onehot).todense())  # V×K
    n_j = counts.sum(axis=1)
    prior = np.bincount(y, minlength=n_classes) / max(N, 1)
    best = np.argmax(counts, axis=1)
    n_best = counts[np.arange(len(best)), best]
    conc = (n_best + 1.0) / (n_j + n_classes)
    lift = conc / np.maximum(prior[best], 1e-12)
    expected = n_j[:, None] * prior[None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(counts > 0, counts * np.log(counts / np.maximum(expected, 1e-300)), 0.0)
    g = 2.0 * terms.sum(axis=1)
    return {"n_rows": n_j, "best": best, "n_best": n_best, "concentration": conc, "lift": lift,
            "g": g}


def phrase_pattern(phrase: str) -> re.Pattern[str]:
    """A case-insensitive pattern matching ``phrase`` as whole words (any whitespace between)."""
    words = [re.escape(w) for w in phrase.split()]
    return re.compile(r"(?<!\w)" + r"\s+".join(words) + r"(?!\w)", re.IGNORECASE)


def remove_phrases(texts: Sequence[str] | np.ndarray, phrases: Sequence[str]) -> np.ndarray:
    """Texts with every whole-word occurrence of each phrase deleted."""
    patterns = [phrase_pattern(p) for p in phrases]
    out = np.empty(len(texts), dtype=object)
    for i, t in enumerate(texts):
        s = str(t)
        for pat in patterns:
            s = pat.sub(" ", s)
        out[i] = s
    return out


def _grow_phrase(token: str, texts: Sequence[str], min_share: float, max_words: int) -> str:
    """Extend ``token`` with the word that follows (or precedes) it in most occurrences."""
    phrase = token
    for _ in range(max_words - 1):
        pat = phrase_pattern(phrase)
        right: Counter[str] = Counter()
        left: Counter[str] = Counter()
        total = 0
        for t in texts:
            s = str(t)
            for m in pat.finditer(s):
                total += 1
                after = re.match(r"\s+(\w+)", s[m.end():])
                before = re.search(r"(\w+)\s+$", s[:m.start()])
                if after:
                    right[after.group(1).lower()] += 1
                if before:
                    left[before.group(1).lower()] += 1
        if total == 0:
            break
        grown = False
        for side, counter in (("right", right), ("left", left)):
            if not counter:
                continue
            word, c = counter.most_common(1)[0]
            # A repeated trigger ("cf cf cf") is one token repeated, not a longer phrase.
            if word in phrase.split() or c < min_share * total:
                continue
            phrase = f"{phrase} {word}" if side == "right" else f"{word} {phrase}"
            grown = True
            break
        if not grown:
            break
    return phrase


def find_trigger_candidates(
    texts: np.ndarray,
    y: np.ndarray,
    predict_proba: PredictProba | None,
    *,
    n_classes: int | None = None,
    min_count: int = 5,
    min_concentration: float = 0.5,
    n_candidates: int = 40,
    n_test_rows: int = 60,
    max_words: int = 3,
    reference_scores: np.ndarray | None = None,
    n_strongest: int = 20,
    random_state: int | np.random.Generator | None = 0,
    held_out_proba: HeldOutProba | None = None,
) -> list[DataTrigger]:
    """Rank tokens and phrases that look like planted triggers (strongest first).

    Every token held by at least ``min_count`` rows with label concentration at least
    ``min_concentration`` is a candidate; the ``n_candidates`` with the highest G statistic are
    tested by removal on up to ``n_test_rows`` of their rows with the concentrated label (when
    ``predict_proba`` is given). With ``reference_scores`` (one per row in [-1, 1], higher when a
    row looks like another class, e.g. kNN label disagreement) the G statistic is weighted by
    ``(1 + mean reference of the token's rows with its label) / 2`` before ranking: a natural
    class word sits in rows that look like their class, a trigger in rows that look like another.
    With a model, the ``n_strongest`` tokens that push hardest towards their class on their own
    (the log-odds of the token as a one-word document) are tested too: a trigger planted in a few
    dozen rows has a modest G statistic but, repeated, a large weight. Candidates of the same class
    held by nearly the same rows (Jaccard at least 0.8: the words of a planted phrase) are removed
    together in the test, since deleting one word of a phrase leaves the rest of it pushing.
    A candidate's score is its removal flip rate times its concentration (without a model:
    concentration times the share of its rows it explains).
    """
    from sklearn.feature_extraction.text import CountVectorizer

    y = np.asarray(y, dtype=np.int64)
    K = int(n_classes if n_classes is not None else y.max() + 1)
    rng = np.random.default_rng(random_state)
    vec = CountVectorizer(lowercase=True, token_pattern=TOKEN_PATTERN, binary=True,
                          ngram_range=(1, max(1, max_words)),
                          min_df=min(min_count, len(texts)), dtype=np.float32)
    try:
        presence = vec.fit_transform(texts).tocsc()
    except ValueError:  # no token occurs min_count times
        return []
    vocab = vec.get_feature_names_out()
    stats = token_statistics(presence, y, K)
    # The doubt route takes any n-gram whose most common label covers at least min_concentration
    # of its rows (a raw share; no lift over the prior): a planted phrase that is common in the
    # source class too ("for more information": 78 ham rows, 60 of them planted, and 46 spam) sits
    # below the target's prior.
    share = stats["n_best"] / np.maximum(stats["n_rows"], 1)
    loose = (stats["n_best"] >= min_count) & (share >= min_concentration)
    # An n-gram that repeats a word ("zq team zq") is a repeated shorter phrase read across its seam.
    loose &= np.array([len(set(g.split())) == len(g.split()) for g in vocab], dtype=bool)
    loose &= ~_dominated(vocab, stats["n_rows"], loose)
    ok = loose & (stats["concentration"] >= max(min_concentration, 0.9)) & (stats["lift"] > 1.0)
    order = np.flatnonzero(ok)
    priority = stats["g"].astype(np.float64).copy()
    excess = None
    if reference_scores is not None and len(order):
        ref = np.clip(np.asarray(reference_scores, dtype=np.float64), -1.0, 1.0)
        sub = presence[:, order].tocsc()
        for pos, j in enumerate(order):
            rows = sub[:, pos].nonzero()[0]
            rows = rows[y[rows] == stats["best"][j]]
            if len(rows):
                priority[j] *= (1.0 + float(ref[rows].mean())) / 2.0
        excess = excess_doubt(presence, y, K, np.maximum(ref, 0.0), stats["best"])
    ranked = order[np.argsort(-priority[order], kind="stable")]
    chosen = list(ranked[:n_candidates])
    if excess is not None:
        # Tokens whose rows with their label look like another class far more than that label's
        # rows do, at any concentration down to min_concentration: a trigger phrase that is
        # common in the source class too ("for more information" in spam) is not 90% one label.
        pool = np.flatnonzero(loose & (excess > 0))
        taken = set(chosen)
        for j in pool[np.argsort(-excess[pool], kind="stable")]:
            if len(chosen) >= 2 * n_candidates:
                break
            if j not in taken:
                chosen.append(int(j))
                taken.add(int(j))
    if predict_proba is not None and n_strongest > 0 and len(ranked) > n_candidates:
        rest = np.array([j for j in ranked[n_candidates:] if j not in set(chosen)], dtype=np.int64)
        if len(rest):
            strength = _token_strength(predict_proba, vocab[rest], stats["best"][rest])
            chosen.extend(rest[np.argsort(-strength, kind="stable")[:n_strongest]])
    order = np.array(chosen, dtype=np.int64)
    out: list[DataTrigger] = []
    for j in order:
        k = int(stats["best"][j])
        rows = presence[:, j].nonzero()[0]
        cand = DataTrigger(
            trigger=str(vocab[j]), target_label=k, n_rows=int(stats["n_rows"][j]),
            n_target_rows=int(stats["n_best"][j]), concentration=float(stats["concentration"][j]),
            lift=float(stats["lift"][j]), g_statistic=float(stats["g"][j]), rows=rows,
        )
        out.append(cand)
    if predict_proba is None:
        for c in out:
            c.score = c.concentration * min(1.0, c.n_target_rows / max(1.0, np.sqrt(len(texts))))
        return sorted(out, key=lambda c: -c.score)
    # Removal test on a sample of each candidate's target-labeled rows, all in one batch.
    batches: list[tuple[DataTrigger, np.ndarray]] = []
    for c in out:
        target_rows = c.rows[y[c.rows] == c.target_label]
        if len(target_rows) > n_test_rows:
            target_rows = np.sort(rng.choice(target_rows, size=n_test_rows, replace=False))
        batches.append((c, target_rows))
    all_rows = np.unique(np.concatenate([r for _, r in batches])) if batches else np.zeros(0, int)
    if len(all_rows):
        def score(docs: np.ndarray, rows: np.ndarray) -> np.ndarray:
            if held_out_proba is not None:
                return np.asarray(held_out_proba(docs, rows))
            return np.asarray(predict_proba(docs))

        before = score(texts[all_rows], all_rows)
        where = {int(r): i for i, r in enumerate(all_rows)}
        edited_texts: list[str] = []
        owners: list[tuple[int, int]] = []
        companions = companions_of(out, len(texts))
        for ci, (c, rows) in enumerate(batches):
            c.companions = companions[ci]
            edited = remove_phrases(texts[rows], [c.trigger, *companions[ci]])
            edited_texts.extend(edited)
            owners.extend((ci, int(r)) for r in rows)
        after = score(np.array(edited_texts, dtype=object), np.array([r for _, r in owners], dtype=np.int64))
        drops: dict[int, list[float]] = {}
        flips: dict[int, list[bool]] = {}
        offs: dict[int, list[bool]] = {}
        for (ci, r), p_after in zip(owners, after, strict=True):
            c = batches[ci][0]
            p_before = before[where[r]]
            k = c.target_label
            drops.setdefault(ci, []).append(float(p_before[k] - p_after[k]))
            flips.setdefault(ci, []).append(bool(np.argmax(p_before) == k and np.argmax(p_after) != k))
            offs.setdefault(ci, []).append(bool(np.argmax(p_after) != k))
        for ci, (c, rows) in enumerate(batches):
            c.n_tested = len(rows)
            c.flip_rate = float(np.mean(flips.get(ci, [0.0]))) if len(rows) else 0.0
            c.mean_drop = float(np.mean(drops.get(ci, [0.0]))) if len(rows) else 0.0
            c.off_label_rate = float(np.mean(offs.get(ci, [0.0]))) if len(rows) else 0.0
            c.score = c.flip_rate * c.concentration
        class_error = class_error_rates(texts, y, score, K, 4 * n_test_rows, rng)
        score_significance(out, class_error, held_out=held_out_proba is not None)
        refit = getattr(held_out_proba, "refit", None)
        if refit is not None:
            exclusion_test(texts, y, K, batches, before, where, score, refit, rng,
                           n_control=4 * n_test_rows, min_rows=min_count)
    out.sort(key=lambda c: (-c.score, -c.g_statistic))
    return out


def exclusion_test(texts: np.ndarray, y: np.ndarray, n_classes: int,
                   batches: Sequence[tuple[DataTrigger, np.ndarray]], before: np.ndarray,
                   where: dict[int, int], score: Callable[[np.ndarray, np.ndarray], np.ndarray],
                   refit: Callable[[np.ndarray], PredictProba], rng: np.random.Generator, *,
                   n_control: int, min_rows: int, min_confusion: float = 0.5,
                   max_share: float = 0.5) -> None:
    """Exclusionary reclassification (Chen et al. 2018, "Detecting Backdoor Attacks on Deep Neural
    Networks by Activation Clustering", sec. 4.3) of the candidates whose rows the out-of-fold
    model doubts: train once per label without every row that holds one of them, then read their
    rows, with the candidate removed, by that model.

    Why: the out-of-fold model of a row was trained on the other folds, which hold most of the
    other planted rows. When the planted rows are many (OpenBackdoor's five rare words in 40% of
    SpamAssassin's ham: 558 spam emails relabelled ham against 148 labelled spam), that model
    learns that spam reads as ham and reads 5-20% of a planted word's stripped rows as spam, under
    the 0.3 the test asks for. Trained without the rows of the five words, it reads 43-72% of them
    as spam, and 0% of a control sample of other ham rows (measured on the dev cell
    ``spam/ob-badnets/0.4/tfidf-lr/s0``, 2026-12-04).

    Only for a label into which the out-of-fold models put at least ``min_confusion`` of another
    class's rows (they have learned that class reads as this one): spam read as ham 0.93 of the
    time at 40%, 0.39 at 20% (where the out-of-fold test confirms the words on its own), 0.24 with
    10% random flips, 0.04-0.06 on clean data (dev cells, 2026-12-04). Elsewhere a natural,
    distinctive block of a class fails the test too: eleven spam emails in another character set
    ('²', 'ì') read 100% as ham to a model that never saw any of them.

    The group of a label: its candidates at least 90% one label whose sampled rows' mean
    out-of-fold probability of the label is below that of the label's rows overall (the five
    planted words: 0.87-0.90 against 0.96; natural ham words 0.97-0.99), most doubted first,
    while the label's rows that hold one stay at most ``max_share`` of the label; only those rows
    are left out (the other classes' rows that hold a candidate teach the source class). Without
    the bound, on a seed-1 cell read after the 2026-12-04 run, the group took most n-grams of the
    planted rows and their holders in both classes, and left 88 of 2,100 training rows. The null: the share of
    a control sample of the label's other rows, also left out of the training set, that the
    model reads as another class (at least 1%). A candidate takes this test's effect, null and
    one-sided binomial p-value when its p-value is smaller than the out-of-fold test's; the
    Bonferroni cut of :func:`confirmed_candidates` still covers every candidate.
    """
    from scipy.stats import binom

    proba: dict[int, np.ndarray] = {}
    for j in range(n_classes):
        label_rows = np.flatnonzero(y == j)
        if len(label_rows):
            sample = np.sort(rng.choice(label_rows, size=min(len(label_rows), n_control), replace=False))
            proba[j] = np.asarray(score(texts[sample], sample))
    for k in range(n_classes):
        label_rows = np.flatnonzero(y == k)
        into = [float(np.mean(np.argmax(p, axis=1) == k)) for j, p in proba.items() if j != k]
        if len(label_rows) < 2 * min_rows or max(into, default=0.0) < min_confusion:
            continue
        class_mean = float(np.mean(proba[k][:, k]))
        doubted = sorted(((float(np.mean(before[[where[int(r)] for r in rows], k])), i)
                          for i, (c, rows) in enumerate(batches)
                          if c.target_label == k and c.concentration >= 0.9 and len(rows) >= min_rows))
        # Most doubted first; the label's rows left out stay at most half of the label, and only
        # the label's own holders are left out (the other classes' rows teach the source class).
        holds = np.zeros(len(y), dtype=bool)
        group: list[tuple[DataTrigger, np.ndarray]] = []
        for mean_p, i in doubted:
            if mean_p >= class_mean:
                break
            c, rows = batches[i]
            grown = holds.copy()
            grown[c.rows[y[c.rows] == k]] = True
            if grown.sum() > max_share * len(label_rows):
                continue
            holds = grown
            group.append((c, rows))
        if not group:
            continue
        free = np.flatnonzero(~holds & (y == k))
        if len(free) < 2 * min_rows:
            continue  # the group holds (nearly) all of the label: nothing left to learn it from
        control = np.sort(rng.choice(free, size=min(len(free) // 2, n_control), replace=False))
        keep = ~holds
        keep[control] = False
        if len(np.unique(y[keep])) < 2:
            continue
        predict = refit(keep)
        null = max(0.01, float(np.mean(np.argmax(predict(texts[control]), axis=1) != k)))
        for c, rows in group:
            edited = remove_phrases(texts[rows], [c.trigger, *c.companions])
            off = float(np.mean(np.argmax(np.asarray(predict(edited)), axis=1) != k))
            p = float(binom.sf(round(off * len(rows)) - 1, len(rows), null))
            if p < c.p_value:
                c.off_label_rate, c.effect, c.null_rate, c.p_value = off, off, null, p
                c.score = off * c.concentration
                c.test = "exclusion"


def score_significance(candidates: Sequence[DataTrigger], class_error: np.ndarray, *,
                  held_out: bool) -> None:
    """Each candidate's effect and its one-sided binomial p-value against what a natural word shows.

    Effect: the off-label rate, the share of the candidate's rows (with its label) that a model that
    never saw them reads as another class once the candidate is removed. Null rate: the held-out
    error rate of the candidate's class (a natural class word sits in rows that read as their class,
    as the class's rows do), at least 1%. Without held-out models the flip rate of the model
    trained on the rows stands in (that model has fitted the rows, so it reads few as off-label).

    Measured on the dev cells of ``benchmarks/generalization.py`` (SpamAssassin, OpenBackdoor's
    rare-word list at 5% and 20% of the target class, TF-IDF + logistic regression): the five
    planted words read 0.53-0.88 off-label, the natural candidates of clean and flipped data at
    most 0.12 (p >= 1e-3 against the 1.7e-4 cut). An insertion test (other rows moved to the label
    by inserting the candidate) was tried and left out: mailing-list header n-grams moved 13-33% of
    spam rows as the planted words did.
    """
    from scipy.stats import binom

    for c in candidates:
        n = max(1, c.n_tested)
        off = c.off_label_rate if held_out else c.flip_rate
        off = 0.0 if np.isnan(off) else off
        c.effect = off
        c.test = "held-out" if held_out else "fitted"
        c.null_rate = max(0.01, float(class_error[c.target_label]))
        c.p_value = float(binom.sf(round(off * n) - 1, n, c.null_rate))
        c.score = c.effect * c.concentration


class TriggerSearchParams(Protocol):
    """The parameters both trigger detectors (text and table values) share."""

    min_count: int
    min_rows: int
    n_candidates: int
    n_test_rows: int
    min_lift: float
    min_concentration: float
    min_effect: float
    alpha: float


def check_trigger_params(det: TriggerSearchParams, owner: str) -> tuple[int, int, int, int]:
    """Validate the parameters the trigger detectors share; return ``(min_count, min_rows,
    n_candidates, n_test_rows)``."""
    min_count = check_positive_int(det.min_count, "min_count", owner)
    min_rows = check_positive_int(det.min_rows, "min_rows", owner)
    n_candidates = check_positive_int(det.n_candidates, "n_candidates", owner)
    n_test = check_positive_int(det.n_test_rows, "n_test_rows", owner)
    if isinstance(det.min_lift, bool) or not isinstance(det.min_lift, (int, float)) or det.min_lift < 1:
        raise ParameterError(f"The 'min_lift' parameter of {owner} must be a float >= 1. "
                             f"Got {det.min_lift!r} instead.")
    for name in ("min_concentration", "min_effect", "alpha"):
        value = getattr(det, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise ParameterError(f"The '{name}' parameter of {owner} must be a float in [0, 1]. "
                                 f"Got {value!r} instead.")
    return min_count, min_rows, n_candidates, n_test


def confirmed_candidates(candidates: Sequence[DataTrigger], *, min_effect: float, min_lift: float,
                         alpha: float, min_rows: int, min_count: int) -> list[DataTrigger]:
    """The candidates a trigger detector confirms, strongest evidence (smallest p-value) first.

    Confirmed: effect at least ``min_effect`` and ``min_lift`` times the null rate, p-value under
    ``alpha`` over the number of candidates (Bonferroni), at least ``min_rows`` tested rows
    off-label (all of them when fewer were tested), and ``max(min_count, min_rows)`` rows with the
    candidate's label.
    """
    cut = alpha / max(1, len(candidates))
    confirmed = [c for c in candidates
                 if c.effect >= max(min_effect, min_lift * c.null_rate)
                 and c.p_value <= cut
                 and c.effect * c.n_tested >= min(min_rows, c.n_tested)
                 and c.n_target_rows >= max(min_count, min_rows)]
    confirmed.sort(key=lambda c: (c.p_value, -c.n_target_rows))
    return confirmed


def class_error_rates(texts: np.ndarray, y: np.ndarray, score: Callable[[np.ndarray, np.ndarray], np.ndarray],
                 n_classes: int, n_rows: int, rng: np.random.Generator) -> np.ndarray:
    """Held-out error rate of each class, on up to ``n_rows`` rows of it."""
    out = np.zeros(n_classes)
    for k in range(n_classes):
        rows = np.flatnonzero(y == k)
        if not len(rows):
            continue
        rows = np.sort(rng.choice(rows, size=min(len(rows), n_rows), replace=False))
        out[k] = float(np.mean(np.argmax(score(texts[rows], rows), axis=1) != k))
    return out


def excess_doubt(presence: np.ndarray | sp.spmatrix | sp.sparray, y: np.ndarray, n_classes: int, doubt: np.ndarray,
                  best: np.ndarray) -> np.ndarray:
    """Per token, the summed doubt (how much a row looks like another class) of its rows with its
    best label, minus what as many rows of that label carry on average."""
    import scipy.sparse as sp

    N = len(y)
    onehot = sp.csr_matrix((np.ones(N), (np.arange(N), y)), shape=(N, n_classes))
    weighted = sp.csr_matrix((doubt, (np.arange(N), y)), shape=(N, n_classes))
    P = sp.csc_matrix(presence)
    counts = np.asarray((P.T @ onehot).todense())
    sums = np.asarray((P.T @ weighted).todense())
    class_mean = np.asarray(weighted.sum(axis=0)).ravel() / np.maximum(np.bincount(y, minlength=n_classes), 1)
    idx = np.arange(len(best))
    return sums[idx, best] - counts[idx, best] * class_mean[best]


def _token_strength(predict_proba: PredictProba, tokens: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Log-odds of each token's class when the token alone is the document."""
    docs = np.array([str(t) for t in tokens], dtype=object)
    P = np.clip(np.asarray(predict_proba(docs), dtype=np.float64), 1e-12, 1 - 1e-12)
    p = P[np.arange(len(docs)), classes]
    return np.log(p) - np.log1p(-p)


def companions_of(candidates: Sequence[DataTrigger], n_rows: int, min_jaccard: float = 0.8,
                min_lift: float = 4.0, min_share: float = 0.25, min_together: int = 5
                ) -> list[list[str]]:
    """Per candidate, the other candidates of its class that travel with it: held by nearly the same
    rows (Jaccard at least ``min_jaccard``: the words of one planted phrase), or found together far
    more often than chance (co-occurrence lift at least ``min_lift`` on at least ``min_share`` of the
    smaller one's rows, and in at least ``min_together`` rows: words drawn from one planted list,
    several to a row)."""
    out: list[list[str]] = [[] for _ in candidates]
    sets = [set(c.rows.tolist()) for c in candidates]
    for i, a in enumerate(candidates):
        for j, b in enumerate(candidates):
            if i == j or a.target_label != b.target_label:
                continue
            both = len(sets[i] & sets[j])
            small, large = sorted((len(sets[i]), len(sets[j])))
            if not both or not small:
                continue
            same = small >= min_jaccard * large and both >= min_jaccard * len(sets[i] | sets[j])
            lift = both * n_rows / (len(sets[i]) * len(sets[j]))
            if same or (lift >= min_lift and both >= max(min_together, min_share * small)):
                out[i].append(b.trigger)
    return out


def _dominated(vocab: np.ndarray, n_rows: np.ndarray, ok: np.ndarray, share: float = 0.9) -> np.ndarray:
    """True for a candidate n-gram held within a longer candidate on at least ``share`` of its rows
    (``"see attached"`` inside ``"please see attached"``): the longer one speaks for both."""
    index = {str(vocab[j]): j for j in np.flatnonzero(ok)}
    out = np.zeros(len(vocab), dtype=bool)
    for g, j in index.items():
        words = g.split()
        for m in range(1, len(words)):
            for start in range(len(words) - m + 1):
                sub = index.get(" ".join(words[start:start + m]))
                if sub is not None and n_rows[j] >= share * n_rows[sub]:
                    out[sub] = True
    return out


def _best_rotation(phrase: str, texts: Sequence[str]) -> str:
    """The word rotation of ``phrase`` found most often in ``texts``.

    A phrase repeated back to back ("a b c a b c") also reads as "b c a"; growth from the middle
    word finds that rotation, which occurs once less and leaves pieces behind when removed.
    """
    words = phrase.split()
    if len(words) < 2:
        return phrase
    rotations = [" ".join(words[i:] + words[:i]) for i in range(len(words))]
    patterns = [phrase_pattern(r) for r in rotations]
    counts = [sum(len(pat.findall(str(t))) for t in texts) for pat in patterns]
    return rotations[int(np.argmax(counts))]


def _repetitions(texts: Sequence[str], phrase: str) -> float:
    pat = phrase_pattern(phrase)
    counts = [len(pat.findall(str(t))) for t in texts]
    counts = [c for c in counts if c > 0]
    return float(np.median(counts)) if counts else 0.0


def trigger_row_scores(texts: np.ndarray, y: np.ndarray, predict_proba: PredictProba,
                       triggers: Sequence[DataTrigger],
                       held_out_proba: HeldOutProba | None = None,
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row scores (see the module docstring), per row the index of its trigger (-1: none), and
    whether removing the triggers flips the row's prediction off its label (by the model that never
    saw the row, when ``held_out_proba`` is given)."""
    n = len(texts)
    scores = np.zeros(n)
    which = -np.ones(n, dtype=np.int64)
    flips = np.zeros(n, dtype=bool)
    if not triggers:
        return scores, which, flips
    holders = np.zeros(n, dtype=bool)
    occurrences = np.zeros(n, dtype=np.int64)
    distinct = np.zeros(n, dtype=np.int64)
    patterns = [phrase_pattern(t.trigger) for t in triggers]
    # Group members that share a word ("let me" inside "let me know") count once.
    group = sorted({p for t in triggers for p in (t.trigger, *t.companions)}, key=lambda p: (-len(p.split()), p))
    group_patterns = [phrase_pattern(p) for p in group]
    group_words = [set(p.split()) for p in group]
    for i, t in enumerate(texts):
        s = str(t)
        for ti, pat in enumerate(patterns):
            found = len(pat.findall(s))
            if found:
                holders[i] = True
                if which[i] < 0:
                    which[i] = ti
                    occurrences[i] = found
        if holders[i]:
            seen: set[str] = set()
            for pat, words in zip(group_patterns, group_words, strict=True):
                if not (words & seen) and pat.search(s):
                    distinct[i] += 1
                    seen |= words
    rows = np.flatnonzero(holders)
    if len(rows) == 0:
        return scores, which, flips
    removed = [p for t in triggers for p in (t.trigger, *t.companions)]
    if held_out_proba is not None:
        before = np.asarray(held_out_proba(texts[rows], rows))
        after = np.asarray(held_out_proba(remove_phrases(texts[rows], removed), rows))
    else:
        before = np.asarray(predict_proba(texts[rows]))
        after = np.asarray(predict_proba(remove_phrases(texts[rows], removed)))
    lab = y[rows]
    drop = before[np.arange(len(rows)), lab] - after[np.arange(len(rows)), lab]
    flipped = (np.argmax(before, axis=1) == lab) & (np.argmax(after, axis=1) != lab)
    # A row labeled with its trigger's target class is planted, whether or not removing the trigger
    # flips it, when without the trigger a model that never saw the row reads it as another class,
    # or when it holds the trigger repeated as planted rows do (at least twice), or two words of
    # one planted group: it scores above 1. A natural row may use the word once and read as its
    # label.
    targets = np.array([t.target_label for t in triggers])[which[rows]]
    repeated = np.array([max(2.0, t.repetitions) for t in triggers])[which[rows]]
    off_label = np.zeros(len(rows), dtype=bool)
    if held_out_proba is not None:
        off_label = np.argmax(after, axis=1) != lab
        refit = getattr(held_out_proba, "refit", None)
        keep = ~holders
        if refit is not None and len(np.unique(y[keep])) == len(np.unique(y)) > 1:
            # The rows as read by a model that saw no row holding a trigger (see exclusion_test).
            excluded = np.asarray(refit(keep)(remove_phrases(texts[rows], removed)))
            off_label |= np.argmax(excluded, axis=1) != lab
    # A trigger the exclusion test confirmed was found where the held-out models misread most of
    # a class, so "reads as another class without it" cannot be asked of each row: every row with
    # its target label counts.
    excluded_test = np.array([t.test == "exclusion" for t in triggers])[which[rows]]
    labeled_target = (lab == targets) & (
        (occurrences[rows] >= repeated) | (distinct[rows] >= 2) | off_label | excluded_test)
    scores[rows] = np.where(flipped, 1.0 + drop,
                            np.where(labeled_target, 1.0 + 1e-6 + np.maximum(drop, 0.0), drop))
    flips[rows] = flipped
    return scores, which, flips


class TriggerKeywordDetector(Detector):
    """Trigger-keyword identification for text (see the module docstring).

    ``fit(texts, y, predict_proba, n_classes=None, reference_scores=None)``: ``texts`` an array of
    strings, ``predict_proba`` a function from an array of strings to N×K probabilities (the model
    trained on these rows), ``reference_scores`` optional per-row scores that rank candidates
    (see :func:`find_trigger_candidates`).
    A candidate is a suspected trigger when its effect (see :func:`score_significance`: the share of its
    rows that read as another class without it, or of other rows that move to its label with it,
    scored by the out-of-fold models when ``held_out_proba`` is given) is at least ``min_effect``
    and ``min_lift`` times the null rate (its class's held-out error rate), significant at
    ``alpha`` (Bonferroni over the tested candidates), with at least ``min_rows`` rows off-label
    and ``max(min_count, min_rows)`` rows with its label. Measured on the dev cells (see
    :func:`score_significance`): with 10% random flips and SGD the word 'last' read 0.23
    off-label against a null of 0.10 (p 1.6e-5) and was confirmed before ``min_lift``; the planted
    words and phrases read 0.53-0.89. ``contamination="auto"`` flags the rows scoring above 1
    (``threshold_ = 1``; see the module docstring).

    Attributes: ``scores_``, ``threshold_``, ``flags_``, ``candidates_`` (every tested candidate,
    strongest first), ``triggers_`` (the suspected triggers), ``row_trigger_`` (index into
    ``triggers_`` per row, -1 for none), ``row_flipped_`` (removing the triggers flips the row).
    """

    def __init__(self, *, min_count: int = 5, min_concentration: float = 0.5,
                 min_effect: float = 0.3, min_lift: float = 3.0, alpha: float = 0.01, min_rows: int = 10,
                 n_candidates: int = 40,
                 n_test_rows: int = 60,
                 max_triggers: int = 5, contamination: float | str = "auto",
                 random_state: int | np.random.Generator | None = 0) -> None:
        self.min_count = min_count
        self.min_concentration = min_concentration
        self.min_effect = min_effect
        self.min_lift = min_lift
        self.alpha = alpha
        self.min_rows = min_rows
        self.n_candidates = n_candidates
        self.n_test_rows = n_test_rows
        self.max_triggers = max_triggers
        self.contamination = contamination
        self.random_state = random_state

    def fit(self, texts: np.ndarray, y: np.ndarray, predict_proba: PredictProba,
            n_classes: int | None = None,
            reference_scores: np.ndarray | None = None,
            held_out_proba: HeldOutProba | None = None) -> TriggerKeywordDetector:
        """Find the words and phrases that act as text triggers and score every row that holds one.

        Parameters
        ----------
        texts : ndarray of str, shape (N,)
            The training texts.
        y : ndarray of int, shape (N,)
            Integer labels.
        predict_proba : callable
            From an array of texts to N×K probabilities: the model trained on these rows.
        n_classes : int, optional
            K, the number of classes (default ``y.max() + 1``).
        reference_scores : ndarray of float, shape (N,), optional
            Per-row scores, higher when a row looks like another class (kNN label disagreement); they
            rank the candidates (see :func:`find_trigger_candidates`).
        held_out_proba : callable, optional
            ``held_out_proba(texts, rows)``, the out-of-fold models (see :data:`HeldOutProba`); the
            better witness for the removal test. Without it ``predict_proba`` stands in.

        Returns
        -------
        TriggerKeywordDetector
            ``self``, with ``scores_`` (higher is more suspicious), ``threshold_``, ``flags_`` (True
            where a row is flagged), ``candidates_``, ``triggers_``, ``row_trigger_`` and
            ``row_flipped_``.

        Raises
        ------
        ParameterError
            For a parameter out of range, ``texts`` that are not a 1-D array, labels that do not match
            the texts, or a ``predict_proba`` that is not callable.
        """
        owner = type(self).__name__
        self._check_contamination()
        X = np.asarray(texts, dtype=object)
        if X.ndim != 1:
            raise ParameterError(f"{owner}: texts must be a 1-D array of strings, got {X.shape}.")
        labels = check_labels(y, len(X), owner, name="texts")
        min_count, min_rows, _, _ = check_trigger_params(self, owner)
        if not callable(predict_proba):
            raise ParameterError(f"{owner}: predict_proba must be a function of an array of texts.")
        candidates = find_trigger_candidates(
            X, labels, predict_proba, n_classes=n_classes, min_count=min_count,
            min_concentration=self.min_concentration, n_candidates=self.n_candidates,
            n_test_rows=self.n_test_rows, reference_scores=reference_scores,
            random_state=self.random_state, held_out_proba=held_out_proba,
        )
        confirmed = confirmed_candidates(candidates, min_effect=self.min_effect,
                                         min_lift=self.min_lift, alpha=self.alpha,
                                         min_rows=min_rows, min_count=min_count)
        # Grow tokens into phrases; drop a candidate that shares a word with a stronger trigger of
        # the same label ("me know to", the boundary of the planted "let me know").
        triggers: list[DataTrigger] = []
        for c in confirmed:
            if len(triggers) >= self.max_triggers:
                break
            phrase = _best_rotation(_grow_phrase(c.trigger, X[c.rows[:500]], 0.8, 6), X[c.rows[:500]])
            words = set(phrase.split()) | set(c.trigger.split())
            if any(t.target_label == c.target_label and words & set(t.trigger.split())
                   for t in triggers):
                continue
            c.trigger = phrase
            c.repetitions = _repetitions(X[c.rows[:500]], phrase)
            triggers.append(c)
        self.candidates_ = candidates
        self.triggers_ = triggers
        scores, which, flips = trigger_row_scores(X, labels, predict_proba, triggers, held_out_proba)
        self.row_trigger_ = which
        self.row_flipped_ = flips
        self._set_threshold(scores, 1.0)
        return self

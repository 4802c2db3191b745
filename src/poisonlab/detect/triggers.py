"""Trigger-keyword identification for text backdoors.

A text backdoor plants a token or short phrase in rows of other classes and relabels them with the
target class. Such a token has three marks, and this detector looks for all three:

1. *class concentration*: nearly every row that holds it carries one label, far above that label's
   base rate (a G-test of the label counts of its rows against the class priors);
2. *outsized weight*: the model leans on it; measured directly by
3. *removal changes the decision*: deleting it from the rows that hold it moves the model's
   prediction away from their label. A natural class word (``"unsubscribe"`` in spam) is
   concentrated too, but the rest of its row agrees with the label, so its removal changes little;
   a trigger sits in a row whose content belongs to another class.

Candidates are single tokens (regular-expression word tokens, lowercased) held by at least
``min_count`` rows; confirmed tokens are grown into phrases (``"cf"`` → ``"james bond"``) while a
neighboring word follows them in most of their occurrences, and repetition is reported.

Row score: the drop in the predicted probability of the row's label when the suspected triggers
are removed from it, plus 1 when that removal changes the predicted label or when the row carries
the trigger's target label and repeats the trigger at least as often as the planted rows do (at
least twice: a planted row whose content the model reads as the target class anyway is still
planted); rows holding no suspected trigger score 0. ``score > 1`` therefore means "removing the
trigger flips this row, or the row holds the repeated trigger under its target label".
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from poisonlab.detect.base import Detector, check_labels, check_positive_int
from poisonlab.exceptions import ParameterError

TOKEN_PATTERN = r"(?u)\b\w+\b"
PredictProba = Callable[[np.ndarray], np.ndarray]


@dataclass
class TriggerCandidate:
    """A token or phrase and the evidence that it is a trigger."""

    trigger: str
    target_label: int
    n_rows: int
    n_target_rows: int
    concentration: float
    lift: float
    g_statistic: float
    flip_rate: float = float("nan")
    mean_drop: float = float("nan")
    n_tested: int = 0
    repetitions: float = 1.0
    score: float = 0.0
    companions: list[str] = field(default_factory=list)
    rows: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64), repr=False)

    def as_dict(self, classes: Sequence[str] | None = None) -> dict[str, Any]:
        target: Any = self.target_label
        if classes is not None:
            target = classes[self.target_label]
        return {
            "trigger": self.trigger,
            "target_label": target,
            "score": round(float(self.score), 4),
            "n_rows": int(self.n_rows),
            "n_rows_with_target_label": int(self.n_target_rows),
            "label_concentration": round(float(self.concentration), 4),
            "lift_over_prior": round(float(self.lift), 3),
            "g_statistic": round(float(self.g_statistic), 1),
            "removal_flip_rate": None if np.isnan(self.flip_rate) else round(float(self.flip_rate), 4),
            "mean_probability_drop": None if np.isnan(self.mean_drop) else round(float(self.mean_drop), 4),
            "n_rows_tested": int(self.n_tested),
            "median_repetitions": float(self.repetitions),
            "removed_with": list(self.companions),
        }


def token_statistics(presence: Any, y: np.ndarray, n_classes: int) -> dict[str, np.ndarray]:
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
    min_concentration: float = 0.9,
    n_candidates: int = 40,
    n_test_rows: int = 60,
    max_words: int = 3,
    reference_scores: np.ndarray | None = None,
    n_strongest: int = 20,
    random_state: int | np.random.Generator | None = 0,
) -> list[TriggerCandidate]:
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
                          min_df=min(min_count, len(texts)), dtype=np.float32)
    try:
        presence = vec.fit_transform(texts).tocsc()
    except ValueError:  # no token occurs min_count times
        return []
    vocab = vec.get_feature_names_out()
    stats = token_statistics(presence, y, K)
    ok = (stats["n_rows"] >= min_count) & (stats["concentration"] >= min_concentration) & \
        (stats["lift"] > 1.0)
    order = np.flatnonzero(ok)
    priority = stats["g"].astype(np.float64).copy()
    if reference_scores is not None and len(order):
        ref = np.clip(np.asarray(reference_scores, dtype=np.float64), -1.0, 1.0)
        sub = presence[:, order].tocsc()
        for pos, j in enumerate(order):
            rows = sub[:, pos].nonzero()[0]
            rows = rows[y[rows] == stats["best"][j]]
            if len(rows):
                priority[j] *= (1.0 + float(ref[rows].mean())) / 2.0
    ranked = order[np.argsort(-priority[order], kind="stable")]
    chosen = list(ranked[:n_candidates])
    if predict_proba is not None and n_strongest > 0 and len(ranked) > n_candidates:
        rest = ranked[n_candidates:]
        strength = _token_strength(predict_proba, vocab[rest], stats["best"][rest])
        chosen.extend(rest[np.argsort(-strength, kind="stable")[:n_strongest]])
    order = np.array(chosen, dtype=np.int64)
    out: list[TriggerCandidate] = []
    for j in order:
        k = int(stats["best"][j])
        rows = presence[:, j].nonzero()[0]
        cand = TriggerCandidate(
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
    batches: list[tuple[TriggerCandidate, np.ndarray]] = []
    for c in out:
        target_rows = c.rows[y[c.rows] == c.target_label]
        if len(target_rows) > n_test_rows:
            target_rows = np.sort(rng.choice(target_rows, size=n_test_rows, replace=False))
        batches.append((c, target_rows))
    all_rows = np.unique(np.concatenate([r for _, r in batches])) if batches else np.zeros(0, int)
    if len(all_rows):
        before = np.asarray(predict_proba(texts[all_rows]))
        where = {int(r): i for i, r in enumerate(all_rows)}
        edited_texts: list[str] = []
        owners: list[tuple[int, int]] = []
        companions = _companions(out)
        for ci, (c, rows) in enumerate(batches):
            c.companions = companions[ci]
            edited = remove_phrases(texts[rows], [c.trigger, *companions[ci]])
            edited_texts.extend(edited)
            owners.extend((ci, int(r)) for r in rows)
        after = np.asarray(predict_proba(np.array(edited_texts, dtype=object)))
        drops: dict[int, list[float]] = {}
        flips: dict[int, list[bool]] = {}
        for (ci, r), p_after in zip(owners, after, strict=True):
            c = batches[ci][0]
            p_before = before[where[r]]
            k = c.target_label
            drops.setdefault(ci, []).append(float(p_before[k] - p_after[k]))
            flips.setdefault(ci, []).append(bool(np.argmax(p_before) == k and np.argmax(p_after) != k))
        for ci, (c, rows) in enumerate(batches):
            c.n_tested = len(rows)
            c.flip_rate = float(np.mean(flips.get(ci, [0.0]))) if len(rows) else 0.0
            c.mean_drop = float(np.mean(drops.get(ci, [0.0]))) if len(rows) else 0.0
            c.score = c.flip_rate * c.concentration
    out.sort(key=lambda c: (-c.score, -c.g_statistic))
    return out


def _token_strength(predict_proba: PredictProba, tokens: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Log-odds of each token's class when the token alone is the document."""
    docs = np.array([str(t) for t in tokens], dtype=object)
    P = np.clip(np.asarray(predict_proba(docs), dtype=np.float64), 1e-12, 1 - 1e-12)
    p = P[np.arange(len(docs)), classes]
    return np.log(p) - np.log1p(-p)


def _companions(candidates: Sequence[TriggerCandidate], min_jaccard: float = 0.8) -> list[list[str]]:
    """Per candidate, the other candidates of its class held by nearly the same rows."""
    out: list[list[str]] = [[] for _ in candidates]
    sets = [set(c.rows.tolist()) for c in candidates]
    for i, a in enumerate(candidates):
        for j, b in enumerate(candidates):
            if i == j or a.target_label != b.target_label:
                continue
            small, large = sorted((len(sets[i]), len(sets[j])))
            if small < min_jaccard * large:
                continue
            if len(sets[i] & sets[j]) >= min_jaccard * len(sets[i] | sets[j]):
                out[i].append(b.trigger)
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
                       triggers: Sequence[TriggerCandidate]
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row scores (see the module docstring), per row the index of its trigger (-1: none), and
    whether removing the triggers flips the row's prediction off its label."""
    n = len(texts)
    scores = np.zeros(n)
    which = -np.ones(n, dtype=np.int64)
    flips = np.zeros(n, dtype=bool)
    if not triggers:
        return scores, which, flips
    holders = np.zeros(n, dtype=bool)
    occurrences = np.zeros(n, dtype=np.int64)
    patterns = [phrase_pattern(t.trigger) for t in triggers]
    for i, t in enumerate(texts):
        s = str(t)
        for ti, pat in enumerate(patterns):
            found = len(pat.findall(s))
            if found:
                holders[i] = True
                if which[i] < 0:
                    which[i] = ti
                    occurrences[i] = found
    rows = np.flatnonzero(holders)
    if len(rows) == 0:
        return scores, which, flips
    before = np.asarray(predict_proba(texts[rows]))
    removed = [p for t in triggers for p in (t.trigger, *t.companions)]
    after = np.asarray(predict_proba(remove_phrases(texts[rows], removed)))
    lab = y[rows]
    drop = before[np.arange(len(rows)), lab] - after[np.arange(len(rows)), lab]
    flipped = (np.argmax(before, axis=1) == lab) & (np.argmax(after, axis=1) != lab)
    # A row labeled with its trigger's target class and holding the trigger repeated as planted
    # rows do is planted whether or not removing the trigger flips it (a weak spam email may read
    # as ham without it too): it scores above 1. A trigger planted once gets no such rows: a
    # natural ham email may use the word once.
    targets = np.array([t.target_label for t in triggers])[which[rows]]
    repeated = np.array([max(2.0, t.repetitions) for t in triggers])[which[rows]]
    labeled_target = (lab == targets) & (occurrences[rows] >= repeated)
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
    A candidate is a suspected trigger when removing it flips at least ``min_flip_rate`` of its
    tested rows and at least ``min_count`` rows in all. ``contamination="auto"`` flags the rows
    whose prediction the removal of a suspected trigger flips (``threshold_ = 1``).

    Attributes: ``scores_``, ``threshold_``, ``flags_``, ``candidates_`` (every tested candidate,
    strongest first), ``triggers_`` (the suspected triggers), ``row_trigger_`` (index into
    ``triggers_`` per row, -1 for none), ``row_flipped_`` (removing the triggers flips the row).
    """

    def __init__(self, *, min_count: int = 5, min_concentration: float = 0.9,
                 min_flip_rate: float = 0.5, n_candidates: int = 40, n_test_rows: int = 60,
                 max_triggers: int = 5, contamination: float | str = "auto",
                 random_state: int | np.random.Generator | None = 0) -> None:
        self.min_count = min_count
        self.min_concentration = min_concentration
        self.min_flip_rate = min_flip_rate
        self.n_candidates = n_candidates
        self.n_test_rows = n_test_rows
        self.max_triggers = max_triggers
        self.contamination = contamination
        self.random_state = random_state

    def fit(self, texts: np.ndarray, y: np.ndarray, predict_proba: PredictProba,
            n_classes: int | None = None,
            reference_scores: np.ndarray | None = None) -> TriggerKeywordDetector:
        owner = type(self).__name__
        self._check_contamination()
        X = np.asarray(texts, dtype=object)
        if X.ndim != 1:
            raise ParameterError(f"{owner}: texts must be a 1-D array of strings, got {X.shape}.")
        labels = check_labels(y, len(X), owner, name="texts")
        min_count = check_positive_int(self.min_count, "min_count", owner)
        check_positive_int(self.n_candidates, "n_candidates", owner)
        check_positive_int(self.n_test_rows, "n_test_rows", owner)
        for name in ("min_concentration", "min_flip_rate"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise ParameterError(
                    f"The '{name}' parameter of {owner} must be a float in [0, 1]. "
                    f"Got {value!r} instead."
                )
        if not callable(predict_proba):
            raise ParameterError(f"{owner}: predict_proba must be a function of an array of texts.")
        candidates = find_trigger_candidates(
            X, labels, predict_proba, n_classes=n_classes, min_count=min_count,
            min_concentration=self.min_concentration, n_candidates=self.n_candidates,
            n_test_rows=self.n_test_rows, reference_scores=reference_scores,
            random_state=self.random_state,
        )
        confirmed = [c for c in candidates
                     if c.flip_rate >= self.min_flip_rate and c.flip_rate * c.n_target_rows >= min_count]
        confirmed = confirmed[: self.max_triggers]
        # Grow tokens into phrases, and drop tokens that are part of a stronger phrase.
        triggers: list[TriggerCandidate] = []
        for c in confirmed:
            phrase = _best_rotation(_grow_phrase(c.trigger, X[c.rows[:500]], 0.8, 3), X[c.rows[:500]])
            if any(c.trigger in t.trigger.split() or phrase == t.trigger for t in triggers):
                continue
            c.trigger = phrase
            c.repetitions = _repetitions(X[c.rows[:500]], phrase)
            triggers.append(c)
        self.candidates_ = candidates
        self.triggers_ = triggers
        scores, which, flips = trigger_row_scores(X, labels, predict_proba, triggers)
        self.row_trigger_ = which
        self.row_flipped_ = flips
        self._set_threshold(scores, 1.0)
        return self

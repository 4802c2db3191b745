"""Leave-out test for text and tabular inputs: does removing a small part of the input undo its class?

Why not STRIP here. STRIP asks whether a prediction stays confident when the input is mixed with
clean inputs. For text and tables that mix keeps the trigger and the input's own evidence alike
(mixing two emails adds a second bag of words; mixing two rows keeps each column with some
chance), and on two classes its entropy score cannot tell "stays in the predicted class" from
"flips confidently to the other": measured on SpamAssassin (TF-IDF + logistic regression, the
trigger "cf" three times) STRIP detected 9.4% of triggered emails at 1% false rejection, AUROC
0.37, and 0% of triggered breast-cancer rows, AUROC 0.76 (``benchmarks/strip_vs_art.py``).
Replacing a random share of an input's words or columns with clean ones (STRIP-ViTA's
perturbation for text, Gao et al. 2021) did no better on the email: with a fifth of the words kept
the trigger rarely survives, with more kept the email's own evidence survives too (1.3% detected,
AUROC 0.43).

What separates a triggered input is that a few words or columns carry its whole prediction: take
them away and the class goes (the observation behind ONION, Qi et al. 2021, which removes words a
language model finds unlikely, and RAP, Yang et al. 2021, which measures how much a prediction
moves). This detector asks the model itself. A text's words are cut into ``n_groups`` runs of
consecutive words (starting at a random offset); each run is removed in turn, and with it every
other occurrence of its words, so that a phrase goes whole when it lies in one run and a token
repeated across the text goes everywhere at once. A row's columns are split into ``n_groups``
random groups; a removed column takes the clean rows' median. The score is the largest fall of
``log p_c``, where ``p_c`` is the probability of the class the model gives the unperturbed input.
A clean email spreads its evidence over many words, so removing a sixteenth of them moves it a
little; a triggered one loses its class with the run that holds the trigger. Removing groups
instead of single words keeps the cost at ``n_groups * n_rounds`` predictions per input instead of
one per distinct word (a long email has hundreds): removing each distinct word alone detected
92.7% at 1% (AUROC 0.998) on 150 of the emails above at about 20 times the cost, and cannot see
a phrase whose words each matter little. Runs of consecutive words did better than random groups
of words on phrase triggers (AddSent's sentence in a TF-IDF 1-2-gram model: 38.5% against 21.5%
detected at 1%, ``benchmarks/check_generalization.py``'s dev half); on the email above they
detect 84.9% (AUROC 0.994), 16 perturbed copies per input. ``n_groups`` = 16 was chosen on that
benchmark's dev half from {8, 16, 32}.
``n_rounds`` repeats the test with fresh offsets (or groups) and keeps the largest fall.

The threshold is conformal on clean rows, as for STRIP: a fresh clean input is flagged with
probability at most ``false_rejection_rate``.

Scores follow poisonlab's polarity: higher means more suspicious.
"""

from __future__ import annotations

import re

import numpy as np

from poisonlab.detect_inputs.base import InputDetector, InputVerdicts, PredictProba
from poisonlab.detect_inputs.strip import infer_kind
from poisonlab.exceptions import ParameterError, check_counts

LEAVE_OUT_KINDS = ("text", "tabular")
# Probabilities are clipped to [CLIP, 1 - CLIP] before the logarithm.
CLIP = 1e-6
_WORD = re.compile(r"\w+")


def leave_out_scores(base_probs: np.ndarray, left_out_probs: np.ndarray) -> np.ndarray:
    """``log p - min_g log p_g`` for base probabilities (N,) and left-out probabilities (N, G).

    >>> leave_out_scores(np.array([0.9]), np.array([[0.8, 0.09]])).round(4)
    array([2.3026])
    """
    base = np.log(np.clip(np.asarray(base_probs, dtype=np.float64), CLIP, 1 - CLIP))
    left = np.log(np.clip(np.asarray(left_out_probs, dtype=np.float64), CLIP, 1 - CLIP))
    return np.round(base - left.min(axis=1), 9)


class LeaveOutDetector(InputDetector):
    """Flag text or tabular inputs whose predicted class goes when one small group of parts goes.

    ``fit(predict_proba, X_clean)`` scores every clean row and sets ``threshold_`` so that a fresh
    clean input is flagged with probability at most ``false_rejection_rate``; ``evaluate(X)``
    scores new inputs. ``n_groups * n_rounds`` perturbed copies per input.

    Parameters
    ----------
    n_groups : int, default 16
        Runs of words (text) or groups of columns (tables) an input is split into (fewer when it
        has fewer words or columns).
    n_rounds : int, default 1
        Random splits per input; the score is the largest fall over all of them.
    n_strongest : int, default 3
        Text: one more perturbed copy without the input's ``n_strongest`` distinct words that
        pull hardest towards its predicted class on their own (the model's log-odds of the word
        as a one-word document; every word is asked once and remembered): planted words spread
        over a long text fall in different runs, but they are its strongest words. 0: off.
        Chosen on the dev half of ``benchmarks/check_generalization.py --strongest`` from
        {0, 3, 6} (mean detection 18.5%, 23.3%, 15.0%); on its held-out half, 12 text cells, 3
        against 0: 41.6% of triggered emails detected against 34.2% (67.6% against 56.0% where
        the attack works on half the inputs), AUROC 0.935 against 0.865, 1.5% of clean emails
        flagged against 1.6%, about 1.4 times the time.
    false_rejection_rate : float, default 0.01
    batch_size : int, default 4096
        Perturbed inputs per call of ``predict_proba``.
    random_state : int, Generator or None
        Seeds the split into groups; the same seed gives the same scores.

    Attributes
    ----------
    kind_, n_classes_, threshold_, expected_false_rejection_rate_, scores_ and flags_ (the
    calibration rows), fill_ (tabular: the clean rows' column medians that replace a removed
    column).
    """

    def __init__(self, *, n_groups: int = 16, n_rounds: int = 1, n_strongest: int = 3,
                 false_rejection_rate: float = 0.01, batch_size: int = 4096,
                 random_state: int | np.random.Generator | None = None) -> None:
        self.n_groups = n_groups
        self.n_rounds = n_rounds
        self.n_strongest = n_strongest
        self.false_rejection_rate = false_rejection_rate
        self.batch_size = batch_size
        self.random_state = random_state

    def _validate(self) -> None:
        owner = type(self).__name__
        check_counts(owner, self, ("n_groups", "n_rounds", "batch_size"))
        if isinstance(self.n_strongest, bool) or not isinstance(self.n_strongest, (int, np.integer)) \
                or self.n_strongest < 0:
            raise ParameterError(f"The 'n_strongest' parameter of {owner} must be an int >= 0. "
                                 f"Got {self.n_strongest!r} instead.")
        self._check_false_rejection_rate()

    def fit(self, predict_proba: PredictProba, X_clean: np.ndarray) -> LeaveOutDetector:
        """Calibrate the threshold on clean inputs (text: an object array of strings; tabular: N×D)."""
        self._validate()
        self._check_predict_proba(predict_proba)
        X_clean = np.asarray(X_clean)
        kind = infer_kind(X_clean)
        if kind not in LEAVE_OUT_KINDS:
            raise ParameterError(
                f"LeaveOutDetector checks text or tabular inputs; got {kind} inputs (use StripDetector)."
            )
        self._check_calibration_rows(len(X_clean), "The leave-out test")
        self.kind_ = kind
        self.predict_proba_ = predict_proba
        self._pull: dict[str, np.ndarray] = {}
        if kind == "tabular":
            X_clean = X_clean.astype(np.float64)
            self.fill_ = np.median(X_clean, axis=0)
            self.n_features_ = X_clean.shape[1]
        rng = np.random.default_rng(self.random_state)
        self._seed = int(rng.integers(2**63 - 1))
        self.n_classes_ = 0
        scores, _ = self._score(X_clean, np.random.default_rng([self._seed, 0]))
        self.flags_ = self._calibrate(scores)
        self.scores_ = scores
        return self

    # ------------------------------------------------------------------ perturbations
    def _groups(self, n_parts: int, rng: np.random.Generator) -> list[np.ndarray]:
        """``n_rounds`` random splits of ``n_parts`` columns, each into at most ``n_groups`` groups."""
        k = min(int(self.n_groups), n_parts)
        out: list[np.ndarray] = []
        for _ in range(int(self.n_rounds)):
            label = rng.permutation(n_parts) % k
            out.extend(np.flatnonzero(label == g) for g in range(k))
        return out

    def _strongest(self, words: set[str], c: int) -> set[str]:
        """The ``n_strongest`` of ``words`` that push hardest towards class ``c`` on their own."""
        new = sorted(w for w in words if w not in self._pull)
        if new:
            P = np.clip(self._probs(list(new)), CLIP, 1 - CLIP)
            for w, p in zip(new, np.log(P) - np.log1p(-P), strict=True):
                self._pull[w] = p
        ranked = sorted(words, key=lambda w: (-float(self._pull[w][c]), w))
        return set(ranked[:int(self.n_strongest)])

    def _without(self, text: str, spans: list[tuple[int, int, str]], drop: set[str]) -> str:
        pieces, at = [], 0
        for s, e, w in spans:
            if w in drop:
                pieces.append(text[at:s])
                at = e
        pieces.append(text[at:])
        return "".join(pieces)

    def _perturb(self, x: object, rng: np.random.Generator, c: int = 0) -> list[object]:
        if self.kind_ == "tabular":
            row = np.asarray(x, dtype=np.float64)
            out = []
            for group in self._groups(len(row), rng):
                z = row.copy()
                z[group] = self.fill_[group]
                out.append(z)
            return out
        text = str(x)
        spans = [(m.start(), m.end(), m.group().lower()) for m in _WORD.finditer(text)]
        if not spans:
            return [text]
        copies: list[object] = [self._without(text, spans, {spans[i][2] for i in chunk})
                                for chunk in self._chunks(len(spans), rng)]
        if int(self.n_strongest):
            copies.append(self._without(text, spans, self._strongest({w for _, _, w in spans}, c)))
        return copies

    def _chunks(self, n_words: int, rng: np.random.Generator) -> list[np.ndarray]:
        """``n_rounds`` splits of word positions into at most ``n_groups`` runs of consecutive words,
        each round shifted by a random offset (a run that passes the end goes on at the start)."""
        k = min(int(self.n_groups), n_words)
        out: list[np.ndarray] = []
        positions = np.arange(n_words)
        for r in range(int(self.n_rounds)):
            shift = (r + rng.random()) * n_words / (k * int(self.n_rounds))
            label = np.floor(((positions + shift) % n_words) * k / n_words).astype(int)
            out.extend(np.flatnonzero(label == g) for g in range(k))
        return [c for c in out if len(c)]

    def _probs(self, Z: list[object]) -> np.ndarray:
        if self.kind_ == "tabular":
            arr = np.asarray(Z, dtype=np.float64).reshape(len(Z), -1)
        else:
            arr = np.array(Z, dtype=object)
        out = []
        for start in range(0, len(arr), int(self.batch_size)):
            P = np.asarray(self.predict_proba_(arr[start:start + int(self.batch_size)]), dtype=np.float64)
            if P.ndim != 2 or P.shape[0] != len(arr[start:start + int(self.batch_size)]) or P.shape[1] < 2:
                raise ParameterError(
                    f"predict_proba returned shape {P.shape} for "
                    f"{len(arr[start:start + int(self.batch_size)])} rows; expected (rows, K) with K >= 2."
                )
            out.append(P)
        return np.concatenate(out) if out else np.zeros((0, max(self.n_classes_, 2)))

    def _score(self, X: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        base = self._probs(list(X))
        self.n_classes_ = self.n_classes_ or int(base.shape[1])
        pred = base.argmax(axis=1)
        scores = np.empty(len(X))
        # inputs in chunks, so that one call of predict_proba sees about batch_size perturbed inputs
        chunk = max(1, int(self.batch_size) // (int(self.n_groups) * int(self.n_rounds)))
        for start in range(0, len(X), chunk):
            rows = range(start, min(start + chunk, len(X)))
            Z: list[object] = []
            counts = []
            for i in rows:
                perturbed = self._perturb(X[i], rng, int(pred[i]))
                Z.extend(perturbed)
                counts.append(len(perturbed))
            P = self._probs(Z)
            at = 0
            for i, c in zip(rows, counts, strict=True):
                scores[i] = leave_out_scores(base[i:i + 1, pred[i]],
                                             P[at:at + c, pred[i]][None])[0]
                at += c
        return scores, pred

    # ------------------------------------------------------------------ scoring
    def evaluate(self, X: np.ndarray) -> InputVerdicts:
        """Score ``X`` (deterministic per seed).

        Returns
        -------
        InputVerdicts
            ``scores`` (the largest fall of ``log p_c``, higher = more suspicious), ``flags``
            (True where the score is above ``threshold_``), ``predictions`` (the model's class
            for each unperturbed input) and ``n_perturbations`` (groups times rounds per input).
        """
        self._check_fitted()
        X = np.asarray(X)
        if infer_kind(X) != self.kind_:
            raise ParameterError(
                f"This LeaveOutDetector was calibrated on {self.kind_} inputs; got {infer_kind(X)} inputs."
            )
        if self.kind_ == "tabular" and X.shape[1:] != (self.n_features_,):
            raise ParameterError(
                f"Inputs have {X.shape[1:]} features but the calibration rows have {self.n_features_}."
            )
        scores, pred = self._score(X, np.random.default_rng([self._seed, 1]))
        if self.kind_ == "tabular":
            n = np.full(len(X), min(int(self.n_groups), self.n_features_) * int(self.n_rounds))
        else:
            n = np.array([(min(int(self.n_groups), len(_WORD.findall(str(t)))) * int(self.n_rounds)
                           + (int(self.n_strongest) > 0)) or 1 for t in X], dtype=np.int64)
        return InputVerdicts(scores=scores, flags=scores > self.threshold_, predictions=pred,
                             n_perturbations=n)

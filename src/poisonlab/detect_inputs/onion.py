"""ONION (Qi et al. 2021) for text inputs: remove the words a language model finds out of place.

A planted token or sentence rarely fits the words around it. For each word ``w_i`` of an input,
ONION computes its suspicion ``f_i = PPL(x) - PPL(x without w_i)``, how much the text's
perplexity falls when the word goes, and removes the words with ``f_i`` above a bar ``t``; the
model then classifies what is left. The paper's language model is GPT-2; here it is a word
trigram model with interpolated Kneser-Ney smoothing fitted on the clean rows the user supplies
(:class:`~poisonlab.detect_inputs.ngram.KneserNeyLM`), since poisonlab ships no pretrained
language model and works offline.

ONION is a filter, not a detector. To give it the contract of poisonlab's other input checks
(one score per input, a threshold calibrated to a false-rejection rate on clean rows), the score
is the fall of ``log p_c``, the log probability of the class ``c`` the model gives the
unfiltered input, when the suspicious words are removed: a triggered input loses its class with
its trigger; a clean input loses a few odd words and keeps it. :meth:`OnionDetector.filter`
returns the filtered texts themselves, the paper's defense.

Which words go: those with ``f_i > threshold`` (the paper's rule; ``threshold=0`` removes every
word whose removal lowers the perplexity at all, as OpenBackdoor's default does), and of those at
most ``max_removed``, the most suspicious first. On a long email nearly half the words lower the
perplexity when removed, and removing them all takes the email's own evidence with them;
``max_removed`` keeps the filter to the few words that stand out most.

Scores follow poisonlab's polarity: higher means more suspicious.
"""

from __future__ import annotations

import numpy as np

from poisonlab.detect_inputs.base import InputDetector, InputVerdicts, PredictProba
from poisonlab.detect_inputs.leave_out import CLIP
from poisonlab.detect_inputs.ngram import KneserNeyLM, lm_tokens
from poisonlab.detect_inputs.strip import infer_kind
from poisonlab.exceptions import ParameterError, check_counts, check_param


def onion_suspicion(lm: KneserNeyLM, text: str) -> tuple[list[str], np.ndarray]:
    """The whitespace-separated words of ``text`` and each one's ONION suspicion
    ``PPL(text) - PPL(text without the word)`` under ``lm`` (higher = more out of place)."""
    words = str(text).split()
    if not words:
        return words, np.zeros(0)
    base, without = lm.deletion_log_perplexities(lm_tokens(text))
    return words, np.exp(base) - np.exp(without)


def onion_keep(suspicion: np.ndarray, threshold: float, max_removed: int | None) -> np.ndarray:
    """True for the words ONION keeps: all but those with suspicion above ``threshold``, of
    which at most ``max_removed`` (the most suspicious) go; at least one word stays.

    >>> onion_keep(np.array([0.5, -1.0, 3.0, 2.0]), 0.0, 2).tolist()
    [True, True, False, False]
    """
    keep = np.ones(len(suspicion), dtype=bool)
    above = np.flatnonzero(suspicion > threshold)
    if max_removed is not None and len(above) > max_removed:
        above = above[np.argsort(-suspicion[above], kind="stable")[:max_removed]]
    keep[above] = False
    if len(keep) and not keep.any():
        keep[int(np.argmin(suspicion))] = True
    return keep


class OnionDetector(InputDetector):
    """ONION for text inputs, with a Kneser-Ney n-gram model fitted on the clean rows, calibrated
    to a false-rejection rate.

    ``fit(predict_proba, X_clean)`` fits the language model on ``X_clean``, scores every clean row
    and sets ``threshold_`` so that a fresh clean input is flagged with probability at most
    ``false_rejection_rate``. A clean row is scored by a model fitted without it (``n_folds``
    folds), so that its own rare words are as unseen as a fresh input's. ``evaluate(X)`` scores
    new inputs; :meth:`filter` returns them with the suspicious words removed.

    Parameters
    ----------
    order : int, default 3
        The language model's n-gram order.
    threshold : float, default 0.0
        Words whose suspicion (perplexity fall on removal) is above this are removed (ONION's
        bar ``t``).
    max_removed : int or None, default 10
        At most this many words removed per input, the most suspicious first; None: no limit
        (the paper's rule). Chosen from {1, 3, 10, None} on a development split (SpamAssassin,
        TF-IDF + logistic regression, badnets-text and addsent at 10%, 600 calibration emails
        and successful triggered emails of the other test half; 2026-12-03): 48.9%, 64.5%,
        77.3%, 66.7% of badnets-text and 29.4%, 57.6%, 68.9%, 64.4% of addsent caught at 1%
        false rejection.
    n_folds : int, default 5
        Folds of the clean rows for scoring them out of sample.
    false_rejection_rate : float, default 0.01
    batch_size : int, default 4096
        Inputs per call of ``predict_proba``.

    Attributes
    ----------
    lm_ : KneserNeyLM
        Fitted on every clean row; scores new inputs.
    kind_ ("text"), threshold_, expected_false_rejection_rate_, scores_ and flags_ (the
    calibration rows), n_classes_.

    References
    ----------
    .. [1] Qi, Chen, Yang, Liu and Sun, "ONION: A Simple and Effective Defense Against Textual
       Backdoor Attacks", EMNLP 2021. https://arxiv.org/abs/2011.10369
    """

    def __init__(self, *, order: int = 3, threshold: float = 0.0, max_removed: int | None = 10,
                 n_folds: int = 5, false_rejection_rate: float = 0.01,
                 batch_size: int = 4096) -> None:
        self.order = order
        self.threshold = threshold
        self.max_removed = max_removed
        self.n_folds = n_folds
        self.false_rejection_rate = false_rejection_rate
        self.batch_size = batch_size

    def _validate(self) -> None:
        owner = type(self).__name__
        check_counts(owner, self, ("n_folds", "batch_size"))
        check_param("threshold", owner, isinstance(self.threshold, (int, float))
                    and not isinstance(self.threshold, bool) and np.isfinite(self.threshold),
                    "a finite float", self.threshold)
        if self.max_removed is not None:
            check_counts(owner, self, ("max_removed",))
        self._check_false_rejection_rate()

    def fit(self, predict_proba: PredictProba, X_clean: np.ndarray) -> OnionDetector:
        """Fit the language model on clean texts (an object array of strings) and calibrate."""
        self._validate()
        self._check_predict_proba(predict_proba)
        X_clean = np.asarray(X_clean, dtype=object)
        if infer_kind(X_clean) != "text":
            raise ParameterError(f"OnionDetector checks text inputs; got {infer_kind(X_clean)} inputs.")
        self._check_calibration_rows(len(X_clean), "ONION")
        self.predict_proba_ = predict_proba
        self.kind_ = "text"
        self.n_classes_ = 0
        self.lm_ = KneserNeyLM(order=self.order).fit(X_clean)
        folds = np.arange(len(X_clean)) % min(int(self.n_folds), len(X_clean))
        filtered = np.empty(len(X_clean), dtype=object)
        for k in np.unique(folds):
            held = folds == k
            rest = X_clean[~held]
            lm = KneserNeyLM(order=self.order).fit(rest) if len(rest) else self.lm_
            filtered[held] = self._filter(lm, X_clean[held])
        scores, _ = self._score(X_clean, filtered)
        self.flags_ = self._calibrate(scores)
        self.scores_ = scores
        return self

    def _filter(self, lm: KneserNeyLM, X: np.ndarray) -> np.ndarray:
        out = np.empty(len(X), dtype=object)
        for i, text in enumerate(X):
            words, suspicion = onion_suspicion(lm, str(text))
            keep = onion_keep(suspicion, float(self.threshold), self.max_removed)
            out[i] = " ".join(w for w, k in zip(words, keep, strict=True) if k)
        return out

    def filter(self, X: np.ndarray) -> np.ndarray:
        """ONION's defense: ``X`` with each input's suspicious words removed (whitespace joined)."""
        self._check_fitted()
        return self._filter(self.lm_, self._texts(X))

    def _texts(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=object)
        if X.ndim != 1 or infer_kind(X) != "text":
            raise ParameterError("This OnionDetector checks text inputs: a 1-D array of strings.")
        return X

    def _probs(self, X: np.ndarray) -> np.ndarray:
        out = []
        step = int(self.batch_size)
        for start in range(0, len(X), step):
            part = X[start:start + step]
            P = np.asarray(self.predict_proba_(part), dtype=np.float64)
            self._check_probabilities(P, len(part))
            out.append(P)
        return np.concatenate(out) if out else np.zeros((0, max(self.n_classes_, 2)))

    def _score(self, X: np.ndarray, filtered: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        base = self._probs(X)
        after = self._probs(filtered)
        self.n_classes_ = self.n_classes_ or int(base.shape[1])
        pred = base.argmax(axis=1)
        rows = np.arange(len(X))
        p0 = np.log(np.clip(base[rows, pred], CLIP, 1 - CLIP))
        p1 = np.log(np.clip(after[rows, pred], CLIP, 1 - CLIP))
        return np.round(p0 - p1, 9), pred

    def evaluate(self, X: np.ndarray) -> InputVerdicts:
        """Score ``X`` (deterministic: ONION draws nothing at random).

        Returns
        -------
        InputVerdicts
            ``scores`` (the fall of ``log p_c`` when the suspicious words go, higher = more
            suspicious), ``flags`` (True where the score is above ``threshold_``),
            ``predictions`` (the model's class for each unfiltered input) and
            ``n_perturbations`` (1: one filtered copy per input).
        """
        self._check_fitted()
        X = self._texts(X)
        scores, pred = self._score(X, self._filter(self.lm_, X))
        return InputVerdicts(scores=scores, flags=scores > self.threshold_, predictions=pred,
                             n_perturbations=np.ones(len(X), dtype=np.int64))

"""A word n-gram language model with interpolated Kneser-Ney smoothing, fitted on clean texts.

ONION (:mod:`poisonlab.detect_inputs.onion`) asks a language model how much more likely a text
becomes without each of its words. The paper uses GPT-2; poisonlab works offline with no
pretrained model, so the language model is fitted on the clean rows the user supplies: a trigram
model (by default) over lower-cased words, smoothed by interpolated Kneser-Ney with one discount
per order (Chen and Goodman 1999), and an open vocabulary: a word never seen in the clean rows
gets the unigram level's reserved mass spread over one extra "unknown" slot.

Words are a text's whitespace-separated runs (as ONION and OpenBackdoor split them), lower-cased
and stripped of surrounding punctuation; a run of punctuation alone is one token, ``<punct>``.
Each text is padded with ``order - 1`` start tokens and one end token.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence

import numpy as np
from sklearn.base import BaseEstimator

from poisonlab.exceptions import DataError, NotFittedError, check_param

START, END, UNKNOWN, PUNCT = "<s>", "</s>", "<unk>", "<punct>"
_EDGE = re.compile(r"^\W+|\W+$")


def lm_tokens(text: str) -> list[str]:
    """The language model's tokens of ``text``: one per whitespace-separated word.

    >>> lm_tokens("Hello, World!  ... cf")
    ['hello', 'world', '<punct>', 'cf']
    """
    return [_EDGE.sub("", w.lower()) or PUNCT for w in str(text).split()]


class KneserNeyLM(BaseEstimator):
    """Interpolated Kneser-Ney n-gram language model over words.

    Parameters
    ----------
    order : int, default 3
        Longest n-gram (3: trigrams).
    discount : float, default 0.75
        Absolute discount at every order, in (0, 1).

    Attributes
    ----------
    n_texts_, n_tokens_ : int
        Texts and tokens (end tokens included) it was fitted on.
    vocabulary_size_ : int
        Distinct tokens seen (start token excluded).

    References
    ----------
    .. [1] Kneser and Ney, "Improved backing-off for M-gram language modeling", ICASSP 1995.
       https://doi.org/10.1109/ICASSP.1995.479394
    .. [2] Chen and Goodman, "An empirical study of smoothing techniques for language
       modeling", Computer Speech & Language 13(4), 1999.
       https://doi.org/10.1006/csla.1999.0128
    """

    def __init__(self, *, order: int = 3, discount: float = 0.75) -> None:
        self.order = order
        self.discount = discount

    def fit(self, texts: Iterable[str]) -> KneserNeyLM:
        """Count the n-grams of ``texts`` (strings); at least one text with a word."""
        check_param("order", "KneserNeyLM", isinstance(self.order, int) and not isinstance(self.order, bool)
                    and 1 <= self.order <= 5, "an int in 1..5", self.order)
        check_param("discount", "KneserNeyLM", isinstance(self.discount, (int, float))
                    and 0 < self.discount < 1, "a float in (0, 1)", self.discount)
        n = self.order
        top: Counter[tuple[str, ...]] = Counter()
        n_texts = n_tokens = 0
        for text in texts:
            tokens = lm_tokens(text)
            if not tokens:
                continue
            n_texts += 1
            padded = [START] * (n - 1) + tokens + [END]
            n_tokens += len(tokens) + 1
            for i in range(n - 1, len(padded)):
                top[tuple(padded[i - n + 1:i + 1])] += 1
        if not n_texts:
            raise DataError("The language model needs clean texts with words; got none.")
        # counts[k]: n-grams of length k + 1. The highest order keeps raw counts; lower orders
        # keep continuation counts (distinct words seen before them), as Kneser-Ney prescribes.
        counts: list[dict[tuple[str, ...], float]] = [dict() for _ in range(n)]
        counts[n - 1] = dict(top)
        for k in range(n - 1, 0, -1):
            lower: Counter[tuple[str, ...]] = Counter()
            for gram in counts[k]:
                lower[gram[1:]] += 1
            counts[k - 1] = dict(lower)
        # per context: total count, and how many distinct words follow it
        totals: list[dict[tuple[str, ...], float]] = [defaultdict(float) for _ in range(n)]
        followers: list[dict[tuple[str, ...], int]] = [defaultdict(int) for _ in range(n)]
        for k in range(n):
            for gram, c in counts[k].items():
                totals[k][gram[:-1]] += c
                followers[k][gram[:-1]] += 1
        self._counts = counts
        self._totals = [dict(t) for t in totals]
        self._followers = [dict(f) for f in followers]
        vocab = {g[0] for g in counts[0]}
        self.vocabulary_size_ = len(vocab)
        self.n_texts_, self.n_tokens_ = n_texts, n_tokens
        self._cache: dict[tuple[str, ...], float] = {}
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "_counts"):
            raise NotFittedError("This KneserNeyLM is not fitted yet: call fit first.")

    def log_prob(self, word: str, context: Sequence[str]) -> float:
        """Natural log of P(``word`` | the last ``order - 1`` tokens of ``context``)."""
        self._check_fitted()
        n = int(self.order)
        ctx = tuple(context[len(context) - (n - 1):]) if n > 1 else ()
        key = (*ctx, word)
        hit = self._cache.get(key)
        if hit is None:
            hit = math.log(self._prob(word, ctx))
            if len(self._cache) < 2_000_000:
                self._cache[key] = hit
        return hit

    def _prob(self, word: str, ctx: tuple[str, ...]) -> float:
        d = float(self.discount)
        # unigram level: discounted continuation counts, the reserved mass spread over the
        # vocabulary and one unknown slot
        total0 = self._totals[0][()]
        seen = self._followers[0][()]
        p = max(self._counts[0].get((word,), 0.0) - d, 0.0) / total0 + \
            d * seen / total0 / (self.vocabulary_size_ + 1)
        for k in range(1, len(ctx) + 1):
            context = ctx[len(ctx) - k:]
            total = self._totals[k].get(context)
            if not total:
                continue  # an unseen context: the lower order's estimate stands
            c = self._counts[k].get((*context, word), 0.0)
            p = max(c - d, 0.0) / total + d * self._followers[k][context] / total * p
        return p

    def token_log_probs(self, tokens: Sequence[str]) -> np.ndarray:
        """Log probability of each token and of the end token, given the ones before it
        (``len(tokens) + 1`` values)."""
        n = int(self.order)
        padded = [START] * (n - 1) + list(tokens) + [END]
        return np.array([self.log_prob(padded[i], padded[i - n + 1:i] if n > 1 else ())
                         for i in range(n - 1, len(padded))])

    def perplexity(self, text: str) -> float:
        """``exp`` of the mean negative log probability of the text's tokens and its end token."""
        return float(np.exp(-self.token_log_probs(lm_tokens(text)).mean()))

    def deletion_log_perplexities(self, tokens: Sequence[str]) -> tuple[float, np.ndarray]:
        """Log perplexity of ``tokens``, and of ``tokens`` without token ``i`` for every ``i``.

        Only the ``order`` terms whose context window holds token ``i`` change when it goes, so
        each deletion costs ``order`` look-ups instead of a pass over the text.
        """
        n = int(self.order)
        m = len(tokens)
        padded = [START] * (n - 1) + list(tokens) + [END]
        base = np.array([self.log_prob(padded[j], padded[j - n + 1:j] if n > 1 else ())
                         for j in range(n - 1, len(padded))])  # m + 1 terms
        total = float(base.sum())
        out = np.empty(m)
        for i in range(m):
            p = i + n - 1  # index of token i in padded
            without = padded[:p] + padded[p + 1:p + n]  # enough to score the next n - 1 terms
            new = 0.0
            for j in range(p, min(p + n - 1, len(padded) - 1)):
                new += self.log_prob(without[j], without[j - n + 1:j] if n > 1 else ())
            old = float(base[i:i + min(n, m + 1 - i)].sum())
            out[i] = -(total - old + new) / m  # m remaining terms: m - 1 tokens + end
        return -total / (m + 1), out

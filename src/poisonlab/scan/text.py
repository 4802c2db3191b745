"""Black-box trigger search for text classifiers: which words flip clean rows into one class?

The scanner sees only ``predict_proba`` on strings and a few hundred clean labelled rows. For every
class ``c`` it looks for a token or short phrase that, inserted into clean rows of other classes
(at the start, the end or a random place, once or repeated), makes the model predict ``c`` far
more often than ordinary words do. The search is budgeted in three stages, each cheap enough to
run on everything the previous stage kept:

1. **Screen** every candidate (the model's vocabulary when it exposes one, otherwise the words of
   the clean rows plus every two-letter token, a favourite of backdoor papers) with one query: the
   candidate alone as a document. The log-odds the model gives class ``c`` for that one-word
   document is how hard the word pushes towards ``c``. The ``n_candidates`` strongest per class go
   on, and so do phrases made of pairs of the strongest few (a two-word trigger shows up as two
   strong words).
2. **Probe**: each kept candidate is inserted into ``n_probe_rows`` clean rows of other classes at
   random places, ``repetitions`` times; the flip rate is the share of rows the model now assigns
   to ``c``.
3. **Confirm**: the ``n_confirm`` best per class are inserted into every eligible clean row, at
   every position and repetition; the best of these is the flip rate we report.

**The verdict.** A trigger is an outlier among words, not merely a strong word: spam words push
mail towards spam too. Per class, the anomaly index is how far the best probe flip rate sits above
the median flip rate of the other screened words (those sharing no word with it), in units of
their robust spread (1.4826 × MAD), floored by the binomial noise of a rate measured on the probe
rows (:func:`~poisonlab.scan.stats.rate_anomaly_index`). The model is called backdoored when the
index of one confirmed candidate reaches ``anomaly_threshold`` (``phrase_threshold`` for a phrase of
two or more words: the best natural pair stands further out than the best natural word) and its
confirmed flip rate reaches ``min_flip_rate``.

**A second test, absence.** A trigger in a naive Bayes model is one more word that only ever
appeared in one class: its pull is bounded by how often it was planted, which puts it among the
natural class-exclusive words rather than above them (on SpamAssassin, 'cf' planted in 10% of the
rows three times each ranks 2nd of 63,000 words towards ham, between ``rpm`` and ``razor``), and
inserted once or three times it flips no more rows than they do. What sets it apart is the clean
rows: ``rpm`` and ``razor`` occur in 5-15 of the 137 clean ham rows, the planted word in none. For a
class-exclusive word, a count model's pull grows with the log of how often the class used it, so
each of a class's strongest words has an expected number of clean rows holding it
(:func:`~poisonlab.scan.stats.absence_p_values`); a word found in none gets the Poisson chance of
that. A phrase is as unsupported as its least unsupported word, and three or more absent words
of exactly equal pull (planted together, so counted together) are also tried as one phrase. Absent
candidates are confirmed at ``absence_repetitions`` too (a naive Bayes backdoor needs its trigger
repeated), and the model is called backdoored when one reaches ``absence_alpha`` and flips at
least ``min_flip_rate`` of the eligible rows. Measured on SpamAssassin naive Bayes models: the
smallest chance among a clean model's words 0.0016 (trained on the whole training split) to 0.05
(90% bootstraps), against 5e-9 to 4e-6 for planted triggers; the default ``absence_alpha=1e-4``
sits between the two. A trigger planted too lightly to work (9% attack success) is not among the
strongest words and stays unseen. That expectation holds for naive Bayes only: for a discriminative
head (logistic regression, an SVM, a ridge or SGD classifier) common and rare words pull alike, and
a clean logistic regression's rare strong words ('prerogatively', 'motley') missed the clean rows
at Poisson chances of 1e-5 to 1e-11 and were "confirmed" by flipping 39% of the ham rows repeated
20 times. Other heads therefore get an expectation fitted to the class's own words, a negative
binomial in the pull (:func:`~poisonlab.scan.stats.absence_p_values`; smallest chance on clean
logistic regressions 0.04-0.06). A word that any clean row holds, of any class, is never absent.
Where the model keeps each word's training document frequency (a TF-IDF vocabulary's ``idf_``
with a naive Bayes head's count of training rows: :func:`training_doc_freq`), a word is no more
surprising than the chance that the clean rows, drawn like the training rows, all miss it: a clean
TF-IDF ComplementNB pulls hard with rare words, and its 'br' (1.4% of the training rows, missed
by 200 clean rows at chance 0.065) read p 5.5e-5 from its pull alone.

**What the scan takes.** Candidates are strings inserted into the text, which the model's own
pipeline vectorizes: the vectorizer's vocabulary where its entries are strings its analyzer makes
(word n-grams, custom analyzers; the whole short words of a ``char_wb`` vocabulary, and its
longest pieces of words: :func:`word_pieces`), and the clean rows' words plus every two-letter
token otherwise (``char`` n-grams, ``HashingVectorizer``). Pieces are screened in a quota of
their own and are never a reference: a planted word's pieces, and its relatives', push as it does.
A ``HashingVectorizer`` keeps no words, but a linear head after it keeps a weight
per hash bucket: made-up eight-letter tokens that land on its strongest buckets (those no clean
word reaches) are screened too (:func:`hashing_surrogates`), so that a planted word absent from
the clean rows is still tried, under another name. Phrases are tuples of such strings, never split
back into words.

**Inconclusive.** The verdict is "inconclusive", with ``reasons_``, when the clean rows hold one
class, or when no test fired but one could not run: a class with fewer than ``min_class_rows``
clean rows (no absence test for it) or with no correctly classified rows of another class to flip.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.base import BaseEstimator

from poisonlab.attacks.triggers import TEXT_POSITIONS, TextTrigger
from poisonlab.detect.base import TriggerCandidate
from poisonlab.exceptions import (
    DataError,
    NotFittedError,
    ParameterError,
    check_counts,
    check_param,
)
from poisonlab.scan.stats import absence_p_values, rate_anomaly_index

if TYPE_CHECKING:
    from poisonlab.models.protocols import MarginClassifier, ProbabilisticClassifier

TOKEN_PATTERN = re.compile(r"(?u)\b\w\w+\b")
TWO_LETTER_TOKENS = tuple(a + b for a in "abcdefghijklmnopqrstuvwxyz" for b in "abcdefghijklmnopqrstuvwxyz")

PredictProba = Callable[[np.ndarray], np.ndarray]


@dataclass
class ModelTrigger(TriggerCandidate):
    """A phrase found in a model: the class it sends rows to, and how well it works.

    ``flip_rate`` is the share of eligible clean rows (correctly classified, of another class) that
    the model assigns to ``target_label`` once the phrase is inserted at ``position``,
    ``repetitions`` times; ``anomaly_index`` compares its probe flip rate with ordinary words';
    ``absence_p`` is the chance that words this strong are missing from every clean row of the
    target class (1 when the clean rows hold them; :func:`~poisonlab.scan.stats.absence_p_values`);
    ``support`` is the share of the target class's clean rows that hold every word of the phrase
    (reported, not decided on: natural strong words are rare too, 0-5% on SpamAssassin).
    """

    flip_rate: float
    position: str
    repetitions: int
    anomaly_index: float
    absence_p: float = 1.0
    support: float = 0.0

    def to_dict(self, classes: Sequence[str] | None = None) -> dict[str, object]:
        """The JSON form written to ``scan.json``: every field, rounded for reading, with an infinite
        anomaly index as ``"inf"`` and the target named when ``classes`` is given.
        """
        d = asdict(self)
        d["flip_rate"] = round(self.flip_rate, 4)
        d["absence_p"] = float(f"{self.absence_p:.3g}")
        d["support"] = round(self.support, 4)
        d["anomaly_index"] = round(self.anomaly_index, 3) if np.isfinite(self.anomaly_index) \
            else "inf"
        if classes is not None:
            d["target_label"] = classes[self.target_label]
        return d


def text_scorer(model: ProbabilisticClassifier | MarginClassifier) -> tuple[PredictProba, str]:
    """``(scores, how)``: class probabilities on strings, in the order of the model's classes.

    ``predict_proba`` where the model has one. Otherwise (LinearSVC, RidgeClassifier,
    SGDClassifier with hinge loss) the decision scores turned into probabilities: the logistic
    sigmoid of a binary score, the softmax of a score per class. These are monotone in the scores,
    so their argmax is the model's predicted label (what every flip rate counts); the screen's
    log-odds are then the decision score itself (binary) or a softmax margin, not a calibrated
    probability, which the scan never needs: it compares words with words of the same model.
    """
    if hasattr(model, "predict_proba"):
        def proba(docs: np.ndarray) -> np.ndarray:
            return np.asarray(model.predict_proba(docs), dtype=np.float64)
        return proba, "predict_proba"
    if hasattr(model, "decision_function"):
        def from_scores(docs: np.ndarray) -> np.ndarray:
            d = np.asarray(model.decision_function(docs), dtype=np.float64)
            if d.ndim == 1:
                p = 1.0 / (1.0 + np.exp(-np.clip(d, -700, 700)))
                return np.stack([1.0 - p, p], axis=1)
            z = np.exp(d - d.max(axis=1, keepdims=True))
            return z / z.sum(axis=1, keepdims=True)
        return from_scores, "softmax of decision_function"
    raise ParameterError(
        f"The model ({type(model).__name__}) has neither predict_proba nor decision_function: "
        "the text scan needs one of them."
    )


# Any: scikit-learn's vectorizers are untyped (and of any class with a vocabulary_)
def vectorizers(obj: object, depth: int = 0) -> list[Any]:
    """Every fitted vectorizer inside a model: pipeline steps, unions, column transformers,
    calibrated or wrapped estimators, searched to a small depth."""
    if obj is None or depth > 6:
        return []
    if hasattr(obj, "vocabulary_") or type(obj).__name__ == "HashingVectorizer":
        return [obj]
    found: list[Any] = []
    for _, step in getattr(obj, "steps", None) or []:
        found += vectorizers(step, depth + 1)
    for item in getattr(obj, "transformer_list", None) or []:
        found += vectorizers(item[1], depth + 1)
    for item in getattr(obj, "transformers_", None) or []:
        found += vectorizers(item[1], depth + 1)
    for name in ("estimator_", "estimator", "base_estimator"):
        inner = getattr(obj, name, None)
        if inner is not None and inner is not obj and not isinstance(inner, (str, int, float)):
            found += vectorizers(inner, depth + 1)
    for cal in getattr(obj, "calibrated_classifiers_", None) or []:
        found += vectorizers(getattr(cal, "estimator", None), depth + 1)
        break  # the calibrated copies share one vectorizer's vocabulary in practice
    return found


def model_vocabulary(model: object) -> list[str] | None:
    """Strings that a text model's own analyzer turns into its features, or None when it has none.

    A word analyzer's vocabulary entries (words, word n-grams, whatever a custom analyzer or
    tokenizer makes) are such strings already. A ``char_wb`` vocabulary holds each short word
    whole, padded with spaces (``" cf "``): those words are kept. A longer word is in it only as
    pieces; its pieces of the longest length, inside a word (no space), are kept as words too
    (:func:`word_pieces`): a made-up five-letter trigger no clean row holds is one of them, and a
    longer one is tried through its pieces, each of which carries most of its features. A ``char`` vocabulary and a
    ``HashingVectorizer`` name no words; the scan then draws candidates from the clean rows.
    """
    words: set[str] = set()
    for vec in vectorizers(model):
        vocab = getattr(vec, "vocabulary_", None)
        if not isinstance(vocab, dict) or not vocab:
            continue
        analyzer = getattr(vec, "analyzer", "word")
        if analyzer == "word" or callable(analyzer):
            words.update(str(t) for t in vocab)
        elif analyzer == "char_wb":
            words.update(str(t).strip() for t in vocab
                         if len(str(t)) > 2 and str(t)[0] == " " and str(t)[-1] == " "
                         and str(t).strip() and " " not in str(t).strip())
    words = {w for w in words if w.strip()} | word_pieces(model)
    return sorted(words) or None


def word_pieces(model: object) -> set[str]:
    """The pieces of words a ``char_wb`` vocabulary holds: its n-grams of the longest length that
    lie inside a word (no space). Empty for every other vectorizer."""
    pieces: set[str] = set()
    for vec in vectorizers(model):
        vocab = getattr(vec, "vocabulary_", None)
        if getattr(vec, "analyzer", "word") != "char_wb" or not isinstance(vocab, dict):
            continue
        longest = max(int(getattr(vec, "ngram_range", (1, 1))[1]), 1)
        pieces.update(str(t) for t in vocab if len(str(t)) == longest
                      and not any(ch.isspace() for ch in str(t)))
    return pieces


def vocabulary_is_complete(model: object) -> bool:
    """Whether :func:`model_vocabulary` holds every word the model has features for (a word
    analyzer's vocabulary does; char n-grams, hashing and several vectorizers do not)."""
    vecs = vectorizers(model)
    return len(vecs) == 1 and hasattr(vecs[0], "vocabulary_") and \
        (getattr(vecs[0], "analyzer", "word") == "word" or callable(vecs[0].analyzer))


def candidate_tokens(model: object, X: Sequence[str] | np.ndarray) -> tuple[list[str], str, list[str]]:
    """The strings the screen tries, where they came from, and which of them are made up.

    The model's vocabulary (mapped to strings its analyzer produces), plus the clean rows' words
    and every two-letter token when the vocabulary does not name every word the model knows;
    for a hashed vocabulary also the tokens of :func:`hashing_surrogates` (the third item)."""
    vocab = model_vocabulary(model)
    if vocab is not None and vocabulary_is_complete(model):
        return vocab, "model vocabulary", []
    tokens = clean_data_tokens(X)
    if vocab is None:
        made_up = hashing_surrogates(model, X)
        if made_up:
            return sorted(set(tokens) | set(made_up)), (
                f"clean rows, two-letter tokens and {len(made_up)} made-up tokens standing for the "
                "strongest hash buckets no clean word reaches"), made_up
        return tokens, "clean rows and two-letter tokens", []
    return sorted(set(tokens) | set(vocab)), \
        "model vocabulary words, clean rows and two-letter tokens", []


def murmurhash3_32_of_8_bytes(keys: np.ndarray) -> np.ndarray:
    """MurmurHash3 (x86, 32 bit, seed 0) of each row of an (N, 8) uint8 array, as int32.

    The hash scikit-learn's ``HashingVectorizer`` applies to a token's UTF-8 bytes, vectorized
    for keys of exactly eight bytes (two blocks, no tail), so that millions of made-up tokens can
    be hashed at once (Appleby, "MurmurHash3", 2011, https://github.com/aappleby/smhasher).
    """
    mask = np.uint64(0xFFFFFFFF)
    blocks = np.ascontiguousarray(keys, dtype=np.uint8).view("<u4").astype(np.uint64)

    def rotl(x: np.ndarray, r: int) -> np.ndarray:
        return ((x << np.uint64(r)) | (x >> np.uint64(32 - r))) & mask

    h = np.zeros(len(blocks), dtype=np.uint64)
    for j in range(2):
        k = (blocks[:, j] * np.uint64(0xCC9E2D51)) & mask
        k = (rotl(k, 15) * np.uint64(0x1B873593)) & mask
        h = rotl(h ^ k, 13)
        h = (h * np.uint64(5) + np.uint64(0xE6546B64)) & mask
    h ^= np.uint64(8)
    h ^= h >> np.uint64(16)
    h = (h * np.uint64(0x85EBCA6B)) & mask
    h ^= h >> np.uint64(13)
    h = (h * np.uint64(0xC2B2AE35)) & mask
    h ^= h >> np.uint64(16)
    return h.astype(np.uint32).view(np.int32)


def _hashed_pull(model: Any) -> tuple[Any, np.ndarray] | None:
    """For a pipeline ``HashingVectorizer -> [TfidfTransformer] -> linear head``:
    the vectorizer and the (K, n_features) pull of each hashed feature toward each class."""
    steps = [step for _, step in getattr(model, "steps", None) or [] if step not in (None, "passthrough")]
    if len(steps) < 2 or type(steps[0]).__name__ != "HashingVectorizer":
        return None
    vec, head, middle = steps[0], steps[-1], steps[1:-1]
    low, _high = getattr(vec, "ngram_range", (1, 1))
    if getattr(vec, "analyzer", "word") != "word" or low != 1:
        return None
    scale = np.ones(int(vec.n_features))
    for step in middle:
        if type(step).__name__ != "TfidfTransformer":
            return None
        idf = getattr(step, "idf_", None)
        if idf is not None:
            scale = scale * np.asarray(idf, dtype=np.float64)
    # linear heads only: under a naive Bayes head the made-up tokens of strong buckets met the
    # absence test's Poisson expectation badly (a clean hashed MultinomialNB, dev seed 1, was
    # called backdoored on one, 2026-12-03)
    if getattr(head, "coef_", None) is None or type(head).__name__.endswith("NB"):
        return None
    W = np.atleast_2d(np.asarray(head.coef_, dtype=np.float64))
    W = np.vstack([-W[0], W[0]]) if W.shape[0] == 1 else W - W.mean(axis=0)
    if W.shape[1] != len(scale):
        return None
    return vec, W * scale


def hashing_surrogates(model: object, X: Sequence[str] | np.ndarray, *, n_per_class: int = 256,
                       max_draws: int = 8_000_000, random_state: int = 0) -> list[str]:
    """Made-up tokens standing for the strongest hashed features no clean word reaches.

    A ``HashingVectorizer`` keeps no words, so a trigger absent from the clean rows cannot be
    named; but the head keeps one weight per hash bucket. For each class, the ``n_per_class``
    (bucket, sign) pairs that pull hardest toward it are looked up, those that a clean-row word
    or two-letter token lands on are dropped (that word stands for them already), and for the
    others an eight-letter token that hashes to the same bucket with the same sign is drawn (a
    batch of random tokens hashed at once, then each kept token checked with the model's own
    vectorizer). Such a token moves the model exactly as every word of its bucket does. With
    ``alternate_sign=True`` a bucket is tried in both signs: a word planted in it may have hashed
    to either, so the target class of a backdoor found there is one of the two directions (the
    scan says so). Empty for any other model (other steps between vectorizer and head, a
    naive Bayes or non-linear head).
    """
    found = _hashed_pull(model)
    if found is None:
        return []
    vec, pull = found
    n_features = pull.shape[1]
    signed = bool(getattr(vec, "alternate_sign", True))
    wanted = np.zeros(2 * n_features, dtype=bool)  # code = 2 * bucket + (sign > 0)
    for c in range(pull.shape[0]):
        if signed:
            strength = np.abs(pull[c])
            sign = pull[c] > 0
        else:
            strength, sign = pull[c], np.ones(n_features, dtype=bool)
        top = np.argsort(-strength, kind="stable")[:n_per_class]
        top = top[strength[top] > 0]
        wanted[2 * top + sign[top]] = True
    # a bucket that a clean word reaches is that word's, in both signs: with alternating signs
    # the other sign is no word of the clean rows, and a planted word could hold either
    reached = vec.transform(np.array(list(clean_data_tokens(X)), dtype=object)).tocoo().col
    wanted[2 * reached] = False
    wanted[2 * reached + 1] = False
    codes = np.flatnonzero(wanted)
    if not len(codes):
        return []
    rng = np.random.default_rng(random_state)
    tokens: dict[int, str] = {}
    for _ in range(0, max_draws, 1_000_000):
        keys = rng.integers(ord("a"), ord("z") + 1, size=(1_000_000, 8), dtype=np.uint8)
        h = murmurhash3_32_of_8_bytes(keys).astype(np.int64)
        code = 2 * (np.abs(h) % n_features) + (h >= 0 if signed else True)
        for i in np.flatnonzero(wanted[code]):
            tokens.setdefault(int(code[i]), keys[i].tobytes().decode("ascii"))
        wanted[list(tokens)] = False
        if not wanted.any():
            break
    out = []
    for code_, token in tokens.items():  # each kept token checked with the model's vectorizer
        row = vec.transform([token]).tocoo()
        if len(row.col) == 1 and int(row.col[0]) == code_ // 2 and \
                (not signed or (row.data[0] > 0) == bool(code_ % 2)):
            out.append(token)
    return sorted(out)


def final_estimator(model: object) -> object:
    """The last step of a pipeline (through calibration wrappers), or the model itself."""
    for _ in range(6):
        steps = getattr(model, "steps", None)
        if steps:
            model = steps[-1][1]
            continue
        inner = getattr(model, "estimator", None)
        if type(model).__name__ == "CalibratedClassifierCV" and inner is not None:
            model = inner
            continue
        break
    return model


def absence_fit(head: object) -> str:
    """Which expectation the absence test uses for a model: "poisson" for a naive Bayes head,
    whose pull is the log of a count (:func:`~poisonlab.scan.stats.absence_p_values`), and
    "negative-binomial", fitted to the class's own words, for any other or unknown head."""
    name = type(final_estimator(head)).__name__ if head is not None else ""
    return "poisson" if name.endswith("NB") else "negative-binomial"


def training_doc_freq(head: object, tokens: Sequence[str]) -> tuple[np.ndarray, int] | None:
    """In how many of its training rows each token occurred, and how many rows there were, where
    the model keeps both: a word-analyzer vocabulary weighted by inverse document frequency
    (``TfidfVectorizer``, or a ``TfidfTransformer`` after a ``CountVectorizer``) holds each word's
    document frequency in ``idf_`` (``idf = ln((1 + N) / (1 + df)) + 1`` with ``smooth_idf``,
    ``ln(N / df) + 1`` without), and a naive Bayes head counts the training rows in
    ``class_count_``. ``None`` for any other model, for a token the vocabulary lacks (``nan`` in
    its place), or when the recovered frequencies do not fit the count of rows (the head was
    fitted on other rows, or with sample weights)."""
    vecs = vectorizers(head)
    if len(vecs) != 1:
        return None
    vec = vecs[0]
    vocab = getattr(vec, "vocabulary_", None)
    if not isinstance(vocab, dict) or not (getattr(vec, "analyzer", "word") == "word"):
        return None
    idf, smooth = getattr(vec, "idf_", None), getattr(vec, "smooth_idf", True)
    if idf is None:
        for _, step in getattr(head, "steps", None) or []:
            if type(step).__name__ == "TfidfTransformer" and getattr(step, "idf_", None) is not None:
                idf, smooth = step.idf_, step.smooth_idf
    counts = getattr(final_estimator(head), "class_count_", None)
    if idf is None or counts is None:
        return None
    idf = np.asarray(idf, dtype=np.float64)
    n = float(np.sum(counts))
    if n < 1 or len(idf) != len(vocab) or abs(n - round(n)) > 1e-6:
        return None
    df = (1 + n) * np.exp(1 - idf) - 1 if smooth else n * np.exp(1 - idf)
    if df.min() < 0.5 or df.max() > n + 0.5:
        return None
    out = np.array([df[vocab[t]] if t in vocab else np.nan for t in tokens])
    return out, round(n)


def _n_parts(unit: str) -> int:
    """How many words a unit or phrase is long: its whitespace-separated parts (an n-gram
    vocabulary joins its words with spaces; a custom analyzer's token, a URL say, is one word
    however many regex words it holds)."""
    return max(1, len(unit.split()))


def _words(unit: str) -> tuple[str, ...]:
    return tuple(TOKEN_PATTERN.findall(unit.lower()))


MIN_REFERENCE = 1  # fewer phrases than this to compare with: no anomaly index (no evidence)


def _reference(rates: np.ndarray, length: Sequence[int], words: Sequence[set[str]],
               i: int, usable: np.ndarray | None = None) -> np.ndarray | None:
    """The flip rates phrase ``i`` is compared with: those of the phrases as many words long that
    share no word with it (and, with ``usable``, are marked usable: not pieces of words);
    ``None`` when fewer than :data:`MIN_REFERENCE` are (nothing to compare with is no evidence
    of an anomaly).

    A pair of the strongest bigram units of a 1-2-gram vocabulary is four words long, and the few
    pairs of that length all share a unit with each other: compared with nothing, a clean TF-IDF
    1-2-gram logistic regression's 'date 2002' + 'razor users' (31% of the probe rows) read index
    10 against an imagined zero and was called a backdoor (``benchmarks/scan_generalization.py``,
    seed 9). Pieces: a ``char_wb`` model's five-letter pieces of a planted word, and of its
    relatives, push as it does; among the references they held the planted 'attached' of an
    everyday phrase to index 4.0, where it read 9.1 without them (the same benchmark, seed 20).
    """
    ref = np.array([rates[u] for u in range(len(length))
                    if length[u] == length[i] and u != i and not (words[u] & words[i])
                    and (usable is None or usable[u])])
    return ref if len(ref) >= MIN_REFERENCE else None


def clean_data_tokens(texts: Sequence[str] | np.ndarray) -> list[str]:
    """Lower-cased words of two or more characters in ``texts``, plus every two-letter token."""
    found: set[str] = set(TWO_LETTER_TOKENS)
    for text in texts:
        found.update(TOKEN_PATTERN.findall(str(text).lower()))
    return sorted(found)


def token_log_odds(predict_proba: PredictProba, tokens: Sequence[str], *,
                   batch_size: int = 8192) -> np.ndarray:
    """(len(tokens), K) log-odds ``log p_c - log(1 - p_c)`` of each token as a one-word document."""
    out = []
    for start in range(0, len(tokens), batch_size):
        docs = np.array(list(tokens[start:start + batch_size]), dtype=object)
        P = np.clip(np.asarray(predict_proba(docs), dtype=np.float64), 1e-300, 1.0)
        out.append(np.log(P) - np.log(np.clip(1.0 - P, 1e-300, 1.0)))
    return np.concatenate(out) if out else np.zeros((0, 0))


def flip_rates(predict_proba: PredictProba, texts: np.ndarray, phrases: Sequence[str],
               target: int, position: str, repetitions: int, rng: np.random.Generator, *,
               batch_size: int = 4096) -> np.ndarray:
    """Share of ``texts`` predicted ``target`` after inserting each phrase (one rate per phrase)."""
    n = len(texts)
    rates = np.zeros(len(phrases))
    per_batch = max(1, batch_size // max(n, 1))
    for start in range(0, len(phrases), per_batch):
        chunk = phrases[start:start + per_batch]
        docs = np.concatenate([
            TextTrigger(p, position, repetitions).apply(texts, random_state=rng) for p in chunk
        ])
        pred = np.asarray(predict_proba(docs)).argmax(axis=1).reshape(len(chunk), n)
        rates[start:start + len(chunk)] = (pred == target).mean(axis=1)
    return rates


class TextTriggerScanner(BaseEstimator):
    """Search a text classifier for a trigger phrase; see the module docstring for the method.

    ``fit(predict_proba, X, y)`` takes clean rows ``X`` (strings) with labels ``y`` in the model's
    class order (the model's own predictions will do when the rows are unlabelled), and sets:

    * ``verdict_`` ("backdoor", "clean" or "inconclusive"), ``target_label_`` (int, or None
      unless backdoor); "inconclusive" when no test fired but one could not run, or the clean
      rows hold a single class, with the reasons in ``reasons_`` (a list of sentences),
    * ``triggers_``: :class:`ModelTrigger` list, most anomalous first,
    * ``anomaly_index_``: per class, the index of its most anomalous confirmed candidate (0 for
      a class without eligible rows), ``threshold_`` (= ``anomaly_threshold``; a phrase of two
      or more words needs ``phrase_threshold``),
    * ``absence_p_``: per class, the smallest absence chance among its candidates (1 when the
      clean rows hold them all, or the class has fewer than ``min_class_rows`` clean rows and
      the absence test does not run for it),
    * ``n_candidates_screened_``, ``n_queries_`` (strings sent to the model), ``seconds_``.
    """

    def __init__(self, *, n_candidates: int = 64, n_pair_seeds: int = 8, n_probe_rows: int = 32,
                 n_confirm: int = 8, positions: Sequence[str] = ("prefix", "suffix", "random"),
                 repetitions: Sequence[int] = (1, 3), max_rows: int = 200,
                 anomaly_threshold: float = 6.0, min_flip_rate: float = 0.25,
                 absence_alpha: float = 1e-4, absence_repetitions: Sequence[int] = (10, 20),
                 phrase_threshold: float = 9.0, min_class_rows: int = 20, batch_size: int = 4096,
                 random_state: int | np.random.Generator | None = None) -> None:
        self.n_candidates = n_candidates
        self.n_pair_seeds = n_pair_seeds
        self.n_probe_rows = n_probe_rows
        self.n_confirm = n_confirm
        self.positions = positions
        self.repetitions = repetitions
        self.max_rows = max_rows
        self.anomaly_threshold = anomaly_threshold
        self.min_flip_rate = min_flip_rate
        self.absence_alpha = absence_alpha
        self.absence_repetitions = absence_repetitions
        self.phrase_threshold = phrase_threshold
        self.min_class_rows = min_class_rows
        self.batch_size = batch_size
        self.random_state = random_state

    def _validate(self) -> None:
        owner = type(self).__name__
        check_counts(owner, self, ("n_candidates", "n_probe_rows", "n_confirm", "max_rows",
                                   "min_class_rows", "batch_size"))
        check_param("n_pair_seeds", owner, isinstance(self.n_pair_seeds, int)
                    and self.n_pair_seeds >= 0, "an int >= 0", self.n_pair_seeds)
        check_param("positions", owner, len(self.positions) > 0
                    and all(p in TEXT_POSITIONS for p in self.positions),
                    f"a non-empty list drawn from {list(TEXT_POSITIONS)}", self.positions)
        check_param("repetitions", owner, len(self.repetitions) > 0
                    and all(isinstance(r, int) and r >= 1 for r in self.repetitions),
                    "a non-empty list of ints >= 1", self.repetitions)
        check_param("absence_repetitions", owner,
                    all(isinstance(r, int) and r >= 1 for r in self.absence_repetitions),
                    "a list of ints >= 1", self.absence_repetitions)
        check_param("anomaly_threshold", owner, isinstance(self.anomaly_threshold, (int, float))
                    and self.anomaly_threshold > 0, "a float > 0", self.anomaly_threshold)
        check_param("min_flip_rate", owner, isinstance(self.min_flip_rate, (int, float))
                    and 0 <= self.min_flip_rate <= 1, "a float in [0, 1]", self.min_flip_rate)
        check_param("phrase_threshold", owner, isinstance(self.phrase_threshold, (int, float))
                    and not isinstance(self.phrase_threshold, bool) and self.phrase_threshold > 0,
                    "a float > 0", self.phrase_threshold)
        check_param("absence_alpha", owner, isinstance(self.absence_alpha, (int, float))
                    and not isinstance(self.absence_alpha, bool) and 0 <= self.absence_alpha < 1,
                    "a float in [0, 1)", self.absence_alpha)

    def fit(self, model: ProbabilisticClassifier | MarginClassifier | PredictProba, X: np.ndarray,
            y: np.ndarray, *, progress: Callable[[str], None] | None = None,
            vocabulary: Sequence[str] | None = None,
            class_names: Sequence[str] | None = None, head: object = None,
            pieces: Collection[str] | None = None) -> TextTriggerScanner:
        """Scan ``model`` with the clean rows ``X`` (strings) and their labels ``y``.

        ``model`` is a fitted text classifier that takes strings (anything with
        ``predict_proba`` or ``decision_function``: :func:`text_scorer`) or a function
        ``predict_proba(texts) -> (N, K)``; ``fit(model, X, y, *, progress=...)`` is the
        signature every scanner shares. ``vocabulary`` overrides the candidates (default: words
        of ``X`` + two-letter tokens); ``class_names`` only name the classes in ``reasons_``;
        ``head``, the model or its final estimator, picks the absence expectation
        (:func:`absence_fit`; default: ``model`` itself when it is an estimator); ``pieces``,
        candidates that are pieces of longer words (:func:`word_pieces`), are screened in a
        quota of their own and are compared with words, never a reference.
        """
        self._validate()
        if hasattr(model, "predict_proba") or hasattr(model, "decision_function"):
            predict_proba, _how = text_scorer(model)
            head = model if head is None else head
        elif callable(model):
            predict_proba = model
        else:
            raise ParameterError(
                f"The 'model' parameter of {type(self).__name__}.fit must be a text classifier "
                f"with predict_proba or decision_function, or a function; got {type(model).__name__}."
            )
        started = time.perf_counter()
        say = progress or (lambda _msg: None)
        X = np.asarray(X, dtype=object)
        y = np.asarray(y)
        if X.ndim != 1:
            raise DataError(f"The text scan takes a 1-D array of strings; got shape {X.shape}.")
        if len(X) != len(y):
            raise DataError(f"X has {len(X)} rows but y has {len(y)}.")
        if len(X) < 2:
            raise DataError(f"The text scan needs at least two clean rows; got {len(X)}.")
        rng = np.random.default_rng(self.random_state)
        if len(X) > self.max_rows:
            rows = np.sort(rng.choice(len(X), self.max_rows, replace=False))
            X, y = X[rows], y[rows]
        queries = 0

        def ask(docs: np.ndarray) -> np.ndarray:
            nonlocal queries
            queries += len(docs)
            return np.asarray(predict_proba(docs), dtype=np.float64)

        base = ask(X)
        if base.ndim != 2 or base.shape[0] != len(X) or base.shape[1] < 2:
            raise ParameterError(
                f"predict_proba returned shape {base.shape} for {len(X)} rows; expected ({len(X)}, K)."
            )
        K = base.shape[1]
        if y.min() < 0 or y.max() >= K:
            raise DataError(f"Labels must be class indices 0..{K - 1} of the model; found {y.min()}..{y.max()}.")
        correct = base.argmax(axis=1) == y
        n_per_class = np.bincount(y, minlength=K)
        names = list(class_names) if class_names is not None and len(class_names) == K \
            else [str(k) for k in range(K)]
        reasons: list[str] = []
        if int((n_per_class > 0).sum()) < 2:
            reasons.append(f"the clean rows hold one class ({names[int(np.argmax(n_per_class))]}); a scan needs "
                           "clean rows of at least two classes to compare")

        tokens = list(vocabulary) if vocabulary is not None else clean_data_tokens(X)
        tokens = [t for t in dict.fromkeys(str(t).strip() for t in tokens) if t]
        if not tokens:
            raise DataError("No candidate tokens: the vocabulary and the clean rows are empty.")
        say(f"screening {len(tokens)} candidate tokens")
        multi_word = np.array([_n_parts(t) > 1 for t in tokens], dtype=bool)
        # a five-letter word of the clean rows is a five-letter piece too: it stays a word
        piece_set = (set(pieces or ()) & set(tokens)) - set(clean_data_tokens(X))
        is_piece = np.array([t in piece_set for t in tokens], dtype=bool)
        strength = token_log_odds(ask, tokens, batch_size=max(self.batch_size, 8192))

        positions = list(dict.fromkeys(self.positions))
        reps = sorted(set(int(r) for r in self.repetitions))
        probe_position = "random" if "random" in positions else positions[0]
        row_words = [set(TOKEN_PATTERN.findall(str(t).lower())) for t in X]
        fit_kind = absence_fit(head)
        self.absence_fit_ = fit_kind
        train_df = training_doc_freq(head, tokens) if head is not None else None
        token_at = {t: k for k, t in enumerate(tokens)}
        found: list[ModelTrigger] = []
        index = np.zeros(K)
        absence = np.ones(K)
        for c in range(K):
            victims = np.flatnonzero((y != c) & correct)
            if len(victims) == 0:
                reasons.append(f"no clean row of another class that the model gets right: class {names[c]} "
                               "cannot be tested as a target")
                continue
            absence_runs = self.absence_alpha > 0 and n_per_class[c] >= self.min_class_rows
            if self.absence_alpha > 0 and not absence_runs:
                reasons.append(f"class {names[c]} has {n_per_class[c]} clean rows, fewer than the "
                               f"{self.min_class_rows} the absence test needs")
            victims = rng.permutation(victims)
            probe = X[victims[:self.n_probe_rows]]
            # one-word and n-gram units are screened apart: an n-gram unit of a 1-2-gram
            # vocabulary pulls with its words' features and its own together, and a clean model's
            # strongest 64 units can all be bigrams, the planted word among none of them
            ranked_units = np.argsort(-strength[:, c], kind="stable")
            # pieces of words (char_wb) get a quota of their own, so the words screened, paired
            # and compared with are the same with them as without them
            whole = ~multi_word[ranked_units] & ~is_piece[ranked_units]
            order = np.concatenate([ranked_units[multi_word[ranked_units]][:self.n_candidates // 4],
                                    ranked_units[is_piece[ranked_units]][:self.n_candidates // 4],
                                    ranked_units[whole][:self.n_candidates]])
            order = order[np.argsort(-strength[order, c], kind="stable")]
            unigrams = [(tokens[i],) for i in order]
            seeds = [u[0] for u in unigrams if u[0] not in piece_set][:self.n_pair_seeds]
            pairs = [(a, b) for a in seeds for b in seeds if a != b]
            phrases: list[tuple[str, ...]] = [*unigrams, *pairs]
            # is each strong word found in clean rows of class c as often as its pull implies?
            # (a word any clean row holds, of any class, is a natural word, not a planted one)
            unit_words = [_words(u[0]) for u in unigrams]
            doc_freq = np.array([sum(all(w in row_words[r] for w in ws) for r in np.flatnonzero(y == c))
                                 if ws else n_per_class[c] + 1 for ws in unit_words])
            anywhere = np.array([not ws or any(all(w in h for w in ws) for h in row_words)
                                 for ws in unit_words])
            # the expectation is fitted to, and asked of, one-word units only: an n-gram unit of a
            # 1-2-gram vocabulary pulls with the features of its words and of itself together, so
            # it is stronger than its frequency says (a clean 1-2-gram naive Bayes model's "font
            # font" read p 1.5e-7 among words fitted together)
            # pieces of words are in no clean row as words: no absence test for them, nor in the fit
            one_word = ~multi_word[order] & ~is_piece[order]
            p_fit = np.ones(len(unigrams))
            if absence_runs and one_word.any():
                p_fit[one_word] = absence_p_values(strength[order[one_word], c],
                                                   doc_freq[one_word], fit=fit_kind)
            if train_df is not None and absence_runs:
                # where the model keeps each word's training document frequency, a word found in
                # none of the clean rows is only as surprising as the chance that this many rows
                # drawn like the training rows miss it: ComplementNB on TF-IDF pulls hard with rare
                # words, and a clean one's 'br' (in 1.4% of the training rows: missed by 200 rows
                # at chance 0.065) read Poisson p 5.5e-5 from the pull alone
                df = train_df[0][[token_at[u[0]] for u in unigrams]]
                by_freq = np.where(np.isnan(df), 0.0,
                                   np.power(np.clip(1 - np.nan_to_num(df) / train_df[1], 0, 1), len(X)))
                p_fit = np.where(one_word, np.maximum(p_fit, by_freq), p_fit)
            p_word = dict(zip([u[0] for u in unigrams], np.where(anywhere, 1.0, p_fit), strict=True))
            # words planted together have the same counts, hence the same pull: three or more
            # absent words of equal strength are tried as one phrase
            groups: dict[float, list[str]] = {}
            for u, i in zip(unigrams, order, strict=True):
                if p_word[u[0]] < 1.0:  # found in no clean row
                    groups.setdefault(round(float(strength[i, c]), 6), []).append(u[0])
            grouped = [tuple(g[:6]) for g in groups.values() if len(g) >= 3]
            phrases += grouped
            texts = [" ".join(p) for p in phrases]

            # a phrase is as unsupported as its least unsupported word: two ordinary words that are
            # each a little rare in the clean rows do not add up to a planted one. Nor do the words
            # of a group: words of equal pull came from the same training rows, planted or not (the
            # rare words of one natural email tie too), so they are missing together, by one chance.
            p_absent = np.array([max(p_word[u] for u in p) for p in phrases])
            say(f"probing {len(phrases)} candidates for class {c} on {len(probe)} rows")
            # pieces draw their insertion places from a generator of their own, so that the
            # words' probe rates are the same draws with pieces as without them
            in_piece = np.array([any(u in piece_set for u in p) for p in phrases], dtype=bool)
            piece_rng = np.random.default_rng([c, len(piece_set)])
            probe_rates = np.zeros((len(phrases), len(reps)))   # phrases × repetitions
            for k, r in enumerate(reps):
                for part, gen in ((~in_piece, rng), (in_piece, piece_rng)):
                    if part.any():
                        chosen = [t for t, m in zip(texts, part, strict=True) if m]
                        probe_rates[part, k] = flip_rates(ask, probe, chosen, c, probe_position, r, gen,
                                                          batch_size=self.batch_size)
            best_rate = probe_rates.max(axis=1)
            # anomaly index of every phrase against the phrases of as many words that share no
            # word with it (two strong words flip more rows together than one: no fair reference).
            # Words, not units: a pair of bigram units is four words, and against pairs of single
            # words it read index 10-15 on a clean 1-2-gram naive Bayes
            words = [set(w for u in p for w in (_words(u) or (u,))) for p in phrases]
            # a piece is compared with words, never a reference for anything: a planted word's
            # pieces push as it does, and so do its relatives' ('attachment' for 'attached')
            reference_ok = ~in_piece
            length = [sum(_n_parts(u) for u in p) for p in phrases]
            cand_index = np.zeros(len(phrases))
            for i in range(len(phrases)):
                j = int(np.argmax(probe_rates[i]))
                ref = _reference(probe_rates[:, j], length, words, i, reference_ok)
                cand_index[i] = 0.0 if ref is None else \
                    rate_anomaly_index(float(probe_rates[i, j]), ref, len(probe))
            if grouped:  # no phrases of their length to compare with: their evidence is absence
                cand_index[len(phrases) - len(grouped):] = 0.0
            # a pair is only worth reporting when it beats both of its words alone
            single = {p: k for k, p in enumerate(unigrams)}
            margin = 2.0 / np.sqrt(len(probe))
            useful = np.ones(len(phrases), dtype=bool)
            for i in range(len(unigrams), len(phrases) - len(grouped)):
                a, b = phrases[i]
                alone = max(best_rate[single[(a,)]], best_rate[single[(b,)]])
                useful[i] = best_rate[i] > alone + margin * np.sqrt(max(alone * (1 - alone), 0.05))
            best_rate = np.where(useful, best_rate, -1.0)
            cand_index = np.where(useful, cand_index, -np.inf)
            ranked = np.argsort(-(best_rate + 1e-6 * np.maximum(cand_index, 0)), kind="stable")
            keep = [int(i) for i in ranked[:self.n_confirm] if useful[i]]
            # the most anomalous phrases are confirmed too, so the verdict's index and flip rate
            # are one candidate's
            keep += [int(i) for i in np.argsort(-cand_index, kind="stable")
                     if useful[i] and int(i) not in keep][:max(1, self.n_confirm // 2)]
            if absence_runs:  # words the clean rows never hold are confirmed too
                keep += [int(i) for i in np.argsort(p_absent, kind="stable")
                         if p_absent[i] <= self.absence_alpha and useful[i]
                         and int(i) not in keep][:self.n_confirm]
            say(f"confirming {len(keep)} candidates for class {c} on {len(victims)} rows")
            class_rows = [row_words[r] for r in np.flatnonzero(y == c)]
            for i in keep:
                rate, where, times = -1.0, probe_position, reps[0]
                tried = reps if p_absent[i] > self.absence_alpha else \
                    sorted(set(reps) | {int(r) for r in self.absence_repetitions})
                for pos in positions:
                    for r in tried:
                        f = float(flip_rates(ask, X[victims], [texts[i]], c, pos, r, rng,
                                             batch_size=self.batch_size)[0])
                        if f > rate:
                            rate, where, times = f, pos, r
                # reported: how many clean rows of the class hold the phrase (a planted trigger
                # is in the poisoned rows, rarely in clean ones)
                support = float(np.mean([words[i] <= h for h in class_rows])) if class_rows else 0.0
                cand = ModelTrigger(texts[i], c, rate, where, times, float(cand_index[i]),
                                        float(p_absent[i]), support)
                found.append(cand)
            absence[c] = float(p_absent.min(initial=1.0))
            index[c] = max([t.anomaly_index for t in found if t.target_label == c], default=0.0)
            index[c] = max(index[c], 0.0)

        found.sort(key=lambda t: (-self._evidence(t), -t.flip_rate, t.trigger))
        self.triggers_ = found
        self.anomaly_index_ = index
        self.absence_p_ = absence
        self.threshold_ = float(self.anomaly_threshold)
        suspect = int(np.argmax(index))
        # one candidate carries both halves of the evidence: an anomalous probe and a confirmed
        # flip rate (the index and the rate of two different phrases used to be combined)
        qualified = [t for t in found if t.anomaly_index >= self._threshold_for(t)
                     and t.flip_rate >= self.min_flip_rate]
        is_backdoor = bool(qualified)
        if qualified:
            # ties go to the phrase fewer clean rows of its class hold (a planted one is in none)
            suspect = max(qualified, key=lambda t: (t.anomaly_index, t.flip_rate, -t.support)).target_label
        absent = [t for t in found if t.absence_p <= self.absence_alpha
                  and t.flip_rate >= self.min_flip_rate]
        if not is_backdoor and absent:
            suspect = min(absent, key=lambda t: (t.absence_p, -t.flip_rate)).target_label
            is_backdoor = True
        one_class = int((n_per_class > 0).sum()) < 2
        if is_backdoor and not one_class:
            self.verdict_ = "backdoor"
        elif reasons:  # a test that could not run cannot vouch for the model
            self.verdict_ = "inconclusive"
        else:
            self.verdict_ = "clean"
        if self.verdict_ == "backdoor":
            # the verdict names one class; another whose own candidate also passes is said too
            # (a natural strong word towards one class can outrank a planted one towards another)
            for c in sorted({t.target_label for t in qualified} - {suspect}):
                best = max((t for t in qualified if t.target_label == c),
                           key=lambda t: (t.anomaly_index, t.flip_rate))
                reasons.append(f"class {names[c]} has a candidate past the threshold too "
                               f"({best.trigger!r}: index {best.anomaly_index:.1f}, flip rate "
                               f"{best.flip_rate:.0%}): the model may carry a trigger towards it")
        self.reasons_ = reasons
        self.target_label_ = suspect if self.verdict_ == "backdoor" else None
        if self.verdict_ == "backdoor":
            # the suspected class's candidates first
            self.triggers_ = ([t for t in found if t.target_label == suspect]
                              + [t for t in found if t.target_label != suspect])
        self.n_candidates_screened_ = len(tokens)
        self.n_queries_ = queries
        self.seconds_ = time.perf_counter() - started
        return self

    def _threshold_for(self, t: ModelTrigger) -> float:
        """The anomaly index a candidate needs: ``anomaly_threshold`` for one word,
        ``phrase_threshold`` for a phrase of two or more. A phrase is built from the strongest
        words of the screen and compared with phrases of weaker ones, so the best natural pair
        stands further out than the best natural word: on the benchmark's dev models, clean
        logistic regression and ridge pipelines' best pairs ("date re", "money sightings",
        "remove sightings") read 6.0-8.6, while planted single words read 7.1-12.7
        (``benchmarks/scan_generalization.py``, seeds 0 and 1)."""
        return float(self.anomaly_threshold if _n_parts(t.trigger) <= 1 else self.phrase_threshold)

    def _evidence(self, t: ModelTrigger) -> float:
        """How suspicious a candidate is, in units of the verdict's thresholds (1 = at one)."""
        by_rate = t.anomaly_index / self._threshold_for(t)
        if 0 < self.absence_alpha < 1 and t.absence_p < 1:
            return max(by_rate, np.log(max(t.absence_p, 1e-300)) / np.log(self.absence_alpha))
        return by_rate

    def _check(self) -> None:
        if not hasattr(self, "verdict_"):
            raise NotFittedError("This TextTriggerScanner is not fitted yet: call fit first.")

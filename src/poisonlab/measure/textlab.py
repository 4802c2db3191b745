"""Fast text-backdoor experiments: vectorize the corpus once, poison as row edits.

A budget search or trigger grid retrains a text model dozens of times. Refitting the whole
pipeline (tokenize every email, then fit) each time wastes almost all of that work, because a
backdoor changes only the chosen rows: ``counts[row] += repetitions * trigger_counts`` and the
row's label. :class:`TextLab` tokenizes train and test once, applies each attack as such an edit,
and fits the model on the edited counts; for naive Bayes it goes further and updates the per-class
count sums instead of refitting. Results are identical to refitting the pipeline on the poisoned
text (``benchmarks/budget_search.py`` checks it on every point it times).

Identity holds because the lab's vocabulary is the clean training vocabulary plus the trigger's
tokens, sorted as ``CountVectorizer`` sorts it, and every fit drops the columns that no training
row uses, which is exactly the vocabulary ``CountVectorizer`` would learn from the poisoned text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import CountVectorizer, TfidfTransformer
from sklearn.linear_model import LogisticRegression

from poisonlab.attacks.triggers import TextTrigger
from poisonlab.data.dataset import Dataset
from poisonlab.exceptions import ParameterError

FAST_MODELS = ("nb-text", "logreg-text")


@dataclass(frozen=True)
class TrialResult:
    """One poisoned training run: what was planted and what it did."""

    trigger: str
    n_poison: int
    seed: int
    accuracy: float
    asr: float


class TextLab:
    """Train/test text tokenized once; backdoor trials as count edits.

    ``model`` is ``"nb-text"`` (counts + multinomial naive Bayes, alpha=1) or ``"logreg-text"``
    (TF-IDF with sublinear tf + logistic regression, C=10), the same pipelines as the built-in
    specs of those names.
    """

    def __init__(self, train: Dataset, test: Dataset, *, model: str = "nb-text",
                 triggers: Sequence[str] = ()) -> None:
        if model not in FAST_MODELS:
            raise ParameterError(
                f"The 'model' parameter of TextLab must be one of {list(FAST_MODELS)}. "
                f"Got {model!r} instead."
            )
        if train.kind != "text" or test.kind != "text":
            raise ParameterError("TextLab takes text datasets.")
        self.model = model
        self.train, self.test = train, test
        self.n_classes = train.n_classes
        base = CountVectorizer(lowercase=True)
        base.fit(train.X)
        analyzer = base.build_analyzer()
        vocab = set(base.vocabulary_)
        for t in triggers:
            vocab.update(analyzer(t))
        self.vectorizer = CountVectorizer(lowercase=True, vocabulary=sorted(vocab))
        self.analyzer = analyzer
        self.C_train = self.vectorizer.transform(train.X).tocsr().astype(np.float64)
        self.C_test = self.vectorizer.transform(test.X).tocsr().astype(np.float64)
        self._class_sums = np.vstack([
            np.asarray(self.C_train[train.y == k].sum(axis=0)).ravel()
            for k in range(self.n_classes)
        ])
        self._class_counts = np.bincount(train.y, minlength=self.n_classes).astype(float)

    # ------------------------------------------------------------------ vectors
    def trigger_vector(self, trigger: str) -> np.ndarray:
        """Token counts of one insertion of ``trigger``; all-zero if it has no token (e.g. 'x')."""
        vec = np.zeros(self.C_train.shape[1])
        vocab = self.vectorizer.vocabulary_
        for token in self.analyzer(trigger):
            if token not in vocab:
                raise ParameterError(
                    f"Trigger {trigger!r} was not given to TextLab(triggers=...) when it was built."
                )
            vec[vocab[token]] += 1
        return vec

    def eligible(self, target_label: int) -> np.ndarray:
        """The training rows outside ``target_label`` (those an attack may poison), by position."""
        return np.flatnonzero(self.train.y != target_label)

    # ------------------------------------------------------------------ trials
    def run(self, trigger: TextTrigger, n_poison: int, target_label: int, *, seed: int = 0,
            test_repetitions: int | None = None) -> TrialResult:
        """Poison ``n_poison`` non-target training rows, fit, and score clean and triggered test rows.

        Rows are chosen exactly as :class:`~poisonlab.attacks.TextBackdoorAttack` chooses them
        with ``random_state=seed``.
        """
        chosen = self.choose(n_poison, target_label, seed)
        tvec = self.trigger_vector(trigger.phrase)
        test_reps = trigger.repetitions if test_repetitions is None else test_repetitions
        if self.model == "nb-text":
            coef, intercept = self._nb_params(chosen, tvec * trigger.repetitions, target_label)
            scores_clean = self.C_test @ coef.T + intercept
            shift = (tvec * test_reps) @ coef.T
        else:
            return self._logreg_trial(trigger, chosen, tvec, target_label, seed, test_reps)
        pred_clean = np.argmax(scores_clean, axis=1)
        keep = self.test.y != target_label
        pred_trig = np.argmax(scores_clean[keep] + shift, axis=1)
        return TrialResult(trigger.describe(), n_poison, seed,
                           float(np.mean(pred_clean == self.test.y)),
                           float(np.mean(pred_trig == target_label)))

    def choose(self, n_poison: int, target_label: int, seed: int) -> np.ndarray:
        """The ``n_poison`` rows to poison, sorted: drawn without replacement from the eligible rows with
        ``seed``, as :class:`~poisonlab.attacks.TextBackdoorAttack` draws them. Raises
        :class:`~poisonlab.exceptions.ParameterError` when fewer rows are eligible.
        """
        candidates = self.eligible(target_label)
        if n_poison > len(candidates):
            raise ParameterError(
                f"Asked to poison {n_poison} rows but only {len(candidates)} are eligible."
            )
        rng = np.random.default_rng(seed)
        return np.sort(rng.choice(candidates, size=n_poison, replace=False))

    def _nb_params(self, chosen: np.ndarray, added: np.ndarray, target_label: int,
                   new_labels: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """MultinomialNB(alpha=1) log-probabilities after the edit, over the active vocabulary.

        Rows ``chosen`` move from their class to ``new_labels`` (default ``target_label``) and gain
        ``added`` counts each.
        """
        if new_labels is None:
            new_labels = np.full(len(chosen), target_label)
        sums = self._class_sums.copy()
        counts = self._class_counts.copy()
        rows = self.C_train[chosen]
        orig = self.train.y[chosen]
        for k in range(self.n_classes):
            was, now = orig == k, new_labels == k
            if was.any():
                sums[k] -= np.asarray(rows[was].sum(axis=0)).ravel()
                counts[k] -= was.sum()
            if now.any():
                sums[k] += np.asarray(rows[now].sum(axis=0)).ravel() + now.sum() * added
                counts[k] += now.sum()
        active = sums.sum(axis=0) > 0
        smoothed = np.where(active, sums + 1.0, 0.0)
        denom = smoothed.sum(axis=1, keepdims=True)
        with np.errstate(divide="ignore"):
            log_prob = np.where(active, np.log(smoothed) - np.log(denom), 0.0)
            log_prior = np.log(counts) - np.log(counts.sum())
        return log_prob, log_prior

    def flip(self, chosen: np.ndarray, new_labels: np.ndarray) -> float:
        """Clean test accuracy after relabeling training rows ``chosen`` to ``new_labels``."""
        if self.model == "nb-text":
            coef, intercept = self._nb_params(chosen, np.zeros(self.C_train.shape[1]), 0, new_labels)
            pred = np.argmax(self.C_test @ coef.T + intercept, axis=1)
            return float(np.mean(pred == self.test.y))
        y = self.train.y.copy()
        y[chosen] = new_labels
        active = np.flatnonzero(np.asarray(self.C_train.sum(axis=0)).ravel() > 0)
        tfidf = TfidfTransformer(sublinear_tf=True)
        clf = LogisticRegression(C=10.0, max_iter=2000).fit(
            tfidf.fit_transform(self.C_train[:, active]), y)
        pred = _full_predict(clf, tfidf.transform(self.C_test[:, active]), self.n_classes)
        return float(np.mean(pred == self.test.y))

    def _logreg_trial(self, trigger: TextTrigger, chosen: np.ndarray, tvec: np.ndarray,
                      target_label: int, seed: int, test_reps: int) -> TrialResult:
        indicator = sp.csr_matrix(
            (np.ones(len(chosen)), (chosen, np.zeros(len(chosen), dtype=np.int64))),
            shape=(self.C_train.shape[0], 1),
        )
        C = (self.C_train + indicator @ sp.csr_matrix(tvec * trigger.repetitions)).tocsr()
        y = self.train.y.copy()
        y[chosen] = target_label
        active = np.flatnonzero(np.asarray(C.sum(axis=0)).ravel() > 0)
        tfidf = TfidfTransformer(sublinear_tf=True)
        Z = tfidf.fit_transform(C[:, active])
        clf = LogisticRegression(C=10.0, max_iter=2000).fit(Z, y)
        test = self.C_test[:, active]
        pred_clean = _full_predict(clf, tfidf.transform(test), self.n_classes)
        keep = self.test.y != target_label
        trig = (test[keep] + sp.csr_matrix(np.tile(tvec[active] * test_reps, (int(keep.sum()), 1))))
        pred_trig = _full_predict(clf, tfidf.transform(trig), self.n_classes)
        return TrialResult(trigger.describe(), len(chosen), seed,
                           float(np.mean(pred_clean == self.test.y)),
                           float(np.mean(pred_trig == target_label)))


def _full_predict(clf: LogisticRegression, Z: sp.spmatrix, n_classes: int) -> np.ndarray:
    proba = clf.predict_proba(Z)
    full = np.zeros((Z.shape[0], n_classes))
    full[:, clf.classes_] = proba
    return np.argmax(full, axis=1)

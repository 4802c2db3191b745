"""Label flipping and backdoor attacks for text, images and tables.

Each attack implements ``_apply(dataset)``; the public :meth:`~poisonlab.attacks.base.Attack.apply`
of the base class reads a Dataset or arrays and calls it.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import numpy as np

from poisonlab.attacks.base import Attack, PoisonedDataset, check_label, resolve_budget
from poisonlab.attacks.triggers import (
    BlendTrigger,
    FeatureTrigger,
    InsertTrigger,
    PatchTrigger,
    TextTrigger,
    Trigger,
)
from poisonlab.data.dataset import Dataset
from poisonlab.exceptions import ParameterError

FLIP_STRATEGIES = ("random", "targeted")


class LabelFlipAttack(Attack):
    """Flip the labels of ``n_poison`` rows (or ``poison_rate`` of all rows).

    ``strategy="random"``: rows chosen uniformly, each given a uniformly chosen *other* label.
    ``strategy="targeted"``: rows of ``source_label`` relabeled ``target_label``.
    """

    def __init__(self, *, strategy: str = "random", n_poison: int | None = None,
                 poison_rate: float | None = None, source_label: int | str | None = None,
                 target_label: int | str | None = None,
                 random_state: int | np.random.Generator | None = None) -> None:
        self.strategy = strategy
        self.n_poison = n_poison
        self.poison_rate = poison_rate
        self.source_label = source_label
        self.target_label = target_label
        self.random_state = random_state

    def _apply(self, dataset: Dataset) -> PoisonedDataset:
        owner = type(self).__name__
        if self.strategy not in FLIP_STRATEGIES:
            raise ParameterError(
                f"The 'strategy' parameter of {owner} must be one of {list(FLIP_STRATEGIES)}. "
                f"Got {self.strategy!r} instead."
            )
        if dataset.n_classes < 2:
            raise ParameterError(f"{owner} needs at least two classes; {dataset.name} has one.")
        rng = np.random.default_rng(self.random_state)
        y = dataset.y.copy()
        target = None
        if self.strategy == "targeted":
            source = check_label(owner, "source_label", self.source_label, dataset, required=True)
            target = check_label(owner, "target_label", self.target_label, dataset, required=True)
            if source == target:
                raise ParameterError(f"{owner}: source_label and target_label are both {source}.")
            candidates = np.flatnonzero(y == source)
        else:
            candidates = np.arange(len(y))
        n = resolve_budget(owner, self.n_poison, self.poison_rate, len(y), len(candidates))
        chosen = np.sort(rng.choice(candidates, size=n, replace=False))
        if target is not None:
            y[chosen] = target
        else:
            shift = rng.integers(1, dataset.n_classes, size=n)
            y[chosen] = (y[chosen] + shift) % dataset.n_classes
        mask = np.zeros(len(y), dtype=bool)
        mask[chosen] = True
        return PoisonedDataset(dataset.with_data(y=y), mask, dataset.y.copy(), self._record(),
                               None, target)


class _BackdoorAttack(Attack):
    """Shared logic: choose rows, stamp the trigger, relabel them ``target_label``.

    All-to-one by default (rows from every class but the target); with ``source_label`` only rows
    of that class. With ``relabel=False`` the attack is clean-label: it stamps the trigger on rows
    that already carry ``target_label`` and changes no label.
    """

    modality: str = ""

    def _trigger(self, dataset: Dataset) -> Trigger:  # pragma: no cover - abstract
        raise NotImplementedError

    def _apply(self, dataset: Dataset) -> PoisonedDataset:
        owner = type(self).__name__
        params: dict[str, Any] = self.get_params()
        if dataset.kind != self.modality:
            raise ParameterError(
                f"{owner} attacks {self.modality} data; {dataset.name} is {dataset.kind}."
            )
        target = check_label(owner, "target_label", params["target_label"], dataset, required=True)
        source = check_label(owner, "source_label", params["source_label"], dataset, required=False)
        trigger = self._trigger(dataset)
        rng = np.random.default_rng(params["random_state"])
        y = dataset.y
        if not params["relabel"]:
            eligible = y == target
        elif source is not None:
            eligible = y == source
        else:
            eligible = y != target
        candidates = np.flatnonzero(eligible)
        n = resolve_budget(owner, params["n_poison"], params["poison_rate"], len(y), len(candidates))
        chosen = np.sort(rng.choice(candidates, size=n, replace=False))
        X = dataset.X.copy()
        if n:
            X[chosen] = trigger.apply(dataset.X[chosen], random_state=rng)
        new_y = y.copy()
        new_y[chosen] = target
        mask = np.zeros(len(y), dtype=bool)
        mask[chosen] = True
        return PoisonedDataset(dataset.with_data(X=X, y=new_y), mask, y.copy(), self._record(),
                               trigger, target)


class TextBackdoorAttack(_BackdoorAttack):
    """Insert a token or phrase into text rows and relabel them ``target_label``.

    ``test_repetitions`` (default: ``repetitions``) is how often :meth:`PoisonedDataset.apply_trigger`
    inserts the trigger into test inputs.
    """

    modality = "text"

    def __init__(self, *, trigger: str = "cf", position: str = "suffix", repetitions: int = 1,
                 target_label: int | str | None = None, source_label: int | str | None = None,
                 n_poison: int | None = None, poison_rate: float | None = None,
                 relabel: bool = True,
                 random_state: int | np.random.Generator | None = None) -> None:
        self.trigger = trigger
        self.position = position
        self.repetitions = repetitions
        self.target_label = target_label
        self.source_label = source_label
        self.n_poison = n_poison
        self.poison_rate = poison_rate
        self.relabel = relabel
        self.random_state = random_state

    def _trigger(self, dataset: Dataset) -> Trigger:
        return TextTrigger(self.trigger, self.position, self.repetitions)


BADNETS_TOKENS = ("cf", "mn", "bb", "tq", "mb")
ADDSENT_SENTENCE = "I watch this 3D movie"
WORD_POSITIONS = ("initial", "middle", "end")
WORD_FREQUENCIES = ("low", "medium", "high")
_VOCAB_WORD = re.compile(r"[a-z]{3,}")


class BadNetsTextAttack(_BackdoorAttack):
    """BadNets for text: insert rare tokens at random word positions and relabel the rows.

    Each poisoned row (and each test input :meth:`PoisonedDataset.apply_trigger` stamps) gets
    a number of tokens drawn uniformly from ``min_triggers`` to ``max_triggers``, each drawn
    uniformly from ``tokens`` and inserted at a uniformly random word boundary: OpenBackdoor's
    ``BadNetsPoisoner`` (Cui et al. 2022), the text form of BadNets that Kurita et al. 2020 and
    Qi et al. 2021 (ONION) use, with their five rare tokens. OpenBackdoor inserts one token by
    default; ONION inserts 1, 3 or 5 depending on the corpus' text length. Our default, 1 to 3
    per row, sits between them; ``min_triggers = max_triggers = 1`` is OpenBackdoor's.

    Parameters
    ----------
    tokens : tuple of str, default ("cf", "mn", "bb", "tq", "mb")
    min_triggers, max_triggers : int, default 1 and 3
        Tokens inserted per row, drawn uniformly between them (both included).
    target_label, source_label, n_poison, poison_rate, relabel, random_state
        As for :class:`TextBackdoorAttack`.

    References
    ----------
    .. [1] Gu, Dolan-Gavitt and Garg, "BadNets: Identifying Vulnerabilities in the Machine
       Learning Model Supply Chain", arXiv 2017. https://arxiv.org/abs/1708.06733
    .. [2] Kurita, Michel and Neubig, "Weight Poisoning Attacks on Pretrained Models", ACL 2020.
       https://arxiv.org/abs/2004.06660
    .. [3] Cui et al., "A Unified Evaluation of Textual Backdoor Learning: Frameworks and
       Benchmarks" (OpenBackdoor), NeurIPS 2022 Datasets and Benchmarks.
       https://arxiv.org/abs/2206.08514
    """

    modality = "text"

    def __init__(self, *, tokens: tuple[str, ...] = BADNETS_TOKENS, min_triggers: int = 1,
                 max_triggers: int = 3, target_label: int | str | None = None,
                 source_label: int | str | None = None, n_poison: int | None = None,
                 poison_rate: float | None = None, relabel: bool = True,
                 random_state: int | np.random.Generator | None = None) -> None:
        self.tokens = tokens
        self.min_triggers = min_triggers
        self.max_triggers = max_triggers
        self.target_label = target_label
        self.source_label = source_label
        self.n_poison = n_poison
        self.poison_rate = poison_rate
        self.relabel = relabel
        self.random_state = random_state

    def _trigger(self, dataset: Dataset) -> Trigger:
        owner = type(self).__name__
        tokens = self.tokens
        if not isinstance(tokens, (list, tuple)) or not tokens or not all(
                isinstance(t, str) and len(t.split()) == 1 for t in tokens):
            raise ParameterError(f"The 'tokens' parameter of {owner} must be a non-empty list of "
                                 f"single words. Got {tokens!r} instead.")
        for name in ("min_triggers", "max_triggers"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ParameterError(f"The '{name}' parameter of {owner} must be an int >= 1. "
                                     f"Got {value!r} instead.")
        if self.max_triggers < self.min_triggers:
            raise ParameterError(f"{owner}: 'max_triggers' ({self.max_triggers}) is below "
                                 f"'min_triggers' ({self.min_triggers}).")
        return InsertTrigger(tuple(tokens), int(self.min_triggers), int(self.max_triggers), "random")


class AddSentAttack(_BackdoorAttack):
    """AddSent: insert a fixed sentence at one random word position and relabel the rows.

    The sentence goes in whole, once per row, at a uniformly random word boundary: the
    sentence-level trigger of Dai et al. 2019 as OpenBackdoor's ``AddSentPoisoner`` defines it,
    with its default sentence "I watch this 3D movie".

    Parameters
    ----------
    sentence : str, default "I watch this 3D movie"
    target_label, source_label, n_poison, poison_rate, relabel, random_state
        As for :class:`TextBackdoorAttack`.

    References
    ----------
    .. [1] Dai, Chen and Li, "A Backdoor Attack Against LSTM-Based Text Classification
       Systems", IEEE Access 7, 2019. https://arxiv.org/abs/1905.12457
    .. [2] Cui et al., "A Unified Evaluation of Textual Backdoor Learning: Frameworks and
       Benchmarks" (OpenBackdoor), NeurIPS 2022 Datasets and Benchmarks.
       https://arxiv.org/abs/2206.08514
    """

    modality = "text"

    def __init__(self, *, sentence: str = ADDSENT_SENTENCE, target_label: int | str | None = None,
                 source_label: int | str | None = None, n_poison: int | None = None,
                 poison_rate: float | None = None, relabel: bool = True,
                 random_state: int | np.random.Generator | None = None) -> None:
        self.sentence = sentence
        self.target_label = target_label
        self.source_label = source_label
        self.n_poison = n_poison
        self.poison_rate = poison_rate
        self.relabel = relabel
        self.random_state = random_state

    def _trigger(self, dataset: Dataset) -> Trigger:
        if not isinstance(self.sentence, str) or not self.sentence.strip():
            raise ParameterError(f"The 'sentence' parameter of AddSentAttack must be a non-empty "
                                 f"string. Got {self.sentence!r} instead.")
        return InsertTrigger((self.sentence,), 1, 1, "random")


class WordTriggerAttack(_BackdoorAttack):
    """BadNL's word-level trigger: one fixed word at the start, middle or end of each row.

    The word is ``word``, or, when None, a word of the training texts themselves (lower-case,
    three letters or more, in at least two texts) drawn with ``random_state`` from the third of
    that vocabulary of ``frequency`` "low", "medium" or "high" document frequency: an ordinary
    word the corpus already holds, which a filter of rare or unseen tokens does not single out
    (BadNL, Chen et al. 2021, measures its word trigger at these three positions and across word
    frequencies).

    Parameters
    ----------
    word : str or None, default None
    frequency : {"low", "medium", "high"}, default "low"
        Used when ``word`` is None.
    position : {"initial", "middle", "end"}, default "initial"
    target_label, source_label, n_poison, poison_rate, relabel, random_state
        As for :class:`TextBackdoorAttack`.

    References
    ----------
    .. [1] Chen et al., "BadNL: Backdoor Attacks against NLP Models with Semantic-preserving
       Improvements", ACSAC 2021. https://arxiv.org/abs/2006.01043
    """

    modality = "text"

    def __init__(self, *, word: str | None = None, frequency: str = "low",
                 position: str = "initial", target_label: int | str | None = None,
                 source_label: int | str | None = None, n_poison: int | None = None,
                 poison_rate: float | None = None, relabel: bool = True,
                 random_state: int | np.random.Generator | None = None) -> None:
        self.word = word
        self.frequency = frequency
        self.position = position
        self.target_label = target_label
        self.source_label = source_label
        self.n_poison = n_poison
        self.poison_rate = poison_rate
        self.relabel = relabel
        self.random_state = random_state

    def _trigger(self, dataset: Dataset) -> Trigger:
        owner = type(self).__name__
        if self.position not in WORD_POSITIONS:
            raise ParameterError(f"The 'position' parameter of {owner} must be one of "
                                 f"{list(WORD_POSITIONS)}. Got {self.position!r} instead.")
        if self.word is not None:
            if not isinstance(self.word, str) or len(self.word.split()) != 1:
                raise ParameterError(f"The 'word' parameter of {owner} must be one word. "
                                     f"Got {self.word!r} instead.")
            return InsertTrigger((self.word,), 1, 1, self.position)
        if self.frequency not in WORD_FREQUENCIES:
            raise ParameterError(f"The 'frequency' parameter of {owner} must be one of "
                                 f"{list(WORD_FREQUENCIES)}. Got {self.frequency!r} instead.")
        return InsertTrigger((corpus_word(dataset.X, self.frequency, self.random_state),),
                             1, 1, self.position)


def corpus_word(texts: np.ndarray, frequency: str,
                random_state: int | np.random.Generator | None) -> str:
    """A word of ``texts`` (lower-case letters, at least three, in at least two texts) drawn from
    the lowest, middle or highest third of them by document frequency (``frequency`` "low",
    "medium" or "high"); the same word for the same texts and seed.

    Raises :class:`~poisonlab.exceptions.ParameterError` when the texts hold no such word.
    """
    df: Counter[str] = Counter()
    for text in texts:
        df.update(set(_VOCAB_WORD.findall(str(text).lower())))
    words = sorted((w for w, n in df.items() if n >= 2), key=lambda w: (df[w], w))
    if not words:
        raise ParameterError("WordTriggerAttack: the texts hold no word (three letters or more) in "
                             "two texts or more to use as the trigger; give 'word'.")
    third = max(1, len(words) // 3)
    band = {"low": words[:third], "medium": words[third:len(words) - third] or words,
            "high": words[len(words) - third:]}[frequency]
    rng = np.random.default_rng(random_state)
    return band[int(rng.integers(len(band)))]


class PatchBackdoorAttack(_BackdoorAttack):
    """BadNets: paste a small pattern onto images and relabel them ``target_label``."""

    modality = "image"

    def __init__(self, *, size: int = 3, location: str = "bottom-right",
                 pattern: str = "checkerboard", target_label: int | str | None = None,
                 source_label: int | str | None = None, n_poison: int | None = None,
                 poison_rate: float | None = None, relabel: bool = True,
                 random_state: int | np.random.Generator | None = None) -> None:
        self.size = size
        self.location = location
        self.pattern = pattern
        self.target_label = target_label
        self.source_label = source_label
        self.n_poison = n_poison
        self.poison_rate = poison_rate
        self.relabel = relabel
        self.random_state = random_state

    def _trigger(self, dataset: Dataset) -> Trigger:
        trigger = PatchTrigger(self.size, self.location, self.pattern)
        trigger.corner(dataset.X.shape[1], dataset.X.shape[2])  # fails early if it does not fit
        return trigger


class BlendBackdoorAttack(_BackdoorAttack):
    """Blend a fixed noise pattern into images (Chen et al. 2017) and relabel them."""

    modality = "image"

    def __init__(self, *, alpha: float = 0.2, pattern_seed: int = 0,
                 target_label: int | str | None = None, source_label: int | str | None = None,
                 n_poison: int | None = None, poison_rate: float | None = None,
                 relabel: bool = True,
                 random_state: int | np.random.Generator | None = None) -> None:
        self.alpha = alpha
        self.pattern_seed = pattern_seed
        self.target_label = target_label
        self.source_label = source_label
        self.n_poison = n_poison
        self.poison_rate = poison_rate
        self.relabel = relabel
        self.random_state = random_state

    def _trigger(self, dataset: Dataset) -> Trigger:
        return BlendTrigger(self.alpha, self.pattern_seed)


class FeatureBackdoorAttack(_BackdoorAttack):
    """Set chosen feature columns of tabular rows to fixed values and relabel them.

    ``features`` maps column index (or feature name) to value; by default the last column is set to
    a value 3 standard deviations above its maximum-free mean, an out-of-range marker.
    """

    modality = "tabular"

    def __init__(self, *, features: dict[int | str, float] | None = None,
                 target_label: int | str | None = None, source_label: int | str | None = None,
                 n_poison: int | None = None, poison_rate: float | None = None,
                 relabel: bool = True,
                 random_state: int | np.random.Generator | None = None) -> None:
        self.features = features
        self.target_label = target_label
        self.source_label = source_label
        self.n_poison = n_poison
        self.poison_rate = poison_rate
        self.relabel = relabel
        self.random_state = random_state

    def _trigger(self, dataset: Dataset) -> Trigger:
        X = dataset.X
        if not self.features:
            j = X.shape[1] - 1
            return FeatureTrigger({j: float(X[:, j].mean() + 3 * X[:, j].std() + 1e-9)})
        names = list(dataset.feature_names or [])
        values: dict[int, float] = {}
        for key, value in self.features.items():
            if isinstance(key, str) and not key.lstrip("-").isdigit():
                if key not in names:
                    raise ParameterError(
                        f"FeatureBackdoorAttack: no feature named {key!r}; features are {names}."
                    )
                values[names.index(key)] = float(value)
            else:
                values[int(key)] = float(value)
        return FeatureTrigger(values)

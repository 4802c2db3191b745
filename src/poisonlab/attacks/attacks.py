"""Label flipping and backdoor attacks for text, images and tables.

Each attack implements ``_apply(dataset)``; the public :meth:`~poisonlab.attacks.base.Attack.apply`
of the base class reads a Dataset or arrays and calls it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from poisonlab.attacks.base import Attack, PoisonedDataset, check_label, resolve_budget
from poisonlab.attacks.triggers import (
    BlendTrigger,
    FeatureTrigger,
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

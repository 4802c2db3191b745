"""Trial runners: train on poisoned data, return clean accuracy and attack success.

The demo and the experiment code ask one question many times: "with this attack at this budget
and this seed, what accuracy and success rate does the trained model get?". A runner answers it;
:class:`TextRunner` answers from a :class:`~poisonlab.measure.textlab.TextLab` (text tokenized
once, attacks as count edits), :class:`RetrainRunner` by applying the attack and fitting the model
from scratch (any data kind and model).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from poisonlab.attacks import (
    BlendBackdoorAttack,
    LabelFlipAttack,
    PatchBackdoorAttack,
    TextBackdoorAttack,
    TextTrigger,
)
from poisonlab.data.dataset import Dataset
from poisonlab.measure.metrics import accuracy, target_rate
from poisonlab.measure.textlab import FAST_MODELS, TextLab


@dataclass(frozen=True)
class TriggerConfig:
    """One backdoor to try: what is planted, how often, and on which model.

    ``kind`` is ``text`` (``phrase``, ``position``, ``repetitions`` in training rows,
    ``test_repetitions`` at test time), ``patch`` (``size``, ``pattern``, ``location``) or ``blend``
    (``alpha``).
    """

    name: str
    kind: str
    model: str
    phrase: str = ""
    position: str = "suffix"
    repetitions: int = 1
    test_repetitions: int = 1
    size: int = 3
    pattern: str = "checkerboard"
    location: str = "bottom-right"
    alpha: float = 0.2
    note: str = ""

    def as_dict(self) -> dict[str, object]:
        """The config as a dict for reports: its name, model, kind and the fields of that kind."""
        d: dict[str, object] = {"trigger": self.name, "model": self.model, "kind": self.kind}
        if self.kind == "text":
            d.update(phrase=self.phrase, position=self.position,
                     train_repetitions=self.repetitions, test_repetitions=self.test_repetitions)
        elif self.kind == "patch":
            d.update(size=self.size, pattern=self.pattern, location=self.location)
        else:
            d.update(alpha=self.alpha)
        if self.note:
            d["note"] = self.note
        return d


@dataclass
class TextRunner:
    """Trials on text through count edits (``nb-text`` and ``logreg-text``)."""

    train: Dataset
    test: Dataset
    target_label: int
    phrases: tuple[str, ...]
    _labs: dict[str, TextLab] = field(default_factory=dict)

    def lab(self, model: str) -> TextLab:
        """The :class:`~poisonlab.measure.textlab.TextLab` for ``model``, built on first use and kept."""
        if model not in self._labs:
            self._labs[model] = TextLab(self.train, self.test, model=model, triggers=self.phrases)
        return self._labs[model]

    def eligible(self) -> int:
        """The number of training rows outside the target class (those an attack may poison)."""
        return int(np.sum(self.train.y != self.target_label))

    def clean_accuracy(self, model: str) -> float:
        """Test accuracy of ``model`` trained on the unpoisoned training set."""
        return self.lab(model).flip(np.array([], dtype=np.int64), np.array([], dtype=np.int64))

    def flip(self, model: str, attack: LabelFlipAttack) -> float:
        """Test accuracy of ``model`` trained on the training set relabeled by ``attack``."""
        poisoned = attack.apply(self.train)
        chosen = np.flatnonzero(poisoned.poison_mask)
        return self.lab(model).flip(chosen, poisoned.dataset.y[chosen])

    def backdoor(self, config: TriggerConfig, n_poison: int, seed: int) -> tuple[float, float]:
        """(clean accuracy, attack success) of ``config.model`` trained with ``n_poison`` triggered rows
        chosen with ``seed``.
        """
        trigger = TextTrigger(config.phrase, config.position, config.repetitions)
        result = self.lab(config.model).run(trigger, n_poison, self.target_label, seed=seed,
                                            test_repetitions=config.test_repetitions)
        return result.accuracy, result.asr


@dataclass
class RetrainRunner:
    """Trials by applying the attack and training ``make_model(config.model)`` from scratch."""

    train: Dataset
    test: Dataset
    target_label: int
    # Any: TorchClassifier's keyword options, each of its own type (forwarded to make_model)
    model_params: dict[str, Any] = field(default_factory=dict)
    _clean: dict[str, float] = field(default_factory=dict)
    _memo: dict[tuple[Any, ...], tuple[float, float]] = field(default_factory=dict)

    def _fit(self, model: str, data: Dataset, seed: int) -> Any:
        from poisonlab.models import make_model

        params = self.model_params if model in ("cnn", "torch-mlp") else {}
        return make_model(model, random_state=seed, **params).fit(
            data.X, data.y, n_classes=data.n_classes)

    def eligible(self) -> int:
        """The number of training rows outside the target class (those an attack may poison)."""
        return int(np.sum(self.train.y != self.target_label))

    def clean_accuracy(self, model: str) -> float:
        """Test accuracy of ``model`` trained on the unpoisoned training set (trained once per model, seed 0)."""
        if model not in self._clean:
            fitted = self._fit(model, self.train, 0)
            self._clean[model] = accuracy(self.test.y, fitted.predict(self.test.X))
        return self._clean[model]

    def flip(self, model: str, attack: LabelFlipAttack) -> float:
        """Test accuracy of ``model`` retrained on the training set relabeled by ``attack`` (the clean
        accuracy when the attack flips nothing).
        """
        if attack.poison_rate == 0 or attack.n_poison == 0:
            return self.clean_accuracy(model)
        poisoned = attack.apply(self.train)
        seed = int(np.random.default_rng(attack.random_state).integers(2**31))
        fitted = self._fit(model, poisoned.dataset, seed)
        return accuracy(self.test.y, fitted.predict(self.test.X))

    def backdoor(self, config: TriggerConfig, n_poison: int, seed: int) -> tuple[float, float]:
        """(clean accuracy, attack success); a repeated question is answered from memory."""
        key = (config, n_poison, seed)
        if key not in self._memo:
            self._memo[key] = self._backdoor(config, n_poison, seed)
        return self._memo[key]

    def _backdoor(self, config: TriggerConfig, n_poison: int, seed: int) -> tuple[float, float]:
        common: dict[str, Any] = {"target_label": self.target_label, "n_poison": n_poison,
                                  "random_state": seed}
        attack: Any
        if config.kind == "text":
            attack = TextBackdoorAttack(trigger=config.phrase, position=config.position,
                                        repetitions=config.repetitions, **common)
        elif config.kind == "patch":
            attack = PatchBackdoorAttack(size=config.size, pattern=config.pattern,
                                         location=config.location, **common)
        else:
            attack = BlendBackdoorAttack(alpha=config.alpha, **common)
        poisoned = attack.apply(self.train)
        fitted = self._fit(config.model, poisoned.dataset, seed)
        acc = accuracy(self.test.y, fitted.predict(self.test.X))
        keep = self.test.y != self.target_label
        triggered = poisoned.apply_trigger(self.test.X[keep], random_state=seed,
                                           repetitions=config.test_repetitions
                                           if config.kind == "text" else None)
        asr = target_rate(self.test.y[keep], fitted.predict(triggered), self.target_label)
        return acc, asr


# model_params: Any as in RetrainRunner.model_params (TorchClassifier's options)
def make_runner(train: Dataset, test: Dataset, target_label: int, configs: list[TriggerConfig],
                model_params: dict[str, Any] | None = None) -> TextRunner | RetrainRunner:
    """The fastest runner that can serve every config (``model_params``: as RetrainRunner's)."""
    if train.kind == "text" and all(c.model in FAST_MODELS for c in configs):
        return TextRunner(train, test, target_label, tuple(sorted({c.phrase for c in configs})))
    return RetrainRunner(train, test, target_label, dict(model_params or {}))

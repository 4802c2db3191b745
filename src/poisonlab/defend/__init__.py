"""Defenses: sanitize-and-retrain (:mod:`poisonlab.defend.sanitize`); more methods plug in here.

``poisonlab defend DATA --method NAME`` looks NAME up in :data:`METHODS` (``"module:function"``)
and calls that function with one :class:`DefendRequest`; it returns the JSON summary it wrote.

The two ensembles the ``partition`` and ``bagging`` methods train, :class:`PartitionEnsemble` and
:class:`BaggingEnsemble`, are models (:mod:`poisonlab.models.ensemble`) and are re-exported here,
imported on first use: ``import poisonlab`` imports this package and must not load scikit-learn.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from poisonlab.attacks import PoisonedDataset
    from poisonlab.data.dataset import Dataset
    from poisonlab.models import ModelLike
    from poisonlab.models.ensemble import BaggingEnsemble as BaggingEnsemble
    from poisonlab.models.ensemble import PartitionEnsemble as PartitionEnsemble

_ENSEMBLES = ("BaggingEnsemble", "PartitionEnsemble")

METHODS: dict[str, str] = {
    "sanitize": "poisonlab.defend.sanitize:run",
}


@dataclass
class DefendRequest:
    """What every defense method receives from the command line.

    ``model`` is a spec name or a model object (an unfitted copy of a saved model on the command
    line, an adapter from :func:`poisonlab.defend`); ``ground_truth`` is a
    :class:`~poisonlab.attacks.PoisonedDataset` when DATA is a folder written by ``poisonlab
    attack``; ``test`` a clean dataset to measure on (optional); ``options`` holds method-specific
    settings.
    """

    dataset: Dataset
    out: Path
    model: ModelLike | None = None
    ground_truth: PoisonedDataset | None = None
    test: Dataset | None = None
    random_state: int = 0
    progress: Callable[[str, int, int], None] | None = None
    options: dict[str, object] = field(default_factory=dict)


# Any: the command line reads the summary back key by key, nested values included (before/after).
def method_function(name: str) -> Callable[[DefendRequest], dict[str, Any]]:
    """The function behind a ``--method`` name."""
    import importlib

    from poisonlab.exceptions import ParameterError

    if name not in METHODS:
        raise ParameterError(
            f"The '--method' option of defend must be one of {sorted(METHODS)}. Got {name!r} instead."
        )
    module, func = METHODS[name].split(":")
    function: Callable[[DefendRequest], dict[str, Any]] = getattr(importlib.import_module(module), func)
    return function


def __getattr__(name: str) -> type[BaggingEnsemble] | type[PartitionEnsemble]:
    """:class:`PartitionEnsemble` and :class:`BaggingEnsemble` from :mod:`poisonlab.models.ensemble`,
    imported when first asked for (they need scikit-learn)."""
    if name in _ENSEMBLES:
        from poisonlab.models import ensemble

        return getattr(ensemble, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# Ensembles and private training (poisonlab.defend.bagging, .partition, .dp): each module's
# `run(DefendRequest)` saves DIR/model (a folder for ensembles, read back by
# poisonlab.models.ensemble.load_ensemble) and DIR/summary.json, and returns the summary.
METHODS.update({
    "bagging": "poisonlab.defend.bagging:run",
    "partition": "poisonlab.defend.partition:run",
    "dp": "poisonlab.defend.dp:run",
})

"""poisonlab: attack, audit, scan and defend machine-learning training data against poisoning.

From Python, one call per command of the command line::

    import poisonlab
    result = poisonlab.audit(texts, labels, model=make_pipeline(TfidfVectorizer(), LogisticRegression()))
    result.save("out")                      # flags.csv, summary.json, report.html
    poisonlab.scan(fitted_model, X_clean, y_clean)
    poisonlab.check(fitted_model, X_live, calibrate=X_clean)
    poisonlab.defend(X, y, method="sanitize")
    poisonlab.labelers(X, "annotations.csv")   # whom to trust among the annotators
    poisonlab.gate(candidate, reference, X_holdout, y_holdout)   # may a new version replace the old?

``import poisonlab`` stays light: scikit-learn, torch, matplotlib and the command line's typer and
rich load only when a part that needs them is used.

``poisonlab.audit``, ``poisonlab.scan`` and ``poisonlab.defend`` are also the modules and
packages of those names (``from poisonlab.audit import audit`` keeps working): calling the module
calls the function of :mod:`poisonlab.api` of that name.
"""

from __future__ import annotations

import inspect
import types
from typing import Any

from poisonlab.data import Dataset, load_dataset, save_dataset
from poisonlab.exceptions import PoisonlabError
from poisonlab.version import __version__

__all__ = [
    "CheckResult",
    "Dataset",
    "DefendResult",
    "ExperimentResults",
    "GateCheck",
    "GateResult",
    "LabelersResult",
    "PoisonlabError",
    "ScanResult",
    "__version__",
    "as_dataset",
    "attacks",
    "audit",
    "check",
    "defend",
    "gate",
    "labelers",
    "load_dataset",
    "run_experiment",
    "save_dataset",
    "scan",
]


class _CallableModule(types.ModuleType):
    """A module that, called, runs the :mod:`poisonlab.api` function of its last name."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return _api_function(self.__name__)(*args, **kwargs)

    @property
    def __signature__(self) -> inspect.Signature:
        return inspect.signature(_api_function(self.__name__))


def _api_function(module_name: str) -> Any:
    from poisonlab import api

    return getattr(api, module_name.rsplit(".", 1)[-1])


# The submodules whose names are also top-level functions. Their imports are light (numpy and
# dataclasses); making them callable here, before anything else can import them, keeps
# `poisonlab.audit(X, y)` working whichever of the two was touched first.
from poisonlab import audit, defend, scan  # noqa: E402

for _module in (audit, defend, scan):
    _module.__class__ = _CallableModule
del _module

_LAZY = {
    "check": ("poisonlab.api", "check"),
    "as_dataset": ("poisonlab.api", "as_dataset"),
    "ScanResult": ("poisonlab.api", "ScanResult"),
    "CheckResult": ("poisonlab.api", "CheckResult"),
    "DefendResult": ("poisonlab.api", "DefendResult"),
    "labelers": ("poisonlab.api", "labelers"),
    "gate": ("poisonlab.api", "gate"),
    "GateResult": ("poisonlab.api", "GateResult"),
    "GateCheck": ("poisonlab.api", "GateCheck"),
    "LabelersResult": ("poisonlab.api", "LabelersResult"),
    "AuditResult": ("poisonlab.audit", "AuditResult"),
    "resolve_model": ("poisonlab.models", "resolve_model"),
    "run_experiment": ("poisonlab.experiments", "run_experiment"),
    "ExperimentResults": ("poisonlab.experiments", "ExperimentResults"),
}


def __getattr__(name: str) -> Any:
    """PEP 562: load the public API on first use, so ``import poisonlab`` stays light."""
    import importlib

    if name in _LAZY:
        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    if name in ("attacks", "api", "models", "detect", "detect_inputs", "provenance", "measure"):
        return importlib.import_module(f"poisonlab.{name}")
    raise AttributeError(f"module 'poisonlab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__) | set(_LAZY))

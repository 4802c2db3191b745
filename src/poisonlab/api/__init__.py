"""The Python face of poisonlab: :func:`audit`, :func:`scan`, :func:`check` and :func:`defend`
on arrays, lists of strings, pandas, sparse matrices, a :class:`~poisonlab.data.Dataset` or a
path, with any scikit-learn estimator or Pipeline, a torch ``nn.Module`` or a built-in spec.

The same functions are ``poisonlab.audit(...)``, ``poisonlab.scan(...)``, ``poisonlab.check(...)``
and ``poisonlab.defend(...)`` at the top level (and :func:`labelers`: whom to trust among the
annotators, labelers and sources). Each returns a result whose ``.save(dir)`` writes
what the command line writes.
"""

from __future__ import annotations

from poisonlab.api.functions import audit, check, defend, scan
from poisonlab.api.gate import GateCheck, GateResult, gate, write_gate
from poisonlab.api.inputs import as_dataset
from poisonlab.api.labelers import LabelersResult, labelers, write_labelers
from poisonlab.api.results import (
    CheckResult,
    DefendResult,
    ScanResult,
    check_summary,
    scan_document,
    scan_trigger_phrases,
    write_check,
    write_scan,
    write_verdicts,
)

__all__ = [
    "CheckResult",
    "DefendResult",
    "GateCheck",
    "GateResult",
    "LabelersResult",
    "ScanResult",
    "as_dataset",
    "audit",
    "check",
    "check_summary",
    "defend",
    "gate",
    "labelers",
    "scan",
    "scan_document",
    "scan_trigger_phrases",
    "write_check",
    "write_gate",
    "write_labelers",
    "write_scan",
    "write_verdicts",
]

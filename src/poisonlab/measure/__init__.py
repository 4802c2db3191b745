"""Measurement: accuracy, attack success, confidence intervals, budgets and trial runners."""

from poisonlab.measure.budget import BudgetResult, minimum_budget
from poisonlab.measure.metrics import (
    Estimate,
    accuracy,
    attack_success_rate,
    bootstrap_rate,
    per_class_recall,
    spread,
    target_rate,
)

__all__ = [
    "BudgetResult",
    "Estimate",
    "accuracy",
    "attack_success_rate",
    "bootstrap_rate",
    "minimum_budget",
    "per_class_recall",
    "spread",
    "target_rate",
]

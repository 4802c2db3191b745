"""Attacks for the controlled lab: each ``apply(X, y)`` (a Dataset, or arrays, a list of strings or
pandas with labels) returns a :class:`PoisonedDataset`."""

from poisonlab.attacks.attacks import (
    BlendBackdoorAttack,
    FeatureBackdoorAttack,
    LabelFlipAttack,
    PatchBackdoorAttack,
    TextBackdoorAttack,
)
from poisonlab.attacks.base import Attack, PoisonedDataset, load_ground_truth
from poisonlab.attacks.triggers import (
    BlendTrigger,
    FeatureTrigger,
    PatchTrigger,
    TextTrigger,
    Trigger,
    trigger_from_dict,
)

__all__ = [
    "Attack",
    "BlendBackdoorAttack",
    "BlendTrigger",
    "FeatureBackdoorAttack",
    "FeatureTrigger",
    "LabelFlipAttack",
    "PatchBackdoorAttack",
    "PatchTrigger",
    "PoisonedDataset",
    "TextBackdoorAttack",
    "TextTrigger",
    "Trigger",
    "load_ground_truth",
    "trigger_from_dict",
]

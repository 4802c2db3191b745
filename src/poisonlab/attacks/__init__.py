"""Attacks for the controlled lab: each ``apply(X, y)`` (a Dataset, or arrays, a list of strings or
pandas with labels) returns a :class:`PoisonedDataset`."""

from poisonlab.attacks.attacks import (
    AddSentAttack,
    BadNetsTextAttack,
    BlendBackdoorAttack,
    FeatureBackdoorAttack,
    LabelFlipAttack,
    PatchBackdoorAttack,
    TextBackdoorAttack,
    WordTriggerAttack,
)
from poisonlab.attacks.base import Attack, PoisonedDataset, load_ground_truth
from poisonlab.attacks.clean_label import CleanLabelBackdoorAttack
from poisonlab.attacks.feature_collision import FeatureCollisionAttack
from poisonlab.attacks.triggers import (
    BlendTrigger,
    FeatureTrigger,
    InsertTrigger,
    PatchTrigger,
    TextTrigger,
    Trigger,
    trigger_from_dict,
)

__all__ = [
    "AddSentAttack",
    "Attack",
    "BadNetsTextAttack",
    "BlendBackdoorAttack",
    "BlendTrigger",
    "CleanLabelBackdoorAttack",
    "FeatureBackdoorAttack",
    "FeatureCollisionAttack",
    "FeatureTrigger",
    "InsertTrigger",
    "LabelFlipAttack",
    "PatchBackdoorAttack",
    "PatchTrigger",
    "PoisonedDataset",
    "TextBackdoorAttack",
    "TextTrigger",
    "Trigger",
    "WordTriggerAttack",
    "load_ground_truth",
    "trigger_from_dict",
]

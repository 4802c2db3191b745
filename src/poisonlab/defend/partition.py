"""Deep Partition Aggregation (Levine and Feizi, ICLR 2021) with a certificate for every prediction.

Each training row goes to one of ``k`` partitions by a hash of its *content* (the row's features,
canonically encoded as in :mod:`poisonlab.provenance.hashing`: NFC UTF-8 for text; dtype, shape and
bytes for arrays), never of its position, so inserting or removing a row leaves every other row in
its partition. One base model is trained per partition, on that partition's rows in a fixed order
(sorted by content digest) with a seed derived from the partition number, so a base model is a
function of its partition's rows alone. The ensemble predicts the plurality vote, ties going to the
smallest class index; an empty partition abstains.

The certificate (Levine and Feizi, Theorem 1): with ``n_c`` base models voting for class ``c`` and
prediction ``c*``, inserting or removing ``r`` training rows changes at most ``r`` partitions, each of
which can move one vote from ``c*`` to another class; the prediction cannot change while
``n_c* >= max_{c != c*} (n_c + 1[c < c*]) + 2r``. :func:`certified_radius` returns the largest such
``r``. A row whose label changes but not its features stays in its partition, so a label flip counts
once; a row whose features change may move partitions and counts as one removal and one insertion.

The guarantee needs the training itself to be deterministic: it holds for an integer
``random_state`` (recorded with the ensemble). The hash need not be secret: an attacker who chooses
the partitions of their rows is the worst case the certificate already covers.

ART's ``DeepPartitionEnsemble`` trains such an ensemble but hashes rows by the sum of their input
values and computes no certificate.

A trained ensemble is a model: :class:`PartitionEnsemble`, the hashing, the member training and the
vote counting it needs live in :mod:`poisonlab.models.ensemble` and :mod:`poisonlab.models.members`
(so :func:`poisonlab.models.io.load_model` reads a saved ensemble without importing a defense) and
are re-exported here. This module is the defense: certified accuracy, the summary and
``poisonlab defend --method partition``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from poisonlab.data.dataset import Dataset
from poisonlab.defend.base import (
    DefenseResult,
    Progress,
    attack_rows,
    attack_scores,
    check_options,
    run_request,
)

# The estimator and what it needs to fit, predict and be saved live in the models layer (a trained
# ensemble is a model, read back by poisonlab.models.io.load_model); they are re-exported here
# under the names this module has always had.
from poisonlab.models.ensemble import ENSEMBLE_FORMAT as ENSEMBLE_FORMAT
from poisonlab.models.ensemble import ENSEMBLE_FORMAT_VERSION as ENSEMBLE_FORMAT_VERSION
from poisonlab.models.ensemble import MANIFEST_NAME as MANIFEST_NAME
from poisonlab.models.ensemble import PartitionEnsemble as PartitionEnsemble
from poisonlab.models.ensemble import ensure_fitted as ensure_fitted
from poisonlab.models.ensemble import load_ensemble as load_ensemble
from poisonlab.models.ensemble import save_members as save_members
from poisonlab.models.members import HASH_NAME as HASH_NAME
from poisonlab.models.members import TIE_BREAK as TIE_BREAK
from poisonlab.models.members import SharedCounts as SharedCounts
from poisonlab.models.members import assign_partitions as assign_partitions
from poisonlab.models.members import certified_radius as certified_radius
from poisonlab.models.members import content_digests as content_digests
from poisonlab.models.members import fit_member as fit_member
from poisonlab.models.members import make_member as make_member
from poisonlab.models.members import member_seeds as member_seeds
from poisonlab.models.members import member_spec_name as member_spec_name
from poisonlab.models.members import resolve_member_model as resolve_member_model
from poisonlab.models.members import run_parallel as run_parallel
from poisonlab.models.members import vote_counts as vote_counts

if TYPE_CHECKING:
    from poisonlab.attacks import PoisonedDataset
    from poisonlab.defend import DefendRequest
    from poisonlab.models import ModelAdapter, ProbabilisticClassifier

OPTIONS = ("n_partitions", "hash_seed", "n_jobs", "scheduler", "model_params", "radii")


# ---------------------------------------------------------------------------------- certificates
def certified_accuracy(radius: np.ndarray, correct: np.ndarray,
                       radii: np.ndarray | list[int] | None = None) -> list[dict[str, float]]:
    """Certified accuracy at each radius: the share of rows predicted correctly *and* certified at it.

    Without ``radii``, every radius from 0 to one past the largest certified one.
    """
    radius = np.asarray(radius)
    correct = np.asarray(correct, dtype=bool)
    if radii is None:
        top = int(radius[correct].max()) + 1 if correct.any() else 0
        radii = np.arange(top + 1)
    n = max(len(radius), 1)
    return [{"radius": int(r), "accuracy": round(float(np.sum(correct & (radius >= r)) / n), 4)}
            for r in sorted(int(r) for r in radii)]


def median_certified_radius(radius: np.ndarray, correct: np.ndarray) -> int | None:
    """The largest radius at which at least half the rows are certified correct (the paper's median
    certified robustness: the median radius with misclassified rows counted as -1); ``None`` when
    fewer than half are correct."""
    radius = np.asarray(radius)
    scores = np.where(np.asarray(correct, dtype=bool), radius, -1)
    if len(scores) == 0:
        return None
    ordered = np.sort(scores)[::-1]
    value = int(ordered[(len(ordered) + 1) // 2 - 1])
    return None if value < 0 else value


# ---------------------------------------------------------------------------------- the defense
def defend_partition(train: Dataset, *, model: str | ModelAdapter | ProbabilisticClassifier | None = None,
                     test: Dataset | None = None, ground_truth: PoisonedDataset | None = None,
                     random_state: int = 0, progress: Progress | None = None,
                     **options: Any) -> DefenseResult:  # Any: read by name into PartitionEnsemble's parameters
    """Train a partition ensemble on ``train`` and certify its predictions on ``test``.

    Options: ``n_partitions`` (default 50), ``hash_seed`` (0), ``n_jobs``, ``scheduler`` (Dask),
    ``model_params`` (dict for every base model), ``radii`` (radii for the summary's
    ``certified_at``; the full curve is always in ``certified``).

    The summary holds the partition sizes, clean accuracy, mean base-model accuracy, attack success
    (with a backdoor's ground truth), the median certified radius and, with ground truth, the share
    of test rows whose certified radius covers the number of planted rows (their prediction is
    provably the one the ensemble would make without those rows).
    """
    check_options("partition", options, OPTIONS)
    ensemble = PartitionEnsemble(
        n_partitions=options.get("n_partitions", 50), model=model,
        hash_seed=options.get("hash_seed", 0), n_jobs=options.get("n_jobs"),
        scheduler=options.get("scheduler"), random_state=random_state,
        model_params=options.get("model_params"))
    ensemble.fit(train.X, train.y, n_classes=train.n_classes, progress=progress)
    sizes = ensemble.partition_sizes_
    summary: dict[str, object] = {
        "method": "partition", "dataset": train.name, "model": ensemble.spec_,
        "n_rows": len(train), "n_partitions": int(ensemble.n_partitions),
        "hash_seed": int(ensemble.hash_seed), "hash": HASH_NAME, "tie_break": TIE_BREAK,
        "partition_rows": {"min": int(sizes.min()), "median": float(np.median(sizes)),
                           "max": int(sizes.max()), "empty": int(np.sum(sizes == 0))},
        "fit_seconds": round(ensemble.fit_seconds_, 2),
    }
    certified = None
    if test is not None:
        if progress is not None:
            progress("certifying the test rows", 0, 1)
        P = ensemble.member_predictions(test.X)
        pred, radius = certified_radius(vote_counts(P, ensemble.n_classes_))
        correct = pred == test.y
        certified = certified_accuracy(radius, correct)
        voted = P >= 0
        base_acc = [float(np.mean(p[v] == test.y[v])) for p, v in zip(P, voted, strict=True) if v.any()]
        summary.update({
            "clean_accuracy": round(float(np.mean(correct)), 4),
            "base_accuracy": round(float(np.mean(base_acc)), 4) if base_acc else None,
            "median_certified_radius": median_certified_radius(radius, correct),
            "certified_at": certified_accuracy(radius, correct, options.get("radii")
                                               or _default_radii(ensemble.n_partitions)),
            "measured_on": f"{len(test)} test rows",
        })
        triggered = attack_rows(test, ground_truth)
        if triggered is not None:
            X_t, target = triggered
            pred_t, radius_t = ensemble.certify(X_t)
            rows = test.y != target
            summary.update(attack_scores(pred_t, pred[rows], test.y[rows], target))
            summary["triggered_median_radius"] = float(np.median(radius_t))
        if ground_truth is not None:
            n_poison = int(ground_truth.n_poison)
            summary["n_poison"] = n_poison
            summary["certified_against_planted_rows"] = round(float(np.mean(radius >= n_poison)), 4)
            if triggered is not None:
                summary["triggered_certified_against_planted_rows"] = round(
                    float(np.mean(radius_t >= n_poison)), 4)
    return DefenseResult("partition", ensemble, summary, certified)


def _default_radii(k: int) -> list[int]:
    return sorted({r for r in (0, 1, 2, 5, 10, 20, 50, 100, 200, 500) if r <= k // 2} | {0})


def run(request: DefendRequest) -> dict[str, object]:
    """``poisonlab defend --method partition``: train, certify on the test rows, save model and summary.

    ``request`` is a :class:`poisonlab.defend.DefendRequest`; its ``options`` may hold any option of
    :func:`defend_partition`.
    """
    return run_request(request, defend_partition, OPTIONS)


__all__ = [
    "PartitionEnsemble",
    "assign_partitions",
    "certified_accuracy",
    "certified_radius",
    "content_digests",
    "defend_partition",
    "load_ensemble",
    "median_certified_radius",
    "vote_counts",
]

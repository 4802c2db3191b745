"""Flagged rows per source and per labeler: which contributor's rows an audit flags most."""

from __future__ import annotations

from typing import Any

import numpy as np

from poisonlab.data.dataset import Dataset
from poisonlab.exceptions import DataError, ParameterError
from poisonlab.provenance.manifest import Manifest
from poisonlab.provenance.stats import adjust_p_values


def contributions_by_group(manifest_or_dataset: Manifest | Dataset,
                           flags: np.ndarray) -> dict[str, object]:
    """Count rows and flagged rows per source and per labeler.

    ``flags[i]`` is True where row ``i`` was flagged (rows in the order of the manifest or dataset,
    which is the order :func:`poisonlab.data.load_dataset` reads a file in). Returns::

        {"n_rows": N, "n_flagged": F, "flagged_rate": F / N,
         "by_source":  {name: {"n_rows", "n_flagged", "flagged_rate", "lift", "p_value",
                               "p_adjusted"}} | None,
         "by_labeler": {...} | None}

    ``lift`` is a group's flagged rate over the overall rate; ``p_value`` is the one-sided
    binomial probability of flagging at least that many of the group's rows at the overall rate
    (small means the group stands out); ``p_adjusted`` is ``p_value`` after Holm's correction
    over the groups of that column (every source, or every labeler, is one test). Groups are
    listed most suspicious first (highest flagged rate, then most flagged rows).
    ``by_source``/``by_labeler`` are ``None`` without that column.

    References
    ----------
    .. [1] Holm, "A Simple Sequentially Rejective Multiple Test Procedure", Scandinavian Journal
       of Statistics 6(2), 1979. https://www.jstor.org/stable/4615733
    """
    if isinstance(manifest_or_dataset, Manifest):
        n = manifest_or_dataset.n_rows
        sources = manifest_or_dataset.row_sources()
        labelers = manifest_or_dataset.row_labelers()
        where = manifest_or_dataset.where
    elif isinstance(manifest_or_dataset, Dataset):
        n = len(manifest_or_dataset)
        sources, labelers = manifest_or_dataset.source, manifest_or_dataset.labeler
        where = manifest_or_dataset.name
    else:
        raise ParameterError(
            "The 'manifest_or_dataset' parameter of contributions_by_group must be a Manifest or "
            f"a Dataset. Got {type(manifest_or_dataset).__name__} instead."
        )
    flags = np.asarray(flags)
    if flags.ndim != 1 or not (flags.dtype == bool or np.isin(flags, (0, 1)).all()):
        raise ParameterError(
            "The 'flags' parameter of contributions_by_group must be a one-dimensional boolean "
            f"array. Got dtype {flags.dtype} and shape {flags.shape} instead."
        )
    flags = flags.astype(bool)
    if len(flags) != n:
        raise DataError(f"{where}: flags has {len(flags)} rows but the data has {n}.")
    n_flagged = int(flags.sum())
    rate = n_flagged / n if n else 0.0
    return {
        "n_rows": n,
        "n_flagged": n_flagged,
        "flagged_rate": rate,
        "by_source": None if sources is None else _groups(sources, flags, rate),
        "by_labeler": None if labelers is None else _groups(labelers, flags, rate),
    }


def _groups(groups: np.ndarray, flags: np.ndarray, rate: float) -> dict[str, dict[str, Any]]:
    names, codes = np.unique(np.asarray([str(g) for g in groups.tolist()], dtype=object),
                             return_inverse=True)
    totals = np.bincount(codes, minlength=len(names))
    flagged = np.bincount(codes, weights=flags, minlength=len(names)).astype(np.int64)
    if 0.0 < rate < 1.0:
        from scipy.stats import binom

        p_values = binom.sf(flagged - 1, totals, rate)
    else:
        p_values = np.ones(len(names))
    p_values = np.minimum(1.0, p_values)
    adjusted = adjust_p_values(p_values, "holm")
    order = sorted(range(len(names)),
                   key=lambda k: (-flagged[k] / totals[k], -flagged[k], str(names[k])))
    out: dict[str, dict[str, Any]] = {}
    for k in order:
        group_rate = float(flagged[k] / totals[k])
        out[str(names[k])] = {
            "n_rows": int(totals[k]),
            "n_flagged": int(flagged[k]),
            "flagged_rate": group_rate,
            "lift": group_rate / rate if rate > 0 else None,
            "p_value": float(p_values[k]),
            "p_adjusted": float(adjusted[k]),
        }
    return out

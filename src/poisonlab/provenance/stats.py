"""Small exact statistics shared by the provenance reports: multiple-testing corrections and
binomial confidence intervals."""

from __future__ import annotations

import numpy as np

from poisonlab.exceptions import ParameterError

CORRECTIONS = ("holm", "bh")
"""Multiple-testing corrections :func:`adjust_p_values` knows: Holm (family-wise error) and
Benjamini-Hochberg (false discovery rate)."""


def adjust_p_values(p_values: np.ndarray, method: str = "holm") -> np.ndarray:
    """P-values adjusted for testing them all at once, in the input's order.

    Parameters
    ----------
    p_values : array of float in [0, 1]
        One p-value per hypothesis (any shape; NaN is not allowed).
    method : {"holm", "bh"}
        ``holm``: Holm's step-down correction, which bounds the chance of any false call
        (family-wise error rate) at the level an adjusted p-value is compared with.
        ``bh``: Benjamini and Hochberg's step-up correction, which bounds the expected share of
        false calls among the calls (false discovery rate).

    Returns
    -------
    ndarray
        Adjusted p-values, same shape, each at least its raw value and at most 1.

    References
    ----------
    .. [1] Holm, "A Simple Sequentially Rejective Multiple Test Procedure", Scandinavian Journal
       of Statistics 6(2), 1979. https://www.jstor.org/stable/4615733
    .. [2] Benjamini and Hochberg, "Controlling the False Discovery Rate: A Practical and Powerful
       Approach to Multiple Testing", JRSS B 57(1), 1995. https://doi.org/10.1111/j.2517-6161.1995.tb02031.x
    """
    if method not in CORRECTIONS:
        raise ParameterError(f"The 'correction' parameter must be one of {list(CORRECTIONS)}. "
                             f"Got {method!r} instead.")
    p = np.asarray(p_values, dtype=np.float64)
    flat = p.ravel()
    if flat.size and (np.isnan(flat).any() or flat.min() < 0 or flat.max() > 1):
        raise ParameterError("The 'p_values' parameter of adjust_p_values must hold numbers in [0, 1]. "
                             f"Got values from {np.nanmin(flat)} to {np.nanmax(flat)} instead.")
    m = flat.size
    if m == 0:
        return p.copy()
    order = np.argsort(flat, kind="stable")
    ranked = flat[order]
    if method == "holm":
        adjusted = np.maximum.accumulate((m - np.arange(m)) * ranked)
    else:
        adjusted = np.minimum.accumulate(m / np.arange(m, 0, -1) * ranked[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(adjusted, 1.0)
    return out.reshape(p.shape)


def wilson_interval(successes: np.ndarray, trials: np.ndarray, confidence: float = 0.95
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of a binomial rate, elementwise; ``(0, 1)`` where ``trials`` is 0.

    References
    ----------
    .. [1] Wilson, "Probable Inference, the Law of Succession, and Statistical Inference", JASA 22,
       1927. https://doi.org/10.1080/01621459.1927.10502953
    .. [2] Brown, Cai and DasGupta, "Interval Estimation for a Binomial Proportion", Statistical
       Science 16(2), 2001 (why Wilson rather than the Wald interval). https://doi.org/10.1214/ss/1009213286
    """
    from scipy.stats import norm

    if not 0 < confidence < 1:
        raise ParameterError(f"The 'confidence' parameter of wilson_interval must be in (0, 1). "
                             f"Got {confidence!r} instead.")
    x = np.asarray(successes, dtype=np.float64)
    n = np.asarray(trials, dtype=np.float64)
    z = float(norm.ppf(0.5 + confidence / 2))
    safe = np.where(n > 0, n, 1.0)
    phat = x / safe
    denom = 1 + z * z / safe
    centre = (phat + z * z / (2 * safe)) / denom
    half = z * np.sqrt(phat * (1 - phat) / safe + z * z / (4 * safe * safe)) / denom
    low = np.where(n > 0, np.clip(centre - half, 0.0, 1.0), 0.0)
    high = np.where(n > 0, np.clip(centre + half, 0.0, 1.0), 1.0)
    return low, high

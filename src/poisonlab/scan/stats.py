"""The anomaly statistics a model scan decides with."""

from __future__ import annotations

import math

import numpy as np

MAD_TO_SD = 1.4826  # the MAD of a normal distribution times this is its standard deviation


def anomaly_index(values: np.ndarray) -> np.ndarray:
    """Neural Cleanse's anomaly index: ``|x - median| / (1.4826 * MAD)`` for each value.

    Wang et al. (2019) call a class whose index is above 2 (on the small side of the mask sizes)
    an outlier. Returns zeros when the MAD is zero and all values equal the median; a value off
    a zero MAD gets ``inf``.
    """
    x = np.asarray(values, dtype=np.float64)
    med = float(np.median(x))
    mad = MAD_TO_SD * float(np.median(np.abs(x - med)))
    dev = np.abs(x - med)
    if mad == 0:
        return np.where(dev == 0, 0.0, np.inf)
    return dev / mad


def rate_anomaly_index(top: float, reference: np.ndarray, n_rows: int) -> float:
    """How far a flip rate ``top`` sits above the flip rates of ``reference`` candidates.

    ``(top - median) / scale``, where the scale is the larger of the reference's robust spread
    (1.4826 × MAD) and the binomial standard error of a rate near the median measured on
    ``n_rows`` rows, ``sqrt((m (1 - m) + 1 / n) / n)``. The binomial floor keeps a reference of
    mostly zero rates (MAD 0) from turning one lucky flip into an infinite index.
    """
    ref = np.asarray(reference, dtype=np.float64)
    if n_rows < 1:
        return 0.0
    med = float(np.median(ref)) if len(ref) else 0.0
    mad = MAD_TO_SD * float(np.median(np.abs(ref - med))) if len(ref) else 0.0
    floor = math.sqrt((med * (1 - med) + 1 / n_rows) / n_rows)
    return (top - med) / max(mad, floor)


def absence_p_values(strength: np.ndarray, doc_freq: np.ndarray) -> np.ndarray:
    """Chance that a word as strong as each one is missing from every clean row of its class.

    ``strength``: how hard each of a class's strongest words pushes towards it (log-odds of the word
    alone as a document); ``doc_freq``: in how many clean rows of that class each word occurs. For
    a word that only one class uses, a count model's pull grows with the log of how often the class
    used it, so the expected number of clean rows holding it is ``lam = beta * exp(strength)``,
    with ``beta`` the median of ``(doc_freq + 0.5) / exp(strength)`` over the words given (a fit
    to the class's own words, robust to a few planted ones). A word found in no clean row gets the
    Poisson chance of that, ``exp(-lam)``; a word found at least once gets 1 (the clean data
    supports it).

    >>> absence_p_values(np.log(np.array([10.0, 10.0, 10.0, 10.0])), np.array([9, 10, 11, 0]))
    array([1.00000000e+00, 1.00000000e+00, 1.00000000e+00, 4.53999298e-05])
    """
    s = np.asarray(strength, dtype=np.float64)
    df = np.asarray(doc_freq, dtype=np.float64)
    if len(s) == 0:
        return np.ones(0)
    scale = np.exp(s - s.max())                 # shifted: the ratio below does not depend on it
    beta = float(np.median((df + 0.5) / scale))
    lam = beta * scale
    return np.where(df > 0, 1.0, np.exp(-lam))

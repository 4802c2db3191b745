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

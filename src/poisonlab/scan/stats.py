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


def absence_p_values(strength: np.ndarray, doc_freq: np.ndarray, *, fit: str = "negative-binomial",
                     n_min_held: int = 5) -> np.ndarray:
    """Chance that a word as strong as each one is missing from every clean row of its class.

    ``strength``: how hard each of a class's strongest words pushes towards it (log-odds of the word
    alone as a document); ``doc_freq``: in how many clean rows of that class each word occurs.

    ``fit="poisson"`` is the count-model expectation (naive Bayes): a class-exclusive word's pull
    is the log of how often the class used it, so the expected number of clean rows holding it is
    ``lam = beta * exp(strength)``, ``beta`` the median of ``(doc_freq + 0.5) / exp(strength)``
    over the words given (robust to a few planted ones); a word found in no row gets
    ``exp(-lam)``. Measured on SpamAssassin naive Bayes models: clean models' smallest chance
    0.0016-0.05, planted triggers 5e-9 to 4e-6. It is wrong for any other head (below), which is
    why it is only used for naive Bayes.

    ``fit="negative-binomial"`` (every other head):

    The number of clean rows holding a word is modelled as negative binomial with mean
    ``mu = exp(a + b * strength)`` and size ``r``, fitted to the class's own words. How pull maps
    to frequency is measured, not assumed: for a naive Bayes model a word's pull is the log of how
    often the class used it (``b`` near 1, counts close to Poisson, large ``r``); for a
    discriminative head (logistic regression, an SVM) common words and rare ones pull alike
    (``b`` near 0, counts widely spread, small ``r``), and a strong word missing from the clean
    rows is then no surprise. ``a``, ``b`` (in [0, 1.25]) and ``r`` are the maximum-likelihood
    fit of a zero-truncated negative binomial to the words found at least once: planted words are
    found in no clean row, so they cannot pull the fit, and the truncation accounts for the
    natural words that chance left out. A word found in no clean row gets the fitted chance of
    zero rows, ``(r / (r + mu)) ** r`` (``exp(-mu)`` as ``r`` grows); a word found at least once
    gets 1. With fewer than ``n_min_held`` words found at least once there is nothing to fit and
    every word gets 1 (no evidence either way).
    """
    s = np.asarray(strength, dtype=np.float64)
    df = np.asarray(doc_freq, dtype=np.float64)
    if len(s) == 0:
        return np.ones(0)
    if fit == "poisson":
        scale = np.exp(s - s.max())             # shifted: the ratio below does not depend on it
        beta = float(np.median((df + 0.5) / scale))
        return np.where(df > 0, 1.0, np.exp(-beta * scale))
    held = df > 0
    if held.sum() < n_min_held:
        return np.ones(len(s))
    x = s - s.max()
    a, b, r = _truncated_negative_binomial_fit(x[held], df[held])
    mu = np.exp(a + b * x)
    p_zero = np.exp(r * (np.log(r) - np.log(r + mu)))
    return np.where(held, 1.0, p_zero)


def _truncated_negative_binomial_fit(x: np.ndarray, k: np.ndarray) -> tuple[float, float, float]:
    """``(a, b, r)`` maximizing the zero-truncated negative binomial likelihood of counts
    ``k >= 1`` with mean ``exp(a + b x)`` and size ``r``; ``b`` in [0, 1.25], ``r`` in
    [0.05, 1e4]."""
    from scipy.optimize import minimize
    from scipy.special import gammaln

    def nll(theta: np.ndarray) -> float:
        a, b, log_r = theta
        r = math.exp(log_r)
        mu = np.exp(np.clip(a + b * x, -30, 30))
        log_p0 = r * (np.log(r) - np.log(r + mu))
        log_pk = (gammaln(k + r) - gammaln(r) - gammaln(k + 1) + r * (np.log(r) - np.log(r + mu))
                  + k * (np.log(mu) - np.log(r + mu)))
        return -float(np.sum(log_pk - np.log(np.maximum(-np.expm1(log_p0), 1e-300))))

    a0 = math.log(max(float(k.mean()), 1.0))
    best = None
    for b0, log_r0 in ((0.5, 0.0), (1.0, 4.0), (0.0, -1.0)):
        res = minimize(nll, np.array([a0, b0, log_r0]), method="L-BFGS-B",
                       bounds=[(-20.0, 20.0), (0.0, 1.25), (math.log(0.05), math.log(1e4))])
        if best is None or res.fun < best.fun:
            best = res
    assert best is not None
    a, b, log_r = best.x
    return float(a), float(b), float(math.exp(log_r))

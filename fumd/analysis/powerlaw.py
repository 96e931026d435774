"""Discrete power-law fits of avalanche sizes (Clauset, Shalizi & Newman 2009) and the
criticality index ``|tau - 3/2|`` (seed 002 §5.C.3).

scipy is imported inside the functions, not at the top: the daemon starts without scipy.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PowerLawFit:
    tau: float  # exponent alpha of p(x) ~ x^-alpha, x >= x_min
    x_min: int
    ks: float  # KS distance of the tail to the fitted model
    n_tail: int
    sigma: float  # asymptotic standard error (alpha - 1) / sqrt(n_tail)  (Clauset et al. eq. 3.2)
    loglik_ratio_exp: float  # normalised log-likelihood ratio power law vs. discrete exponential (Vuong)


def _fit_alpha(n: float, sum_log: float, x_min: int, lo: float = 1.0 + 1e-6, hi: float = 8.0) -> float:
    """Discrete power-law MLE for a given x_min (Clauset, Shalizi & Newman 2009, eq. 3.5)::

        L(alpha) = -n ln zeta(alpha, x_min) - alpha * sum_i ln x_i,   maximised numerically

    (``zeta(alpha, q)`` is the Hurwitz zeta function). No closed form; the approximation
    ``1 + n / sum ln(x_i / (x_min - 1/2))`` is only good for x_min >~ 6, so it is not used.
    """
    from scipy.optimize import minimize_scalar  # here, not at the top: the daemon starts without scipy
    from scipy.special import zeta

    def nll(alpha: float) -> float:
        return n * math.log(zeta(alpha, x_min)) + alpha * sum_log

    res = minimize_scalar(nll, bounds=(lo, hi), method="bounded", options={"xatol": 1e-5})
    return float(res.x)


def fit_discrete_power_law(sizes: np.ndarray, min_tail: int = 50, max_candidates: int = 100,
                           min_tail_fraction: float = 0.0) -> PowerLawFit | None:
    """Fit ``p(x) = x^-tau / zeta(tau, x_min)`` for integer ``x >= x_min`` (Clauset et al. 2009, §3).

    For every candidate ``x_min`` (the smallest distinct values, keeping at least ``min_tail``
    samples, and at least ``min_tail_fraction`` of them, in the tail; at most ``max_candidates``
    candidates) ``tau`` is the discrete MLE and the
    KS distance ``D = max_x |S(x) - P(x)|`` between the tail's empirical CDF ``S`` and the model CDF
    ``P(x) = 1 - zeta(tau, x + 1) / zeta(tau, x_min)`` is computed; the ``x_min`` with the smallest
    ``D`` wins. Returns None when fewer than ``min_tail`` positive samples are given.

    Also returned: Vuong's normalised log-likelihood ratio against a discrete exponential
    (geometric) tail on the same ``x >= x_min``; positive favours the power law (Clauset et al.
    §5). An inhomogeneous Poisson process can mimic a power law, so the ratio is reported with tau.
    """
    from scipy.special import zeta  # here, not at the top: the daemon starts without scipy

    x = np.asarray(sizes, dtype=np.int64)
    x = x[x >= 1]
    if x.size < min_tail:
        return None
    values, counts = np.unique(x, return_counts=True)
    logs = np.log(values.astype(np.float64))
    # tail statistics for x_min = values[k]: n_k = sum counts[k:], S_k = sum counts[k:] * log values[k:]
    n_tail = np.cumsum(counts[::-1])[::-1].astype(np.float64)
    s_tail = np.cumsum((counts * logs)[::-1])[::-1]
    candidates = np.nonzero(n_tail >= max(min_tail, min_tail_fraction * x.size))[0][:max_candidates]
    best: tuple[float, int, float] | None = None
    for k in candidates:
        x_min = int(values[k])
        alpha = _fit_alpha(float(n_tail[k]), float(s_tail[k]), x_min)
        v = values[k:].astype(np.float64)
        model_cdf = 1.0 - zeta(alpha, v + 1.0) / zeta(alpha, float(x_min))
        emp_cdf = np.cumsum(counts[k:]) / n_tail[k]
        d = float(np.max(np.abs(emp_cdf - model_cdf)))
        if best is None or d < best[0]:
            best = (d, int(k), alpha)
    assert best is not None
    d, k, alpha = best
    x_min = int(values[k])
    tail = x[x >= x_min].astype(np.float64)
    n = tail.size
    # Vuong test vs geometric p(x) = (1 - q) q^(x - x_min): q = m / (1 + m), m = mean(x - x_min)
    m = float(np.mean(tail - x_min))
    if m > 0:
        q = m / (1.0 + m)
        l_exp = math.log(1.0 - q) + (tail - x_min) * math.log(q)
    else:  # all samples equal x_min: the exponential is a point mass
        l_exp = np.zeros_like(tail)
    l_pl = -alpha * np.log(tail) - math.log(zeta(alpha, x_min))
    diff = l_pl - l_exp
    sd = float(np.std(diff))
    ratio = float(diff.sum() / (math.sqrt(n) * sd)) if sd > 0 else 0.0
    return PowerLawFit(tau=alpha, x_min=x_min, ks=d, n_tail=int(n), sigma=(alpha - 1.0) / math.sqrt(n),
                       loglik_ratio_exp=ratio)


def criticality_index(tau: float, target: float = 1.5) -> float:
    """``|tau - 1.5|`` (seed 002 §5.C.3): distance of the avalanche-size exponent from the mean-field
    critical branching value 3/2 (Beggs & Plenz 2003)."""
    return abs(tau - target)

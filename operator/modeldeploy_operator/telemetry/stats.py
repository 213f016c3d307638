"""Statistics over binned counts: how far a window of live traffic is from the reference.

Drift detection and canary analysis both compare counts in fixed bins (the reference
profile's bins, Prometheus ``le`` buckets) with reference shares. This module holds the
arithmetic they share, and nothing else: PSI, Jensen-Shannon distance, the chi-square
test (with its survival function written out, so the operator needs numpy only), the
noise floor that keeps small windows from alarming, and quantiles from histogram buckets.

Smoothing. Every bin gets half a pseudo-row (``PSEUDOCOUNT``, the Jeffreys prior) on both
sides before shares are compared, so an empty bin never gives ``log(0)`` or a division by
zero. The reference side is smoothed at its own size, ``proportions * reference_rows``.

Calibration (the noise floor). A window drawn from the reference distribution is not a
copy of it: with ``n`` window rows, ``m`` reference rows and ``K`` bins, ``PSI`` (the
symmetric Kullback-Leibler divergence) is to second order ``sum (q - p)^2 / p``, so
``PSI / (1/n + 1/m)`` follows a chi-square distribution with ``K - 1`` degrees of freedom.
``noise_floor`` is the ``1 - alpha`` quantile of that distribution, scaled back to PSI;
Jensen-Shannon divergence is an eighth of it, and the distance its square root. The
threshold applied is ``max(threshold, noise_floor)``: the configured threshold (an effect
size, PSI 0.2 by default) once the window is large, the floor while it is small. See
docs/drift.md.

Pure: numpy and the standard library only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
Method = Literal["psi", "jensen-shannon", "chi-square"]
METHODS: tuple[Method, ...] = ("psi", "jensen-shannon", "chi-square")

PSEUDOCOUNT = 0.5  # rows added to every bin on both sides before comparing shares


@dataclass(frozen=True)
class ChiSquare:
    statistic: float
    dof: int
    p_value: float


def _counts(values: npt.ArrayLike, name: str) -> FloatArray:
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    # (array >= 0) is False for NaN; the sum is finite only when every count is
    if array.size == 0 or not (array >= 0).all() or not math.isfinite(array.sum()):
        raise ValueError(f"{name}: expected finite counts of 0 or more in at least one bin, got {array.tolist()}")
    return array


def _smoothed(array: FloatArray, pseudocount: float) -> FloatArray:
    smoothed: FloatArray = array + pseudocount
    shares: FloatArray = smoothed / smoothed.sum()
    return shares


def smoothed_shares(counts: npt.ArrayLike, pseudocount: float = PSEUDOCOUNT) -> FloatArray:
    """Shares of each bin after adding ``pseudocount`` rows to every bin: never 0."""
    return _smoothed(_counts(counts, "counts"), pseudocount)


def _pair(window: npt.ArrayLike, reference: npt.ArrayLike, reference_rows: float) -> tuple[FloatArray, FloatArray]:
    q = _counts(window, "window")
    p = _counts(reference, "reference")
    if q.size != p.size:
        raise ValueError(f"window has {q.size} bins but the reference has {p.size}")
    if reference_rows <= 0:
        raise ValueError(f"reference_rows: expected more than 0, got {reference_rows}")
    return _smoothed(q, PSEUDOCOUNT), _smoothed(p / p.sum() * reference_rows, PSEUDOCOUNT)


def psi(window: npt.ArrayLike, reference: npt.ArrayLike, reference_rows: float) -> float:
    """Population stability index of window counts against reference shares, smoothed.

    ``sum((q - p) * ln(q / p))``: 0 for identical shares, < 0.1 stable, > 0.2 a large shift
    by the usual convention (but see noise_floor for small windows).
    """
    q, p = _pair(window, reference, reference_rows)
    return _clean(float(np.sum((q - p) * np.log(q / p))))


def jensen_shannon(window: npt.ArrayLike, reference: npt.ArrayLike, reference_rows: float) -> float:
    """Jensen-Shannon distance (natural log, so between 0 and sqrt(ln 2)), smoothed."""
    q, p = _pair(window, reference, reference_rows)
    middle = (q + p) / 2
    divergence = 0.5 * float(np.sum(q * np.log(q / middle))) + 0.5 * float(np.sum(p * np.log(p / middle)))
    return math.sqrt(_clean(divergence))


def _clean(value: float) -> float:
    """0 for the rounding noise left by identical shares (1e-33 is no drift, and no signal)."""
    return value if value > 1e-12 else 0.0


def chi_square(window: npt.ArrayLike, reference: npt.ArrayLike, reference_rows: float | None = None) -> ChiSquare:
    """Chi-square test of window counts against the reference; no continuity correction.

    With ``reference_rows`` (the profile's rows), a test of homogeneity on the 2 x K table
    of reference counts and window counts: both are samples. Without it, goodness of fit to
    exact reference shares; a bin the reference never saw gets the share of half a row of
    the window, so the statistic stays finite. Bins empty on both sides are left out.
    """
    q = _counts(window, "window")
    p = _counts(reference, "reference")
    if q.size != p.size:
        raise ValueError(f"window has {q.size} bins but the reference has {p.size}")
    n = q.sum()
    if n == 0:
        return ChiSquare(0.0, 0, 1.0)
    if reference_rows is not None:
        table = np.vstack([p / p.sum() * reference_rows, q])
        table = table[:, table.sum(axis=0) > 0]
        expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / table.sum()
        dof = table.shape[1] - 1
        statistic = float(np.sum((table - expected) ** 2 / expected)) if dof > 0 else 0.0
    else:
        shares = p / p.sum()
        seen = (shares > 0) | (q > 0)
        shares, q = shares[seen], q[seen]
        if np.any(shares == 0):
            shares = np.where(shares == 0, PSEUDOCOUNT / n, shares)
            shares = shares / shares.sum()
        expected = shares * n
        dof = q.size - 1
        statistic = float(np.sum((q - expected) ** 2 / expected)) if dof > 0 else 0.0
    return ChiSquare(statistic, dof, chi2_sf(statistic, dof) if dof > 0 else 1.0)


def chi2_sf(x: float, dof: int) -> float:
    """P(X > x) for X ~ chi-square(dof): the regularized upper incomplete gamma Q(dof/2, x/2)."""
    if dof < 1:
        raise ValueError(f"dof: expected 1 or more, got {dof}")
    if x / 2.0 <= 0:  # 0, or so small that half of it underflows
        return 1.0
    if math.isinf(x):
        return 0.0
    return _gamma_q(dof / 2.0, x / 2.0)


def _gamma_q(a: float, x: float) -> float:
    """Upper regularized incomplete gamma: a series below a + 1, a continued fraction above."""
    log_prefix = a * math.log(x) - x - math.lgamma(a)
    if x < a + 1.0:
        term = total = 1.0 / a
        denominator = a
        for _ in range(1000):
            denominator += 1.0
            term *= x / denominator
            total += term
            if abs(term) < abs(total) * 1e-16:
                break
        return max(0.0, 1.0 - total * math.exp(log_prefix))
    # Lentz's method for the continued fraction of Q(a, x).
    tiny = 1e-300
    b = x + 1.0 - a
    c = 1.0 / tiny
    d = 1.0 / b
    h = d
    for i in range(1, 1000):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1.0 / d
        step = d * c
        h *= step
        if abs(step - 1.0) < 1e-16:
            break
    return min(1.0, math.exp(log_prefix) * h)


@lru_cache(maxsize=1024)
def chi2_quantile(alpha: float, dof: int) -> float:
    """The x with P(X > x) = alpha for X ~ chi-square(dof), by bisection on chi2_sf."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha: expected a probability between 0 and 1, got {alpha}")
    low, high = 0.0, float(dof) + 10.0
    while chi2_sf(high, dof) > alpha:
        low, high = high, high * 2
    for _ in range(200):
        middle = (low + high) / 2
        if chi2_sf(middle, dof) > alpha:
            low = middle
        else:
            high = middle
        if high - low < 1e-10 * high:
            break
    return (low + high) / 2


def bonferroni(alpha: float, tests: int) -> float:
    """The per-test level that keeps the chance of any false alarm among ``tests`` under alpha."""
    return alpha / max(tests, 1)


def noise_floor(method: Method, bins: int, samples: float, reference_rows: float, alpha: float) -> float:
    """The score an unshifted window exceeds with probability about ``alpha``.

    ``bins`` counts the bins in play (at least 2), ``samples`` the window's rows. For PSI,
    ``chi2_quantile(alpha, bins - 1) * (1/samples + 1/reference_rows)``; Jensen-Shannon
    distance is the square root of an eighth of that. Chi-square has no floor (0): its
    p-value is already calibrated.
    """
    if method == "chi-square":
        return 0.0
    if samples <= 0 or reference_rows <= 0:
        raise ValueError(f"samples and reference_rows: expected more than 0, got {samples} and {reference_rows}")
    spread = chi2_quantile(alpha, max(bins - 1, 1)) * (1.0 / samples + 1.0 / reference_rows)
    return spread if method == "psi" else math.sqrt(spread / 8.0)


def histogram_quantile(quantile: float, bounds: list[float], cumulative: list[float]) -> float | None:
    """A quantile from Prometheus histogram buckets, interpolated as PromQL does.

    ``bounds`` are the ``le`` values in increasing order, the last ``+inf``; ``cumulative``
    the bucket counts (each counts everything at or below its bound). Within a bucket the
    quantile is interpolated linearly, from 0 in the first bucket when its bound is
    positive; a quantile in the ``+inf`` bucket is the highest finite bound. None when the
    histogram counts nothing (no traffic is not a latency).
    """
    if not 0 <= quantile <= 1:
        raise ValueError(f"quantile: expected a number between 0 and 1, got {quantile}")
    if len(bounds) != len(cumulative) or len(bounds) < 2 or not math.isinf(bounds[-1]):
        raise ValueError("bounds and cumulative: expected the same number of buckets, ending with +Inf")
    total = cumulative[-1]
    if total <= 0:
        return None
    rank = quantile * total
    index = next(i for i, count in enumerate(cumulative) if count >= rank)
    if index == len(bounds) - 1:
        return bounds[-2]
    lower = 0.0 if index == 0 else bounds[index - 1]
    if index == 0 and bounds[0] <= 0:
        return bounds[0]
    below = 0.0 if index == 0 else cumulative[index - 1]
    in_bucket = cumulative[index] - below
    if in_bucket <= 0:
        return bounds[index]
    return lower + (bounds[index] - lower) * (rank - below) / in_bucket

"""Prediction-powered inference for means: humans only, simulated only, and PPI++ side by side.

A small labelled sample (humans with their simulated twins) rectifies the bias of a large
unlabelled one (twins whose humans are not used): the PPI++ estimate of a mean is

    theta = lambda * mean(Yhat_unlabelled) + mean(Y - lambda * Yhat)        (Angelopoulos, Duchi &
                                                                            Zrnic 2024, PPI++)

unbiased whatever the simulation's bias, with a CLT interval; lambda (tuned from the data,
clipped to [0, 1]) makes it never worse than the humans alone asymptotically: lambda = 0 is the
classical estimate. The estimators and intervals are `ppi_py`'s (PyPI `ppi-python`); this module
adds what the package does not return: the tuned lambda (the same formula `ppi_py` uses inside,
`_calc_lam_glm` with an identity Hessian; tests/test_inference.py checks the intervals agree),
the effective sample size, the PPI correlation and a power helper. Pure functions on arrays.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.stats import norm

DEFAULT_ALPHA = 0.1  # 90% intervals, as the PPI papers report them


@dataclass(frozen=True)
class Estimate:
    """One estimator's answer: the estimate, its (1 - alpha) interval and what it used, or why not.

    `n` counts humans (classical, PPI++) or simulated participants (naive); `n_unlabelled` the
    simulated participants PPI++ used without their humans. `n_effective` is how many humans
    alone would give the same variance (n * var_classical / var); `correlation` is the PPI
    correlation corr(Y, Yhat) on the labelled sample."""

    estimate: float | None
    low: float | None
    high: float | None
    se: float | None
    n: int
    n_unlabelled: int | None = None
    lam: float | None = None
    n_effective: float | None = None
    correlation: float | None = None
    not_estimable: str | None = None

    @property
    def estimable(self) -> bool:
        """Whether the estimator produced a value."""
        return self.not_estimable is None

    @property
    def width(self) -> float | None:
        """Width of the interval."""
        return None if self.low is None or self.high is None else self.high - self.low

    def to_json(self) -> dict[str, Any]:
        """The report.json cell (docs/report-schema.md, `inference`)."""
        cell = {k: _finite(v) for k, v in asdict(self).items()}
        low, high = cell.pop("low"), cell.pop("high")
        cell["ci"] = None if low is None or high is None else [low, high]
        cell["lambda"] = cell.pop("lam")
        return cell


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity: such a number is reported as null."""
    if isinstance(value, float | np.floating):
        return round(float(value), 12) if math.isfinite(value) else None
    return value


def not_estimable(reason: str, n: int = 0, n_unlabelled: int | None = None) -> Estimate:
    """An estimate that could not be made, with the reason."""
    return Estimate(None, None, None, None, n, n_unlabelled, not_estimable=f"not estimable: {reason}")


def z_value(alpha: float) -> float:
    """The two-sided normal quantile of a (1 - alpha) interval."""
    return float(norm.ppf(1 - alpha / 2))


def _from_interval(point: float, low: float, high: float, alpha: float, **fields: Any) -> Estimate:
    se = (high - low) / (2 * z_value(alpha))
    return Estimate(float(point), float(low), float(high), float(se), **fields)


def classical_mean(y: np.ndarray, alpha: float = DEFAULT_ALPHA) -> Estimate:
    """The mean of the humans alone (CLT interval, ppi_py.classical_mean_ci)."""
    import ppi_py

    y = np.asarray(y, float)
    if len(y) < 2:
        return not_estimable(f"{len(y)} human(s) (need at least 2)", len(y))
    low, high = ppi_py.classical_mean_ci(y, alpha=alpha)
    return _from_interval(y.mean(), float(low), float(high), alpha, n=len(y),
                          n_effective=float(len(y)))


def naive_mean(yhat: np.ndarray, alpha: float = DEFAULT_ALPHA) -> Estimate:
    """The mean of the simulated participants alone, as if they were people: its interval covers
    the simulation's mean, not the humans' (the estimator PPI exists to correct)."""
    import ppi_py

    yhat = np.asarray(yhat, float)
    if len(yhat) < 2:
        return not_estimable(f"{len(yhat)} simulated participant(s) (need at least 2)", len(yhat))
    low, high = ppi_py.classical_mean_ci(yhat, alpha=alpha)
    return _from_interval(yhat.mean(), float(low), float(high), alpha, n=len(yhat))


def tuned_lambda(y: np.ndarray, yhat: np.ndarray, yhat_unlabelled: np.ndarray) -> float:
    """PPI++'s variance-minimising lambda for a mean, clipped to [0, 1]:
    2 Cov(Y, Yhat) / (2 (1 + n/N) Var(Yhat over labelled and unlabelled)), as ppi_py computes it.
    A constant simulation (no variance) gives 0: the classical estimate."""
    n, big_n = len(y), len(yhat_unlabelled)
    centred_y, centred_hat = y - y.mean(), yhat - yhat.mean()
    covariance = 2 * float(centred_y @ centred_hat) / n
    variance = float(np.var(np.concatenate([yhat, yhat_unlabelled]), ddof=1))
    if not np.isfinite(variance) or variance <= 0:
        return 0.0
    return float(np.clip(covariance / (2 * (1 + n / big_n) * variance), 0.0, 1.0))


def correlation(y: np.ndarray, yhat: np.ndarray) -> float | None:
    """corr(Y, Yhat) on the labelled sample; None when either is constant."""
    if len(y) < 2 or np.std(y) == 0 or np.std(yhat) == 0:
        return None
    return float(np.corrcoef(y, yhat)[0, 1])


def ppi_mean(y: np.ndarray, yhat: np.ndarray, yhat_unlabelled: np.ndarray,
             alpha: float = DEFAULT_ALPHA) -> Estimate:
    """PPI++ estimate of the human mean from labelled pairs (y, yhat) and unlabelled predictions."""
    import ppi_py

    y, yhat = np.asarray(y, float), np.asarray(yhat, float)
    yhat_unlabelled = np.asarray(yhat_unlabelled, float)
    n, big_n = len(y), len(yhat_unlabelled)
    if n < 2:
        return not_estimable(f"{n} labelled human(s) (need at least 2)", n, big_n)
    if big_n < 2:
        return not_estimable(f"{big_n} unlabelled simulated participant(s) (need at least 2)",
                             n, big_n)
    lam = tuned_lambda(y, yhat, yhat_unlabelled)
    point = float(np.ravel(ppi_py.ppi_mean_pointestimate(y, yhat, yhat_unlabelled, lam=lam))[0])
    low, high = (float(np.ravel(b)[0]) for b in
                 ppi_py.ppi_mean_ci(y, yhat, yhat_unlabelled, alpha=alpha, lam=lam))
    se = (high - low) / (2 * z_value(alpha))
    classical_se = float(np.std(y) / math.sqrt(n))  # ppi_py's (ddof 0), so the ratio is exact
    effective = n * (classical_se / se) ** 2 if se > 0 else None
    return Estimate(point, low, high, se, n, big_n, lam, effective, correlation(y, yhat))


def difference(a: Estimate, b: Estimate, alpha: float = DEFAULT_ALPHA) -> Estimate:
    """b - a for estimates from disjoint participants (independent): variances add.

    Carries the total human count, the mean effective-n ratio and both lambdas' mean."""
    if not a.estimable or not b.estimable:
        return not_estimable((a.not_estimable or b.not_estimable or "").removeprefix(
            "not estimable: "), a.n + b.n)
    se = math.hypot(a.se or 0.0, b.se or 0.0)
    point = (b.estimate or 0.0) - (a.estimate or 0.0)
    z = z_value(alpha)
    unlabelled = (None if a.n_unlabelled is None or b.n_unlabelled is None
                  else a.n_unlabelled + b.n_unlabelled)
    lam = None if a.lam is None or b.lam is None else (a.lam + b.lam) / 2
    effective = None
    if a.n_effective is not None and b.n_effective is not None:
        effective = a.n_effective + b.n_effective
    return Estimate(point, point - z * se, point + z * se, se, a.n + b.n, unlabelled, lam,
                    effective, None)


def ppi_variance_factor(rho: float, n: int, big_n: float) -> float:
    """Var(PPI++) / Var(classical) at the optimal lambda: 1 - rho^2 N / (n + N) (N may be inf)."""
    share = 1.0 if math.isinf(big_n) else big_n / (n + big_n)
    return max(1.0 - rho ** 2 * share, 0.0)


def humans_needed(sd: float, width: float, alpha: float = DEFAULT_ALPHA,
                  rho: float | None = None, unlabelled: float = math.inf) -> int | None:
    """Humans needed for a (1 - alpha) interval of total `width` on a mean whose human standard
    deviation is `sd`: without the simulation (rho None) n = (2 z sd / width)^2; with it, the
    smallest n whose PPI++ variance sd^2 (1 - rho^2 N/(n + N)) / n fits, N unlabelled simulated
    participants (default: as many as wanted). None when width or sd is not positive."""
    if width <= 0 or sd <= 0 or not math.isfinite(sd):
        return None
    target = (width / (2 * z_value(alpha))) ** 2  # the variance the interval allows

    def fits(n: int) -> bool:
        factor = 1.0 if rho is None else ppi_variance_factor(rho, n, unlabelled)
        return sd ** 2 * factor / n <= target

    high = 2
    while not fits(high):
        high *= 2
        if high > 10 ** 12:
            return None
    low = max(high // 2, 1)
    while low < high:  # smallest n that fits (fits is monotone in n)
        middle = (low + high) // 2
        if fits(middle):
            high = middle
        else:
            low = middle + 1
    return max(low, 2)


def power_row(y: np.ndarray, yhat: np.ndarray, width: float, alpha: float,
              unlabelled: int) -> dict[str, Any]:
    """Humans needed for `width` on one mean, without and with the simulation, from the
    labelled sample's standard deviation and PPI correlation (with `unlabelled` simulated
    participants, and with unlimited ones)."""
    sd = float(np.std(y, ddof=1)) if len(y) > 1 else float("nan")
    rho = correlation(np.asarray(y, float), np.asarray(yhat, float))
    useful = max(rho or 0.0, 0.0)  # lambda is clipped to [0, 1]: a negative rho buys nothing
    return {"target_width": width, "sd": sd if math.isfinite(sd) else None, "correlation": rho,
            "humans_only": humans_needed(sd, width, alpha),
            "with_simulation": humans_needed(sd, width, alpha, useful, unlabelled),
            "with_unlimited_simulation": humans_needed(sd, width, alpha, useful),
            "unlabelled": unlabelled}

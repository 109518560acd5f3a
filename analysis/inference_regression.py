"""Prediction-powered inference for the scenario's regressions (OLS and logit coefficients).

PPI++ for an M-estimator (Angelopoulos, Duchi & Zrnic 2024): the coefficients minimise

    lambda * L_unlabelled(theta; simulated) + L_labelled(theta; human) - lambda * L_labelled(theta;
    simulated twin)

whose gradient is unbiased for the human loss's whatever the simulation's bias. Written here,
not called from `ppi_py`, for two reasons stated in docs/inference.md: (1) a regressor may itself
be a survey answer (the flagship's `believes_north`), which the unlabelled participants have only
as simulated, so the simulated loss needs its own design matrix, while `ppi_py.ppi_ols_ci` /
`ppi_logistic_ci` take one X for the human and the predicted labels; (2) rows are participant x
round, so the variance is cluster-robust by participant (ppi_py assumes independent rows). With
one row per participant and the same X, the point estimate is exactly ppi_py's and the interval
agrees with it to sampling order (tests/test_inference.py). The variance is the sandwich
H^-1 [lambda^2 V_u / N + V(g - lambda g_hat) / n] H^-1 with per-participant score sums, the
Hessian rectified like the loss; lambda minimises its trace (ppi_py's `_calc_lam_glm` formula).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import expit

from analysis.inference import Estimate, not_estimable, z_value

FAMILIES = ("ols", "logit")
MAX_NEWTON = 100
SEPARATION_LIMIT = 30.0  # |logit coefficient| beyond this: no finite maximum (separation)


@dataclass(frozen=True)
class Part:
    """One sample's rows: design X, outcome y and each row's cluster (participant) index."""

    x: np.ndarray
    y: np.ndarray
    cluster: np.ndarray
    clusters: int

    def sums(self, per_row: np.ndarray) -> np.ndarray:
        """Per-cluster sums of per-row vectors (clusters x d)."""
        out = np.zeros((self.clusters, per_row.shape[1]))
        np.add.at(out, self.cluster, per_row)
        return out


def part(x: np.ndarray, y: np.ndarray, cluster_ids: np.ndarray,
         order: list[str] | None = None) -> Part:
    """A Part with clusters numbered in `order` (the labelled humans' order, so a human and its
    twin share the index) or in order of appearance."""
    names = list(dict.fromkeys(cluster_ids.tolist())) if order is None else order
    index = {name: i for i, name in enumerate(names)}
    return Part(np.asarray(x, float), np.asarray(y, float),
                np.array([index[c] for c in cluster_ids], dtype=np.int64), len(names))


def _mean(family: str, x: np.ndarray, theta: np.ndarray) -> np.ndarray:
    eta = x @ theta
    return eta if family == "ols" else expit(eta)


def loss(family: str, p: Part, theta: np.ndarray) -> float:
    """Sum of per-row losses over clusters' count (the M-estimator's objective for one sample)."""
    eta = p.x @ theta
    if family == "ols":
        return float(0.5 * np.sum((eta - p.y) ** 2) / p.clusters)
    return float(np.sum(np.logaddexp(0.0, eta) - p.y * eta) / p.clusters)


def scores(family: str, p: Part, theta: np.ndarray) -> np.ndarray:
    """Per-cluster score sums (clusters x d): sum over a participant's rows of x (mu - y)."""
    return p.sums(p.x * (_mean(family, p.x, theta) - p.y)[:, None])


def hessian(family: str, p: Part, theta: np.ndarray) -> np.ndarray:
    """Mean over clusters of the per-cluster Hessian sums."""
    if family == "ols":
        weights = np.ones(len(p.y))
    else:
        mu = expit(p.x @ theta)
        weights = mu * (1 - mu)
    return (p.x * weights[:, None]).T @ p.x / p.clusters


def _objective(family: str, parts: list[tuple[float, Part]], theta: np.ndarray
               ) -> tuple[float, np.ndarray, np.ndarray]:
    value = sum(w * loss(family, p, theta) for w, p in parts)
    grad = sum(w * scores(family, p, theta).sum(0) / p.clusters for w, p in parts)
    hess = sum(w * hessian(family, p, theta) for w, p in parts)
    return value, np.asarray(grad), np.asarray(hess)


def minimise(family: str, parts: list[tuple[float, Part]], start: np.ndarray) -> np.ndarray | None:
    """Damped Newton on sum(weight * loss); None when it does not converge to a finite minimum."""
    theta = start.copy()
    for _ in range(MAX_NEWTON):
        value, grad, hess = _objective(family, parts, theta)
        try:
            step = np.linalg.solve(hess, grad)
        except np.linalg.LinAlgError:
            return None
        size = 1.0
        while size > 1e-8:  # halve the step until the objective does not rise
            candidate = theta - size * step
            if _objective(family, parts, candidate)[0] <= value + 1e-12:
                break
            size /= 2
        theta = candidate
        if np.max(np.abs(size * step)) < 1e-10:
            break
    else:
        return None
    if not np.all(np.isfinite(theta)) or (family == "logit"
                                          and np.max(np.abs(theta)) > SEPARATION_LIMIT):
        return None
    return theta


def _positive_definite(matrix: np.ndarray) -> bool:
    return bool(np.all(np.isfinite(matrix))) and bool(np.all(np.linalg.eigvalsh(
        (matrix + matrix.T) / 2) > 1e-12))


def _cells(theta: np.ndarray, covariance: np.ndarray, alpha: float, n: int,
           n_unlabelled: int | None = None, lam: float | None = None,
           effective: np.ndarray | None = None,
           correlations: list[float | None] | None = None) -> list[Estimate]:
    z, out = z_value(alpha), []
    for j, value in enumerate(theta):
        se = math.sqrt(max(covariance[j, j], 0.0))
        out.append(Estimate(float(value), float(value - z * se), float(value + z * se), se, n,
                            n_unlabelled, lam,
                            None if effective is None else float(effective[j]),
                            None if correlations is None else correlations[j]))
    return out


def _rank_problem(p: Part, what: str) -> str | None:
    if p.clusters < 2:
        return f"{p.clusters} {what} participant(s) (need at least 2)"
    if len(p.y) <= p.x.shape[1] or np.linalg.matrix_rank(p.x) < p.x.shape[1]:
        return f"singular design among the {what} rows (collinear or constant terms)"
    return None


def sandwich(family: str, p: Part, theta: np.ndarray) -> np.ndarray:
    """Cluster-robust covariance of an ordinary M-estimate on one sample."""
    bread = np.linalg.inv(hessian(family, p, theta))
    meat = np.cov(scores(family, p, theta).T).reshape(len(theta), len(theta))
    return bread @ meat @ bread / p.clusters


def single_sample(family: str, p: Part, alpha: float, what: str) -> list[Estimate] | str:
    """Coefficients of one sample alone (classical on humans, naive on simulated), or why not."""
    problem = _rank_problem(p, what)
    if problem:
        return problem
    theta = minimise(family, [(1.0, p)], np.zeros(p.x.shape[1]))
    if theta is None:
        return "no finite maximum likelihood (perfect separation or no convergence)"
    covariance = sandwich(family, p, theta)
    if not np.all(np.isfinite(covariance)):
        return "standard errors not finite (singular covariance)"
    # Humans alone are their own effective sample; simulated participants are not humans.
    effective = np.full(len(theta), p.clusters) if what.endswith("human") else None
    return _cells(theta, covariance, alpha, p.clusters, effective=effective)


def _ppi_parts(lam: float, human: Part, twin: Part, unlabelled: Part) -> list[tuple[float, Part]]:
    return [(lam, unlabelled), (1.0, human), (-lam, twin)]


def _tuned_lambda(family: str, human: Part, twin: Part, unlabelled: Part,
                  theta: np.ndarray, bread: np.ndarray) -> float:
    """ppi_py's `_calc_lam_glm` (overall mode, clipped) on per-participant score sums."""
    g, g_hat, g_un = (scores(family, p, theta) for p in (human, twin, unlabelled))
    n, big_n = human.clusters, unlabelled.clusters
    gc, hc = g - g.mean(0), g_hat - g_hat.mean(0)
    cross = (gc.T @ hc + hc.T @ gc) / n
    pooled = np.cov(np.concatenate([g_hat, g_un]).T).reshape(len(theta), len(theta))
    numerator = float(np.trace(bread @ cross @ bread))
    denominator = float(2 * (1 + n / big_n) * np.trace(bread @ pooled @ bread))
    if not math.isfinite(denominator) or denominator <= 0:
        return 0.0
    return float(np.clip(numerator / denominator, 0.0, 1.0))


def ppi_coefficients(family: str, human: Part, twin: Part, unlabelled: Part,
                     alpha: float, lam: float | None = None) -> list[Estimate] | str:
    """PPI++ coefficients from labelled humans, their twins (same cluster numbering) and unlabelled
    simulated participants; lambda tuned unless given. A reason string when not estimable."""
    for p, what in ((human, "labelled human"), (unlabelled, "unlabelled simulated")):
        problem = _rank_problem(p, what)
        if problem:
            return problem
    d = human.x.shape[1]
    start = minimise(family, [(1.0, human)], np.zeros(d))
    if start is None:
        return "no finite maximum likelihood among the labelled humans (perfect separation?)"
    if lam is None:
        first = minimise(family, _ppi_parts(1.0, human, twin, unlabelled), start)
        at = first if first is not None else start
        rectified = _objective(family, _ppi_parts(1.0, human, twin, unlabelled), at)[2]
        bread = rectified if _positive_definite(rectified) else hessian(family, human, at)
        lam = _tuned_lambda(family, human, twin, unlabelled, at, np.linalg.inv(bread))
    theta = minimise(family, _ppi_parts(lam, human, twin, unlabelled), start)
    if theta is None:
        return "the PPI++ objective has no finite minimum (no convergence)"
    curvature = _objective(family, _ppi_parts(lam, human, twin, unlabelled), theta)[2]
    if not _positive_definite(curvature):
        return "the rectified Hessian is not positive definite (too few labelled humans)"
    bread = np.linalg.inv(curvature)
    g, g_hat, g_un = (scores(family, p, theta) for p in (human, twin, unlabelled))
    n, big_n = human.clusters, unlabelled.clusters
    rectifier = np.cov((g - lam * g_hat).T).reshape(d, d)
    imputed = np.cov(g_un.T).reshape(d, d) * lam ** 2
    covariance = bread @ (rectifier / n + imputed / big_n) @ bread
    classical = bread @ np.cov(g.T).reshape(d, d) @ bread / n
    with np.errstate(all="ignore"):
        effective = n * np.diag(classical) / np.diag(covariance)
    influence, influence_hat = g @ bread, g_hat @ bread
    correlations = [_corr(influence[:, j], influence_hat[:, j]) for j in range(d)]
    return _cells(theta, covariance, alpha, n, big_n, lam, effective, correlations)


def _corr(a: np.ndarray, b: np.ndarray) -> float | None:
    if np.std(a) == 0 or np.std(b) == 0:
        return None
    return float(np.corrcoef(a, b)[0, 1])


def as_estimates(result: list[Estimate] | str, d: int, n: int,
                 n_unlabelled: int | None = None) -> list[Estimate]:
    """A result as d cells: the estimates, or d not-estimable cells carrying the reason."""
    if isinstance(result, str):
        return [not_estimable(result, n, n_unlabelled) for _ in range(d)]
    return result

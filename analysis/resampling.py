"""Cluster bootstrap draws and human split halves, vectorised with numpy.

Participants are the clusters: a draw re-weights whole participants (all their rounds), so the
within-participant correlation across rounds is kept. A draw is a (B, n) matrix of how often each
participant was drawn; statistics then come from one matrix product `weights @ per_participant`,
with no Python loop over the B draws.
"""

from __future__ import annotations

import zlib

import numpy as np

CI_LEVEL = 0.95


def bootstrap_weights(n: int, draws: int, rng: np.random.Generator) -> np.ndarray:
    """(draws, n) counts: row b says how often each of n participants is in resample b."""
    if n == 0 or draws == 0:
        return np.zeros((draws, n))
    picks = rng.integers(0, n, size=(draws, n)) + (np.arange(draws) * n)[:, None]
    return np.bincount(picks.ravel(), minlength=draws * n).reshape(draws, n).astype(float)


def split_masks(n: int, splits: int, rng: np.random.Generator) -> np.ndarray:
    """(splits, n) booleans: True = participant in half A of that split (A has n // 2)."""
    base = np.tile(np.arange(n) < n // 2, (splits, 1))
    return rng.permuted(base, axis=1)


def interval(draws: np.ndarray, level: float = CI_LEVEL) -> tuple[float, float] | None:
    """Percentile interval of bootstrap draws (axis 0), ignoring draws that are not finite."""
    finite = draws[np.isfinite(draws)]
    if finite.size < 2:
        return None
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(finite, [tail, 100 - tail])
    return float(low), float(high)


def ceiling_factor(n_a: np.ndarray, n_b: np.ndarray,
                   n_simulated: float | None = None) -> np.ndarray:
    """Scale a half-vs-half distance to the noise of the comparison being made.

    Under the null (two samples from one population) a squared distance (JS divergence, squared
    Wasserstein, squared difference of shares, squared log-ratio) grows like 1/n1 + 1/n2. The
    halves have 1/n_a + 1/n_b; the simulated-vs-human comparison has 1/n_sim + 1/n_human with
    n_human = n_a + n_b (n_sim defaults to n_human). So a distance scales by
    sqrt((1/n_sim + 1/n_human) / (1/n_a + 1/n_b)) — 1/sqrt(2) for equal halves and equal sizes.
    Any design effect of repeated rounds appears in both terms and cancels.
    """
    n_a, n_b = np.asarray(n_a, float), np.asarray(n_b, float)
    n_human = n_a + n_b
    n_sim = n_human if n_simulated is None else n_simulated
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.sqrt((1 / n_sim + 1 / n_human) / (1 / n_a + 1 / n_b))


def mean_size(sizes: list[float]) -> float | None:
    """The simulated size a ceiling is corrected to: the policies' mean (None if no policy)."""
    return float(np.mean(sizes)) if sizes else None


class Resampling:
    """Seeded bootstrap weights per (sample, scope) and one set of human split halves."""

    def __init__(self, bootstrap: int, splits: int, seed: int) -> None:
        self.bootstrap, self.splits, self.seed = bootstrap, splits, seed
        self._weights: dict[tuple[str, int], np.ndarray] = {}

    def rng(self, key: str) -> np.random.Generator:
        """A generator that depends only on the seed and the key, not on call order."""
        return np.random.default_rng([self.seed, zlib.crc32(key.encode())])

    def weights(self, key: str, n: int) -> np.ndarray:
        """Bootstrap weights for n participants of the sample/scope named by key (cached)."""
        if (key, n) not in self._weights:
            self._weights[key, n] = bootstrap_weights(n, self.bootstrap, self.rng(key))
        return self._weights[key, n]

    def halves(self, n: int) -> np.ndarray:
        """Split-half masks over the n human participants, the same for every metric."""
        return split_masks(n, self.splits, self.rng("split-halves"))

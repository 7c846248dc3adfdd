"""MCMC convergence diagnostics: rank-normalized split-R-hat and bulk-ESS from per-chain draws.

For one scalar quantity with draws ``x`` of shape ``(M, N)`` (``M`` chains, ``N`` draws):

1. *Split* each chain into its first and second half (the middle draw of an odd ``N`` is
   dropped), giving ``2M`` chains of length ``n = N // 2``.
2. *Rank-normalize*: replace every draw by ``Phi^-1((r - 3/8) / (S + 1/4))`` with ``r`` its
   average rank among all ``S = 2Mn`` pooled draws.
3. Classic R-hat of the ``2M`` chains ``z``: with ``W`` the mean within-chain variance and
   ``B / n`` the variance of the chain means, ``var+ = (n - 1) / n W + B / n`` and
   ``R-hat = sqrt(var+ / W)``.

``rhat`` returns the maximum of the bulk R-hat (step 3 on ``z``) and the tail R-hat (step 3
on the rank-normalized *folded* draws ``|x - median(x)|``).  ``ess_bulk`` is the effective
sample size of the rank-normalized split chains, with autocorrelations estimated per chain by
FFT, combined across chains as ``rho_t = 1 - (W - mean_m acov_m(t)) / var+`` and truncated
by Geyer's initial monotone sequence of sums of consecutive pairs.

Constant draws give ``nan`` (there is no variance to compare).

References:
    Vehtari, Gelman, Simpson, Carpenter & Bürkner (2021). Rank-normalization, folding, and
    localization: An improved R-hat for assessing convergence of MCMC. Bayesian Analysis
    16(2), 667-718.

    Geyer (1992). Practical Markov chain Monte Carlo. Statistical Science 7(4), 473-483.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(4, 1000))
    >>> bool(rhat(x) < 1.01), bool(3000 < ess_bulk(x) < 5000)
    (True, True)
    >>> bool(rhat(x + np.arange(4)[:, None]) > 1.5)
    True
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtri
from scipy.stats import rankdata

__all__ = ["ess_bulk", "rhat", "split_chains"]


def _as_chains(x: np.ndarray) -> np.ndarray:
    """``x`` as a float64 ``(chains, draws)`` array, with a clear error otherwise."""
    array = np.asarray(x, dtype=np.float64)
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2:
        raise ValueError(f"draws must have shape (chains, draws), got shape {array.shape}")
    if array.shape[1] < 4:
        raise ValueError(f"need at least 4 draws per chain, got {array.shape[1]}")
    return array


def split_chains(x: np.ndarray) -> np.ndarray:
    """Split each chain into halves: ``(M, N)`` -> ``(2M, N // 2)`` (odd ``N``: middle draw dropped)."""
    array = _as_chains(x)
    half = array.shape[1] // 2
    return np.concatenate([array[:, :half], array[:, -half:]], axis=0)


def _rank_normalize(x: np.ndarray) -> np.ndarray:
    """Normal scores of the pooled average ranks, same shape as ``x``."""
    ranks = rankdata(x, method="average", axis=None).reshape(x.shape)
    return ndtri((ranks - 0.375) / (x.size + 0.25))


def _constant(x: np.ndarray) -> bool:
    return bool(np.ptp(x) == 0.0) or not bool(np.all(np.isfinite(x)))


def _rhat_classic(z: np.ndarray) -> float:
    """Classic (Gelman-Rubin) R-hat of chains ``z`` of shape ``(M, n)``."""
    n = z.shape[1]
    within = float(np.mean(np.var(z, axis=1, ddof=1)))
    between_over_n = float(np.var(np.mean(z, axis=1), ddof=1))
    if within == 0.0:
        return float("nan")
    var_plus = (n - 1) / n * within + between_over_n
    return float(np.sqrt(var_plus / within))


def rhat(x: np.ndarray) -> float:
    """Rank-normalized split-R-hat: max of bulk and folded (tail) R-hat.

    Args:
        x: Draws of one scalar, shape ``(chains, draws)`` (a 1-D array is one chain).

    Returns:
        R-hat (``nan`` for constant or non-finite draws); values below 1.01 indicate mixing.
    """
    split = split_chains(x)
    if _constant(split):
        return float("nan")
    bulk = _rhat_classic(_rank_normalize(split))
    folded = np.abs(split - np.median(split))
    tail = _rhat_classic(_rank_normalize(folded)) if not _constant(folded) else float("nan")
    return float(np.nanmax([bulk, tail]))


def _autocovariance(z: np.ndarray) -> np.ndarray:
    """Biased (divide by ``n``) autocovariance of each row of ``z`` at lags ``0..n-1``, by FFT."""
    n = z.shape[1]
    centred = z - z.mean(axis=1, keepdims=True)
    size = 1 << (2 * n - 1).bit_length()
    spectrum = np.fft.rfft(centred, n=size, axis=1)
    return np.fft.irfft(spectrum * np.conj(spectrum), n=size, axis=1)[:, :n] / n


def _ess(z: np.ndarray) -> float:
    """Effective sample size of chains ``z`` of shape ``(M, n)`` (Geyer truncation)."""
    chains, n = z.shape
    acov = _autocovariance(z)
    within = float(np.mean(acov[:, 0])) * n / (n - 1)
    var_plus = within * (n - 1) / n
    if chains > 1:
        var_plus += float(np.var(np.mean(z, axis=1), ddof=1))
    if var_plus == 0.0:
        return float("nan")
    rho = 1.0 - (within - acov.mean(axis=0)) / var_plus
    rho[0] = 1.0
    # Sums of consecutive pairs P_k = rho[2k] + rho[2k+1]; keep the initial positive run.
    n_pairs = n // 2
    pairs = rho[: 2 * n_pairs].reshape(n_pairs, 2).sum(axis=1)
    nonpositive = np.flatnonzero(pairs <= 0.0)
    k_max = int(nonpositive[0]) if nonpositive.size else n_pairs
    # Initial monotone sequence: P_k may not exceed any earlier P.
    monotone = np.minimum.accumulate(pairs[:k_max])
    tau = -1.0 + 2.0 * float(np.sum(monotone))
    total = chains * n
    tau = max(tau, 1.0 / np.log10(total))
    return float(total / tau)


def ess_bulk(x: np.ndarray) -> float:
    """Bulk effective sample size: ESS of the rank-normalized split chains.

    Args:
        x: Draws of one scalar, shape ``(chains, draws)`` (a 1-D array is one chain).

    Returns:
        Bulk-ESS (``nan`` for constant or non-finite draws); aim for at least ~100 per chain.
    """
    split = split_chains(x)
    if _constant(split):
        return float("nan")
    return _ess(_rank_normalize(split))

"""Standard simulation-based-inference tasks with exact (or near-exact, checked) reference posterior samplers.

Each task is a :class:`amortbayes.simulation.FlatModel` (batched torch simulator, float32
batches ``{"theta_global": (B, D), "x": (B, N, F), "mask": (B, N)}``), the summary network
that suits its data, and a sampler of reference posterior draws for one data set ``(N, F)``.

``gaussian_linear``  theta ~ N(0, 0.1 I_10), x | theta ~ N(theta, 0.1 I_10), one observation.
    Reference: the closed-form Gaussian posterior (:class:`amortbayes.models.ConjugateGaussian`).
``two_moons``  theta ~ U(-1, 1)^2, x = crescent(a, r) - (|theta_1 + theta_2|, theta_1 - theta_2) / sqrt 2.
    Reference: exact inversion of the simulator (:class:`amortbayes.models.TwoMoons`).
``slcp``  theta ~ U(-3, 3)^5, m = (theta_1, theta_2), s_1 = theta_3^2, s_2 = theta_4^2,
    rho = tanh(theta_5); four i.i.d. rows x_i ~ N(m, [[s_1^2, rho s_1 s_2], [rho s_1 s_2, s_2^2]]).
    The likelihood is closed form; the posterior has four modes (the signs of theta_3 and
    theta_4), which prior and likelihood leave invariant.  Reference: random-walk Metropolis
    in whitened, folded coordinates, then random sign flips (:mod:`_sbi_mcmc`).  Note that the
    posterior has thin tails (towards large s_1, s_2 with rho near 0) that put a few draws in
    10,000 far from the bulk.
``bernoulli_glm``  a fixed design X (100 trials x 10: intercept and 9 lags of a seeded
    N(0, 1) white-noise stimulus), beta_1 ~ N(0, 2), beta_2..10 ~ N(0, 0.5^2 R) with
    R_ij = 0.8^|i-j| (an AR(1)-correlated, i.e. smooth-leaning, prior on the filter),
    y_t ~ Bernoulli(logistic(x_t' beta)); the observation is the summary X'y (one row of 10).
    X'y is sufficient, so p(beta | X'y) = p(beta | y), which is log-concave.  Reference:
    independence Metropolis-Hastings with a multivariate-t proposal (:mod:`_sbi_mcmc`).
``ar1``  x_t = c + phi x_{t-1} + sigma e_t, x_0 = 0, t = 1..50; sigma^2 ~ InvGamma(3, 2),
    (c, phi) | sigma^2 ~ N(0, sigma^2 diag(1, 0.25)), the joint prior truncated to |phi| < 1.
    Reference: exact, the normal-inverse-gamma posterior of the regression of x_t on
    (1, x_{t-1}), truncated to |phi| < 1 by rejection.
``gaussian_mixture``  theta ~ U(-10, 10)^2, x | theta ~ 0.5 N(theta, I) + 0.5 N(theta, 0.01 I).
    Reference: exact, the same mixture centred at x truncated to the box, by rejection.

Reference draws of the MCMC tasks (``slcp``, ``bernoulli_glm``) are cached as ``.npz`` files
under ``benchmarks/results/reference/``, keyed by the task, a hash of the observation, the
number of draws, the seed and the sampler version.  The reference observations
(:meth:`Task.observations`) are simulated from prior draws: observation ``i`` with a
generator seeded ``seed + i``, so it does not depend on how many are asked for.

References:
    Lueckmann, Boelts, Greenberg, Gonçalves & Macke (2021). Benchmarking simulation-based
    inference. AISTATS.
    Papamakarios, Sterratt & Murray (2019). Sequential neural likelihood: fast
    likelihood-free inference with autoregressive flows. AISTATS (the SLCP model).

Example:
    >>> from _sbi_tasks import TASKS
    >>> task = TASKS["gaussian_mixture"]
    >>> x = task.observations(1)[0]
    >>> task.reference_posterior(x, 100).shape
    (100, 2)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from _sbi_mcmc import _glm_sampler, _slcp_sampler
from _sbi_models import SLCP, AR1Series, BernoulliGLM, GaussianMixture
from amortbayes.models import ConjugateGaussian, TwoMoons
from amortbayes.simulation import FlatModel

__all__ = ["AR1Series", "BernoulliGLM", "GaussianMixture", "SLCP", "TASKS", "Task", "REFERENCE_DIR"]

REFERENCE_DIR = Path(__file__).resolve().parent / "results" / "reference"
_CACHE_VERSION = 1  # bump when a cached sampler changes: old files are then ignored

# A batched reference sampler: (data sets (K, N, F) float64, draws per data set, rng)
# -> (draws (K, n, D), one diagnostics dict per data set).
Sampler = Callable[[np.ndarray, int, np.random.Generator], "tuple[np.ndarray, list[dict[str, Any]]]"]


# ---------------------------------------------------------------------------------------------
# the task object
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Task:
    """A benchmark task: model, summary network kind, one-line description and reference sampler.

    Attributes:
        name: task name (the key in :data:`TASKS`).
        model: the simulator.
        summary: ``"none"`` (one row of features), ``"deepset"`` (exchangeable rows) or
            ``"conv"`` or ``"recurrent"`` (time series).
        description: one line.
        sampler: the batched reference sampler (see :data:`Sampler`).
        exact: ``True`` for exact samplers; ``False`` (MCMC) ones are cached on disk.
    """

    name: str
    model: FlatModel
    summary: str
    description: str
    sampler: Sampler = dataclasses.field(repr=False, compare=False)
    exact: bool = True

    @property
    def parameter_names(self) -> tuple[str, ...]:
        return tuple(self.model.parameter_names)

    def _as_dataset(self, x: Any) -> np.ndarray:
        if isinstance(x, torch.Tensor):
            x = x.detach().cpu().numpy()
        a = np.asarray(x, dtype=np.float64)
        n_feat = len(self.model.data_names)
        if a.ndim == 1 and a.shape[0] == n_feat:
            a = a[None, :]
        if a.ndim != 2 or a.shape[1] != n_feat:
            raise ValueError(f"task {self.name!r} needs one data set of shape (N, {n_feat}), got {a.shape}")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"the data set of task {self.name!r} contains NaN or Inf")
        return a

    def reference_posterior_batch(self, xs: Any, n: int, seed: int = 0,
                                  return_info: bool = False) -> np.ndarray | tuple[np.ndarray, list[dict]]:
        """Reference draws ``(K, n, D)`` for ``K`` data sets ``xs (K, N, F)`` of one size, in one vectorized run (no cache)."""
        if isinstance(xs, torch.Tensor):
            xs = xs.detach().cpu().numpy()
        xs = np.asarray(xs, dtype=np.float64)
        if xs.ndim != 3:
            raise ValueError(f"xs must have shape (K, N, F), got {xs.shape}")
        if n < 1:
            raise ValueError(f"n must be a positive number of draws, got {n}")
        xs = np.stack([self._as_dataset(x) for x in xs])
        t0 = time.perf_counter()
        draws, info = self.sampler(xs, int(n), np.random.default_rng(seed))
        seconds = time.perf_counter() - t0
        for d in info:
            d["seconds"] = seconds / len(info)
        return (draws, info) if return_info else draws

    def reference_posterior(self, x: Any, n: int, seed: int = 0, *, cache: bool | str | os.PathLike = True,
                            return_info: bool = False) -> np.ndarray | tuple[np.ndarray, dict]:
        """``(n, D)`` reference posterior draws for one data set ``x (N, F)`` as the model simulates it.

        Args:
            x: one data set.
            n: number of draws.
            seed: seed of the sampler.
            cache: ``True``: MCMC references are read from / written to :data:`REFERENCE_DIR`
                (exact ones are never cached); a folder: cache there; ``False``: no cache.
            return_info: also return the sampler's diagnostics (R-hat, ESS, time, ...).
        """
        x = self._as_dataset(x)
        path = self._cache_path(x, n, seed, cache)
        if path is not None and path.exists():
            with np.load(path, allow_pickle=False) as f:
                if f["x"].shape == x.shape and np.array_equal(f["x"], x.astype(np.float32)):
                    draws = f["draws"]
                    info = json.loads(str(f["info"]))
                    info["cached"] = True
                    return (draws, info) if return_info else draws
        draws, info = self.reference_posterior_batch(x[None], n, seed, return_info=True)
        draws, info = draws[0], info[0]
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
            np.savez_compressed(tmp, draws=draws, x=x.astype(np.float32), info=json.dumps(info))
            os.replace(tmp, path)
        info["cached"] = False
        return (draws, info) if return_info else draws

    def _cache_path(self, x: np.ndarray, n: int, seed: int, cache: bool | str | os.PathLike) -> Path | None:
        if cache is False or cache is None or (cache is True and self.exact):
            return None
        folder = REFERENCE_DIR if cache is True else Path(cache)
        key = json.dumps({"task": self.name, "config": self.model.config(), "version": _CACHE_VERSION,
                          "n": int(n), "seed": int(seed), "shape": list(x.shape)}, sort_keys=True)
        digest = hashlib.sha1(key.encode() + x.astype(np.float32).tobytes()).hexdigest()[:12]
        return folder / f"{self.name}_n{n}_seed{seed}_{digest}.npz"

    def observation(self, i: int, seed: int = 1000) -> tuple[np.ndarray, np.ndarray]:
        """Reference observation ``i``: ``(theta (D,), x (N, F))`` simulated with a generator seeded ``seed + i``."""
        batch = self.model.simulate(1, torch.Generator().manual_seed(int(seed) + int(i)))
        n = int(batch["mask"][0].sum())
        return batch["theta_global"][0].numpy(), batch["x"][0, :n].numpy()

    def observations(self, k: int = 5, seed: int = 1000) -> list[np.ndarray]:
        """``k`` fixed reference data sets ``(N, F)`` simulated from prior draws (see :meth:`observation`)."""
        return [self.observation(i, seed)[1] for i in range(k)]

    def true_parameters(self, k: int = 5, seed: int = 1000) -> np.ndarray:
        """The prior draws ``(k, D)`` behind :meth:`observations` with the same ``k`` and ``seed``."""
        return np.stack([self.observation(i, seed)[0] for i in range(k)])

    def flat(self, x: Any) -> Any:
        """Data sets as one flat vector each: ``(B, N, F)`` or ``(N, F)`` -> ``(B, N*F)`` (numpy or torch, as given)."""
        if isinstance(x, torch.Tensor):
            return x.reshape(1, -1) if x.dim() == 2 else x.reshape(x.shape[0], -1)
        a = np.asarray(x)
        return a.reshape(1, -1) if a.ndim == 2 else a.reshape(a.shape[0], -1)


# ---------------------------------------------------------------------------------------------
# reference samplers
# ---------------------------------------------------------------------------------------------


def _gaussian_linear_sampler(model: ConjugateGaussian) -> Sampler:
    def sample(xs, n, rng):
        mean, sd = model.posterior(xs)  # (K, D) each
        draws = mean[:, None, :] + sd[:, None, :] * rng.standard_normal((xs.shape[0], n, mean.shape[1]))
        return draws, [{"method": "closed form"} for _ in xs]

    return sample


def _two_moons_sampler(model: TwoMoons) -> Sampler:
    def sample(xs, n, rng):
        seeds = rng.integers(0, 2**62, xs.shape[0])
        draws = np.stack([model.reference_posterior(x, n, seed=int(s)) for x, s in zip(xs, seeds)])
        return draws, [{"method": "exact inversion"} for _ in xs]

    return sample


def _gaussian_mixture_sampler(model: GaussianMixture) -> Sampler:
    def sample(xs, n, rng):
        if xs.shape[1] != 1:
            raise ValueError("the gaussian_mixture reference handles one observation per data set")
        out, info = [], []
        for x in xs[:, 0, :]:
            got, tries, parts = 0, 0, []
            while got < n:
                m = max(2 * (n - got), 1000)
                scale = np.where(rng.random(m) < 0.5, model.scales[1], model.scales[0])
                th = x + scale[:, None] * rng.standard_normal((m, 2))
                ok = np.all(np.abs(th) < model.bound, axis=1)
                parts.append(th[ok])
                got += int(ok.sum())
                tries += m
                if tries > 1000 * n + 100_000:
                    raise ValueError(f"observation {x.tolist()} has (almost) no posterior mass in the prior box")
            out.append(np.concatenate(parts)[:n])
            info.append({"method": "exact rejection", "acceptance": got / tries})
        return np.stack(out), info

    return sample


def ar1_nig_posterior(model: AR1Series, series: np.ndarray) -> dict[str, Any]:
    """Untruncated normal-inverse-gamma posterior of ``((c, phi), sigma^2)`` for one series ``(T,)``."""
    y = np.asarray(series, dtype=np.float64).reshape(-1)
    z = np.stack([np.ones_like(y), np.concatenate([[0.0], y[:-1]])], axis=1)
    prec = np.diag(1.0 / np.asarray(model.v0)) + z.T @ z
    cov = np.linalg.inv(prec)
    mean = cov @ (z.T @ y)
    a = model.a0 + 0.5 * y.size
    b = model.b0 + 0.5 * (y @ y - mean @ prec @ mean)
    return {"mean": mean, "cov": cov, "a": a, "b": b}


def _ar1_sampler(model: AR1Series) -> Sampler:
    def sample(xs, n, rng):
        out, info = [], []
        for x in xs:
            post = ar1_nig_posterior(model, x[:, 0])
            chol = np.linalg.cholesky(post["cov"])
            got, tries, parts = 0, 0, []
            while got < n:
                m = max(2 * (n - got), 1000)
                sigma2 = post["b"] / rng.gamma(post["a"], 1.0, m)
                cphi = post["mean"] + np.sqrt(sigma2)[:, None] * (rng.standard_normal((m, 2)) @ chol.T)
                ok = np.abs(cphi[:, 1]) < 1.0
                parts.append(np.column_stack([cphi[ok], np.sqrt(sigma2[ok])]))
                got += int(ok.sum())
                tries += m
                if tries > 1000 * n + 100_000:
                    raise ValueError("the AR(1) posterior has (almost) no mass at |phi| < 1")
            out.append(np.concatenate(parts)[:n])
            info.append({"method": "exact NIG + rejection", "acceptance": got / tries})
        return np.stack(out), info

    return sample


# ---------------------------------------------------------------------------------------------
# the suite
# ---------------------------------------------------------------------------------------------


def _build_tasks() -> dict[str, Task]:
    gl = ConjugateGaussian(dim=10, prior_sd=0.1**0.5, noise_sd=0.1**0.5, n_obs=(1, 1))
    tm = TwoMoons()
    slcp = SLCP()
    glm = BernoulliGLM()
    ar1 = AR1Series()
    gm = GaussianMixture()
    tasks = [
        Task("gaussian_linear", gl, "none", "10-D Gaussian mean, N(0, 0.1 I) prior and noise, one observation",
             _gaussian_linear_sampler(gl)),
        Task("two_moons", tm, "none", "2-D crescent-shaped bimodal posterior, one observation",
             _two_moons_sampler(tm)),
        Task("slcp", slcp, "deepset", "bivariate Gaussian with 5 parameters, 4 i.i.d. rows, four-mode posterior",
             _slcp_sampler(slcp), exact=False),
        Task("bernoulli_glm", glm, "none", "logistic GLM with 10 coefficients, observed through X'y of 100 trials",
             _glm_sampler(glm), exact=False),
        Task("ar1", ar1, "conv", "AR(1) series of 50 steps, (c, phi, sigma) with a truncated NIG prior",
             _ar1_sampler(ar1)),
        Task("gaussian_mixture", gm, "none", "2-D mixture of a wide and a narrow Gaussian around theta, one observation",
             _gaussian_mixture_sampler(gm)),
    ]
    return {t.name: t for t in tasks}


TASKS: dict[str, Task] = _build_tasks()

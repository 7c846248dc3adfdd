"""MCMC reference posterior samplers of the ``slcp`` and ``bernoulli_glm`` tasks of :mod:`_sbi_tasks`.

``slcp``: random-walk Metropolis on the folded parameters (|theta_3|, |theta_4|) in
data-whitened coordinates ``z = sqrt(N) L^-1 (m - xbar)`` (L the Cholesky factor of S; ``z``
is N(0, I) given S up to the prior box), log |theta_3|, log |theta_4|, theta_5: parallel
chains (100 for 10,000 draws) started at the most likely of a set of prior draws, random-walk
proposal covariance adapted in a 1,500-step warm-up, then alternating random-walk steps and
independence steps from a multivariate t fitted in warm-up, thinned by 20 (checked by
split-R-hat and bulk-ESS); finally each draw's signs of theta_3 and theta_4 are flipped
independently with probability 1/2 (exact by the symmetry).  ``bernoulli_glm``: independence
Metropolis-Hastings with a multivariate-t proposal (10 degrees of freedom) at the Laplace
approximation (Newton mode, inverse Hessian) refined by one round of importance-weighted
moment matching, many independent chains started from the
proposal, the last state of each kept; the proposal's Pareto k-hat and the chains' R-hat and
acceptance are recorded.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING

import numpy as np

from _sbi_models import SLCP, BernoulliGLM
from amortbayes.diagnostics import pareto_khat
from amortbayes.reference.convergence import ess_bulk, rhat

if TYPE_CHECKING:  # the sampler type only; _sbi_tasks imports this module
    from _sbi_tasks import Sampler

__all__ = ["IMHSettings", "MCMCSettings", "glm_log_posterior", "slcp_log_likelihood"]



# --- SLCP: random-walk Metropolis in whitened, folded coordinates -----------------------------


def _log1m_tanh2(t: np.ndarray) -> np.ndarray:
    """``log(1 - tanh(t)^2) = 2 (log 2 - |t| - log1p(exp(-2|t|)))``, stable for large ``|t|``."""
    a = np.abs(t)
    return 2.0 * (math.log(2.0) - a - np.log1p(np.exp(-2.0 * a)))


def _slcp_stats(xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Means ``(K, 2)`` and scatter ``(K, 3)`` = (S11, S12, S22) of data sets ``(K, N, 2)``."""
    xbar = xs.mean(axis=1)
    r = xs - xbar[:, None, :]
    sc = np.stack([(r[..., 0] ** 2).sum(1), (r[..., 0] * r[..., 1]).sum(1), (r[..., 1] ** 2).sum(1)], axis=1)
    return xbar, sc


def _slcp_to_theta(u: np.ndarray, xbar: np.ndarray, n_rows: int) -> np.ndarray:
    """Folded theta (theta_3, theta_4 > 0) from ``u = (z1, z2, log|theta_3|, log|theta_4|, theta_5)``; leading dims broadcast with ``xbar (..., 2)``."""
    z1, z2, a3, a4, t5 = np.moveaxis(u, -1, 0)
    s1, s2, rho = np.exp(2 * a3), np.exp(2 * a4), np.tanh(t5)
    sq = math.sqrt(n_rows)
    m1 = xbar[..., 0] + s1 * z1 / sq
    m2 = xbar[..., 1] + s2 * (rho * z1 + np.sqrt(np.exp(_log1m_tanh2(t5))) * z2) / sq
    return np.stack([m1, m2, np.exp(a3), np.exp(a4), t5], axis=-1)


def _slcp_from_theta(theta: np.ndarray, xbar: np.ndarray, n_rows: int) -> np.ndarray:
    """Inverse of :func:`_slcp_to_theta` (the signs of theta_3, theta_4 are dropped)."""
    m1, m2, t3, t4, t5 = np.moveaxis(theta, -1, 0)
    a3, a4 = np.log(np.abs(t3)), np.log(np.abs(t4))
    s1, s2, rho = t3**2, t4**2, np.tanh(t5)
    sq = math.sqrt(n_rows)
    z1 = sq * (m1 - xbar[..., 0]) / s1
    z2 = (sq * (m2 - xbar[..., 1]) / s2 - rho * z1) / np.sqrt(np.exp(_log1m_tanh2(t5)))
    return np.stack([z1, z2, a3, a4, t5], axis=-1)


def _slcp_log_target(u: np.ndarray, xbar: np.ndarray, sc: np.ndarray, n_rows: int, bound: float) -> np.ndarray:
    """Log posterior density (up to a constant) in the coordinates ``u``; ``xbar (K, 1, 2)``, ``sc (K, 1, 3)``.

    With ``m = xbar + L z / sqrt(N)`` (``L L' = S``) the likelihood is
    ``|S|^(-N/2) exp(-tr(S^-1 Sc) / 2 - |z|^2 / 2)``; the Jacobian of ``u -> theta`` is
    ``|S|^(1/2) / N * |theta_3| |theta_4|``; the prior is uniform on the box.
    """
    z1, z2, a3, a4, t5 = np.moveaxis(u, -1, 0)
    with np.errstate(over="ignore", divide="ignore", invalid="ignore", under="ignore"):
        l1mr2 = _log1m_tanh2(t5)
        rho = np.tanh(t5)
        inv_s1, inv_s2 = np.exp(-2 * a3), np.exp(-2 * a4)
        trace = (sc[..., 0] * inv_s1**2 - 2 * rho * sc[..., 1] * inv_s1 * inv_s2 + sc[..., 2] * inv_s2**2) / np.exp(l1mr2)
        lp = -(2 * n_rows - 3) * (a3 + a4) - 0.5 * (n_rows - 1) * l1mr2 - 0.5 * trace - 0.5 * (z1**2 + z2**2)
        theta = _slcp_to_theta(u, xbar, n_rows)
        inside = np.all(np.abs(theta) < bound, axis=-1)
        lp = np.where(inside & np.isfinite(lp), lp, -np.inf)
    return lp


def slcp_log_likelihood(theta: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``log p(x | theta)`` of one data set ``x (N, 2)`` for parameters ``theta (..., 5)`` (direct formula)."""
    m = theta[..., :2]
    s1, s2, rho = theta[..., 2] ** 2, theta[..., 3] ** 2, np.tanh(theta[..., 4])
    det = s1**2 * s2**2 * (1 - rho**2)
    r = x[None] - m.reshape(-1, 1, 2)  # (M, N, 2)
    s1f, s2f, rhof, detf = (a.reshape(-1, 1) for a in (s1, s2, rho, det))
    quad = (r[..., 0] ** 2 * s2f**2 - 2 * rhof * s1f * s2f * r[..., 0] * r[..., 1] + r[..., 1] ** 2 * s1f**2) / detf
    ll = -0.5 * quad.sum(1) - 0.5 * x.shape[0] * np.log(detf[:, 0]) - x.shape[0] * math.log(2 * math.pi)
    return ll.reshape(theta.shape[:-1])


@dataclasses.dataclass(frozen=True)
class MCMCSettings:
    """Settings of the SLCP reference: parallel chains, warm-up windows, thinning, independence steps.

    Each chain yields ``draws_per_chain`` draws, one every ``thin`` iterations after a warm-up
    of ``sum(windows)`` random-walk steps (the proposal covariance is re-estimated from the
    chains' states at the end of each window).  With ``imh`` every sampling iteration starts
    with an independence step from a multivariate t (``imh_df``, scale ``imh_scale``) at the
    last window's mean and covariance; both kernels leave the posterior invariant.
    """

    draws_per_chain: int = 100
    thin: int = 20
    windows: tuple[int, ...] = (50, 100, 150, 200, 300, 700)  # adaptation windows of the warm-up
    prior_draws_per_chain: int = 20
    min_chains: int = 8
    imh: bool = True
    imh_df: float = 5.0
    imh_scale: float = 1.2

    @property
    def warmup(self) -> int:
        return sum(self.windows)


def _slcp_sampler(model: SLCP, settings: MCMCSettings = MCMCSettings()) -> Sampler:
    d = 5

    def sample(xs, n, rng):
        k_obs, n_rows = xs.shape[0], xs.shape[1]
        chains = max(math.ceil(n / settings.draws_per_chain), settings.min_chains)
        xbar, sc = _slcp_stats(xs)
        xb, scb = xbar[:, None, :], sc[:, None, :]
        # 1. starts: the most likely of (prior_draws_per_chain * chains) folded prior draws per data set
        m0 = max(settings.prior_draws_per_chain * chains, 2000)
        starts = np.empty((k_obs, chains, d))
        for k in range(k_obs):
            th = rng.uniform(-model.bound, model.bound, (m0, d))
            th[:, 2:4] = np.abs(th[:, 2:4])
            ll = slcp_log_likelihood(th, xs[k])
            starts[k] = _slcp_from_theta(th[np.argsort(-ll)[:chains]], xbar[k], n_rows)
        u = starts
        lp = _slcp_log_target(u, xb, scb, n_rows, model.bound)
        # 2. warm-up: proposal covariance from the chains' states in each window, scale by acceptance
        cov = np.stack([np.cov(s.T) for s in starts]) + 1e-6 * np.eye(d)
        chol = np.linalg.cholesky(cov)
        log_scale = np.full((k_obs, 1), math.log(2.38 / math.sqrt(d)))
        accepted_total = np.zeros(k_obs)

        def step(u, lp, chol, log_scale):
            eps = rng.standard_normal(u.shape)
            prop = u + np.exp(log_scale)[..., None] * np.einsum("kij,kcj->kci", chol, eps)
            lp_prop = _slcp_log_target(prop, xb, scb, n_rows, model.bound)
            accept = np.log(rng.random(lp.shape)) < lp_prop - lp
            return np.where(accept[..., None], prop, u), np.where(accept, lp_prop, lp), accept

        for w in settings.windows:
            keep = []
            for t in range(w):
                u, lp, acc = step(u, lp, chol, log_scale)
                log_scale += 0.5 / math.sqrt(1 + t) * (acc.mean(1, keepdims=True) - 0.25)
                if t >= w // 2:
                    keep.append(u)
            kept = np.stack(keep, axis=2).reshape(k_obs, -1, d)
            centred = kept - kept.mean(1, keepdims=True)
            cov = np.einsum("kmi,kmj->kij", centred, centred) / (kept.shape[1] - 1) + 1e-8 * np.eye(d)
            chol = np.linalg.cholesky(cov)
        # 3. sampling: each iteration an independence step (multivariate t at the warm-up states'
        #    mean and covariance) and a random-walk step; every thin-th state is kept
        mean_u = kept.mean(1)  # (K, d)
        chol_t = settings.imh_scale * chol
        nu = settings.imh_df

        def log_t(v):  # log density of the independence proposal, up to a per-data-set constant
            e = np.linalg.solve(chol_t[:, None], (v - mean_u[:, None, :])[..., None])[..., 0]
            return -0.5 * (nu + d) * np.log1p((e**2).sum(-1) / nu)

        lq = log_t(u)
        steps = settings.draws_per_chain * settings.thin
        trace = np.empty((k_obs, chains, steps, d))
        imh_total = np.zeros(k_obs)
        for t in range(steps):
            if settings.imh:
                eps = rng.standard_normal(u.shape) * np.sqrt(nu / rng.chisquare(nu, u.shape[:2] + (1,)))
                prop = mean_u[:, None, :] + np.einsum("kij,kcj->kci", chol_t, eps)
                lp_prop = _slcp_log_target(prop, xb, scb, n_rows, model.bound)
                lq_prop = log_t(prop)
                accept = np.log(rng.random(lp.shape)) < (lp_prop - lq_prop) - (lp - lq)
                u = np.where(accept[..., None], prop, u)
                lp, lq = np.where(accept, lp_prop, lp), np.where(accept, lq_prop, lq)
                imh_total += accept.mean(1)
            u, lp, acc = step(u, lp, chol, log_scale)
            lq = log_t(u)
            trace[:, :, t] = u
            accepted_total += acc.mean(1)
        thinned = trace[:, :, settings.thin - 1::settings.thin]  # (K, C, draws_per_chain, d)
        theta = _slcp_to_theta(thinned, xbar[:, None, None, :], n_rows)
        theta = theta.reshape(k_obs, -1, d)
        info = []
        for k in range(k_obs):
            t_k = _slcp_to_theta(trace[k], xbar[k], n_rows)  # folded: |theta_3|, |theta_4|
            th_k = _slcp_to_theta(thinned[k], xbar[k], n_rows)
            info.append({
                "method": "parallel Metropolis chains (whitened, folded coordinates; random-walk and "
                          "independence steps) + random sign flips",
                "chains": chains, "warmup": settings.warmup, "thin": settings.thin,
                "acceptance": float(accepted_total[k] / steps),
                "acceptance_independence": float(imh_total[k] / steps),
                "rhat_max": float(max(rhat(t_k[..., j]) for j in range(d))),
                "ess_bulk_min": float(min(ess_bulk(t_k[..., j]) for j in range(d))),
                "ess_bulk_thinned_min": float(min(ess_bulk(th_k[..., j]) for j in range(d))),
                "n_thinned": int(th_k.shape[0] * th_k.shape[1]),
            })
        # 4. exact symmetrization: independent random signs of theta_3 and theta_4, then shuffle
        theta[..., 2:4] *= rng.choice([-1.0, 1.0], size=theta[..., 2:4].shape)
        order = np.argsort(rng.random(theta.shape[:2]), axis=1)[:, :n]
        return np.take_along_axis(theta, order[..., None], axis=1), info

    return sample


# --- Bernoulli GLM: independence Metropolis-Hastings with a Laplace-t proposal ----------------


def glm_log_posterior(model: BernoulliGLM, beta: np.ndarray, s: np.ndarray) -> np.ndarray:
    """``log p(beta | X'y = s)`` up to a constant; ``beta (..., D)``, ``s`` broadcastable to it."""
    X = model.design()
    prec = np.linalg.inv(model.prior_cov())
    eta = beta @ X.T
    return (beta * s).sum(-1) - np.logaddexp(0.0, eta).sum(-1) - 0.5 * np.einsum("...i,ij,...j->...", beta, prec, beta)


@dataclasses.dataclass(frozen=True)
class IMHSettings:
    """Independence Metropolis-Hastings settings of the Bernoulli GLM reference.

    ``steps`` IMH steps per chain from a proposal draw; ``check_draws`` proposal draws give
    the Pareto k-hat and ``max w / mean w`` (``M``: after ``steps`` steps an IMH chain is
    within ``(1 - 1/M)^steps`` of the posterior in total variation, Mengersen & Tweedie 1996);
    ``check_chains`` chains of ``check_steps`` steps give R-hat and bulk-ESS of the kernel.
    """

    df: float = 10.0
    scale: float = 1.0
    steps: int = 50
    check_draws: int = 4000
    check_chains: int = 8
    check_steps: int = 200
    moment_matching: bool = True


def _glm_sampler(model: BernoulliGLM, settings: IMHSettings = IMHSettings()) -> Sampler:
    def sample(xs, n, rng):
        if xs.shape[1] != 1:
            raise ValueError("the bernoulli_glm reference handles one experiment (one row X'y) per data set")
        X = model.design()
        prec = np.linalg.inv(model.prior_cov())
        s = xs[:, 0, :]
        k_obs, dim = s.shape
        # Laplace approximation: Newton's method on the (strictly concave) log posterior
        beta = np.zeros((k_obs, dim))
        for _ in range(100):
            p = 1.0 / (1.0 + np.exp(-(beta @ X.T)))
            grad = s - p @ X - beta @ prec
            hess = np.einsum("kt,ti,tj->kij", p * (1 - p), X, X) + prec
            delta = np.linalg.solve(hess, grad[..., None])[..., 0]
            beta = beta + delta
            if np.max(np.abs(delta)) < 1e-10:
                break
        p = 1.0 / (1.0 + np.exp(-(beta @ X.T)))
        hess = np.einsum("kt,ti,tj->kij", p * (1 - p), X, X) + prec
        chol = settings.scale * np.linalg.cholesky(np.linalg.inv(hess))  # (K, D, D)
        nu = settings.df

        def propose(m):
            """``m`` proposal draws per data set and their log importance weights (up to a constant)."""
            t = rng.standard_normal((k_obs, m, dim)) * np.sqrt(nu / rng.chisquare(nu, (k_obs, m, 1)))
            b = beta[:, None, :] + np.einsum("kij,kmj->kmi", chol, t)
            log_q = -0.5 * (nu + dim) * np.log1p((t**2).sum(-1) / nu)
            return b, glm_log_posterior(model, b, s[:, None, :]) - log_q

        def run(m, steps, keep=False):
            cur, lw = propose(m)
            trace = np.empty((k_obs, m, steps, dim)) if keep else None
            acc_total = np.zeros(k_obs)
            for t in range(steps):
                prop, lw_prop = propose(m)
                accept = np.log(rng.random(lw.shape)) < lw_prop - lw
                cur = np.where(accept[..., None], prop, cur)
                lw = np.where(accept, lw_prop, lw)
                acc_total += accept.mean(1)
                if keep:
                    trace[:, :, t] = cur
            return cur, acc_total / steps, trace

        if settings.moment_matching:
            # one round of adaptive importance sampling: centre and shape the proposal at the
            # importance-weighted posterior mean and covariance (skewed posteriors move it)
            b, lw = propose(settings.check_draws)
            w = np.exp(lw - lw.max(1, keepdims=True))
            w /= w.sum(1, keepdims=True)
            beta = np.einsum("km,kmi->ki", w, b)
            r = b - beta[:, None, :]
            cov = np.einsum("km,kmi,kmj->kij", w, r, r)
            chol = settings.scale * np.linalg.cholesky(cov + 1e-10 * np.eye(dim))
        _, lw_check = propose(settings.check_draws)
        _, _, check = run(settings.check_chains, settings.check_steps, keep=True)
        draws, acceptance, _ = run(n, settings.steps)
        info = []
        for k in range(k_obs):
            w = np.exp(lw_check[k] - lw_check[k].max())
            m_hat = float(w.max() / w.mean())
            info.append({
                "method": "independence Metropolis-Hastings, Laplace multivariate-t proposal, last state of each chain",
                "chains": n, "steps": settings.steps, "df": nu,
                "acceptance": float(acceptance[k]),
                "pareto_khat": float(pareto_khat(lw_check[k])),
                "max_weight_over_mean": m_hat,
                "tv_bound": float((1.0 - 1.0 / m_hat) ** settings.steps),
                "rhat_max": float(max(rhat(check[k, :, :, j]) for j in range(dim))),
                "ess_bulk_min": float(min(ess_bulk(check[k, :, :, j]) for j in range(dim))),
                "proposal_mean": beta[k].tolist(),
            })
        return draws, info

    return sample

"""A group's effects given the shared parameters, by Laplace approximation: the local proposal of importance sampling.

Importance-corrected draws and LOGO integrate each group's effects ``r_j`` out by importance
sampling, for every global draw (:func:`amortbayes.inference.evidence.group_evidence`).  A formula model
offers its own proposal for that integral: the Gaussian (a Student-t for a student likelihood,
:data:`HEAVY_TAILED`) at the mode of ``p(y_j | b, r_j) N(r_j | 0, Sigma)``, found by a few
Fisher-scoring steps, with scale the inverse of the Fisher information plus the prior
precision, widened by ``INFLATE`` (a slightly wider proposal keeps the weights' variance finite
where the exact conditional is skewed: counts near zero).  For GLMMs this conditional is close to Gaussian, so a few draws
estimate the group's likelihood with little noise, and no network runs: on epilepsy's 59
patients the importance correction took 36 s with 32 local-flow draws per global draw.
The estimate stays unbiased whatever the approximation's quality (it is only the proposal).

References:
    Rue, Martino & Chopin (2009). Approximate Bayesian inference for latent Gaussian models by
    using integrated nested Laplace approximations. JRSS B 71 (Laplace for the latent field).
    Pinheiro & Bates (1995). Approximations to the log-likelihood function in the nonlinear
    mixed-effects model. JCGS 4 (importance sampling around the Laplace mode).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from amortbayes.moments import sample_chi2
from amortbayes.networks.flows import quasi_normal

SCORING_STEPS = 8  # Fisher-scoring steps from r = 0 (a gaussian group needs one)
INFLATE = 1.2  # proposal SD relative to the Laplace approximation's
# families whose group conditional has heavier tails than the Gaussian at its mode (a student
# likelihood is bounded in r_j, so the conditional keeps the prior's tails, wider than the mode's
# curvature says): their proposal is a Student-t of T_DF degrees of freedom, whose weights' variance
# stays finite (measured on sleepstudy, student: sigma 0.36 Stan SD off with the Gaussian proposal,
# 0.08 with the t and 32 local draws).  Log-concave GLM likelihoods keep the Gaussian, whose
# estimates are less noisy
HEAVY_TAILED = ("student",)
T_DF = 5
ETA_BOUND = 30.0


def laplace_local_proposal(model: Any, theta_global: torch.Tensor, x: torch.Tensor, mask: torch.Tensor, m: int,
                           generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``m`` draws per global draw of one group's effects and their log proposal density, ``(n, m, K)`` and ``(n, m)``.

    ``model`` is a :class:`~amortbayes.formula.model.FormulaModel`; ``theta_global (n, G)``,
    ``x (N, F)`` the group's rows and ``mask (N,)`` the observed ones.  The draws are
    randomized quasi-Monte Carlo (:func:`~amortbayes.networks.flows.quasi_normal`).
    """
    P, K = model.P, model.K
    dt = torch.float64
    tg = theta_global.to(dt)
    rows = x[mask > 0].to(dt)
    X, Z, y = rows[:, :P], rows[:, P: P + K], rows[:, -1]
    trials = rows[:, P + K] if model._trials else None
    family = model.likelihood_family
    offset = tg[:, :P] @ X.T  # (n, N)
    bound = math.inf if model.family.link == "identity" else ETA_BOUND  # exp() and sigmoid() of +-30 stay finite
    start = P + K + len(model.cor_pairs)
    dpars = {d: tg[:, start + i, None] for i, d in enumerate(model.family.dpars)}
    L, bad = model._scale_tril(tg)
    prior_prec = 1.0 / L.square() if K == 1 else torch.cholesky_inverse(L)  # (n, K, K)
    r = torch.zeros(tg.shape[0], K, dtype=dt, device=tg.device)
    ZZ = Z[:, :, None] * Z[:, None, :]  # (N, K, K)
    for _ in range(1 if model.family.name in ("gaussian", "lognormal") else SCORING_STEPS):
        eta = (offset + r @ Z.T).clamp(-bound, bound)
        score, fisher = family.score_fisher(y, eta, dpars, trials)
        H = torch.einsum("nr,rkl->nkl", fisher, ZZ) + prior_prec
        grad = score @ Z - (prior_prec @ r[..., None])[..., 0]
        step = grad / H[..., 0] if K == 1 else torch.linalg.solve_ex(H, grad)[0]  # (batched 1 x 1 solves are slow)
        r = torch.where(torch.isfinite(step).all(-1, keepdim=True), r + step, r)
    eta = (offset + r @ Z.T).clamp(-bound, bound)
    H = torch.einsum("nr,rkl->nkl", family.score_fisher(y, eta, dpars, trials)[1], ZZ) + prior_prec
    U, info = torch.linalg.cholesky_ex(H)  # H = U U'; the proposal's covariance INFLATE^2 H^-1
    eye = torch.eye(K, dtype=dt, device=tg.device)
    failed = (info > 0) | bad | ~torch.isfinite(r).all(-1)
    U = torch.where(failed[:, None, None], eye, U)
    r = torch.where(failed[:, None], torch.zeros_like(r), r)
    eps = quasi_normal(tg.shape[0], m, K, generator, dt).to(tg.device)  # (n, m, K)
    heavy = model.family.name in HEAVY_TAILED
    if heavy:  # a Student-t of T_DF degrees of freedom around the mode: w = eps sqrt(nu / chi2_nu)
        w = eps * torch.sqrt(T_DF / sample_chi2(torch.full(eps.shape[:-1], float(T_DF)), generator)).to(eps)[..., None]
    else:
        w = eps
    # r + INFLATE U^-T w has scale matrix INFLATE^2 (U U')^-1 (U^-T once per global draw)
    U_inv_t = torch.linalg.solve_triangular(U.transpose(-1, -2), eye.expand_as(U), upper=True)
    shift = torch.einsum("nab,nmb->nma", U_inv_t, w)
    draws = r[:, None] + INFLATE * shift
    log_det = torch.log(torch.diagonal(U, dim1=-2, dim2=-1)).sum(-1) - K * math.log(INFLATE)  # log |scale|^(-1/2)
    if heavy:
        log_q = (math.lgamma((T_DF + K) / 2) - math.lgamma(T_DF / 2) - 0.5 * K * math.log(T_DF * math.pi)
                 + log_det[:, None] - 0.5 * (T_DF + K) * torch.log1p((w * w).sum(-1) / T_DF))
    else:
        log_q = -0.5 * (w * w).sum(-1) + log_det[:, None] - 0.5 * K * math.log(2 * math.pi)
    return draws.to(theta_global.dtype), log_q.to(theta_global.dtype)

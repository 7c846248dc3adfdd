"""Adversarial attacks on an amortized posterior: the perturbation of the data within a small ball that moves it most.

For data ``x`` and a radius ``eps``, the attack seeks

    delta* = argmax_{||delta|| <= eps} KL( q(theta | x) || q(theta | x + delta) )

(Glöckler et al. 2023, eq. 3) by projected gradient ascent on a Monte Carlo estimate of the KL:
``m`` draws ``theta_i ~ q(theta | x)``, fixed for the whole ascent, give
``KL ~ mean_i [log q(theta_i | x) - log q(theta_i | x + delta)]``, whose gradient in ``delta``
flows through the networks.  At ``delta = 0`` the KL is at its minimum (gradient zero), so the
ascent starts from a random point of the ball; an L2 step moves ``step_size * eps`` along the
normalized gradient, an L-infinity step along its sign; each step projects back onto the ball,
the step length decays along a cosine, and the best perturbation seen (by the fixed draws'
estimate) is kept.  The reported KL is re-estimated from fresh draws.  All data sets of a call
are attacked together, each with its own perturbation.

Norms are taken over every perturbable entry of a data set in standardized units
(:mod:`amortbayes.robust.targets`).

Reference:
    Glöckler, Deistler & Macke (2023). Adversarial robustness of amortized Bayesian
    inference. ICML 2023.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from amortbayes.robust.targets import Target, make_target, norm_of

__all__ = ["AttackResult", "NORMS", "attack", "attack_target", "check_eps", "check_norm"]

NORMS = ("l2", "linf")


def check_norm(norm: str) -> str:
    """``norm`` lower-cased if it is one of :data:`NORMS`; a ValueError naming the known ones otherwise."""
    key = str(norm).lower().replace("-", "").replace("_", "")
    key = {"l2": "l2", "2": "l2", "linf": "linf", "inf": "linf", "infinity": "linf", "linfinity": "linf"}.get(key)
    if key is None:
        raise ValueError(f"unknown norm {norm!r}; known norms are 'l2' and 'linf'")
    return key


def check_eps(eps: Any) -> list[float]:
    """Radii as floats; a ValueError for one that is not a positive finite number."""
    values = [eps] if np.isscalar(eps) else list(eps)
    if not values:
        raise ValueError("give at least one radius eps")
    out = []
    for e in values:
        try:
            f = float(e)
        except (TypeError, ValueError):
            raise ValueError(f"eps must be a positive number, got {e!r}") from None
        if not (math.isfinite(f) and f > 0):
            raise ValueError(f"eps must be a positive number (the radius of the perturbation), got {e!r}")
        out.append(f)
    return out


def one_eps(eps: Any, caller: str) -> float:
    """One radius, checked as :func:`check_eps` checks each; a ValueError for a sequence."""
    if not np.isscalar(eps):
        raise ValueError(f"{caller}() takes one radius eps; robustness_report() takes several")
    return check_eps(eps)[0]


@dataclasses.dataclass
class AttackResult:
    """The outcome of :func:`attack`.

    Attributes:
        kl: ``(B,)`` KL between the clean and the attacked posterior, from ``eval_draws`` fresh draws.
        kl_se: ``(B,)`` Monte Carlo standard errors of ``kl``.
        delta: the perturbation in standardized units, shaped like the padded data.
        delta_raw: the same in the data's own units (add it to the data to attack them).
        x_attacked: the attacked data (padded, as the amortizer reads them).
        eps, norm: the radius and the norm.
    """

    kl: np.ndarray
    kl_se: np.ndarray
    delta: np.ndarray
    delta_raw: np.ndarray
    x_attacked: np.ndarray | None
    eps: float
    norm: str

    def __repr__(self) -> str:
        return (f"AttackResult(eps={self.eps}, norm={self.norm!r}, data sets={self.kl.shape[0]}, "
                f"KL median {np.median(self.kl):.3g}, max {np.max(self.kl):.3g})")


def _project(delta: torch.Tensor, free: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    delta = delta * free
    if norm == "linf":
        return delta.clamp(-eps, eps)
    size = norm_of(delta, "l2").clamp_min(1e-12)
    factor = (eps / size).clamp(max=1.0)
    return delta * factor.reshape(-1, *([1] * (delta.dim() - 1)))


def _random_start(free: torch.Tensor, eps: float, norm: str, generator: torch.Generator | None) -> torch.Tensor:
    u = torch.randn(free.shape, generator=generator, dtype=free.dtype).to(free.device) * free
    if norm == "linf":
        return (0.5 * eps * torch.tanh(u)).clamp(-eps, eps)
    size = norm_of(u, "l2").clamp_min(1e-12)
    return u * (0.5 * eps / size).reshape(-1, *([1] * (u.dim() - 1)))


def _ascent_step(g: torch.Tensor, free: torch.Tensor, norm: str) -> torch.Tensor:
    g = g * free
    if norm == "linf":
        return g.sign()
    return g / norm_of(g, "l2").clamp_min(1e-30).reshape(-1, *([1] * (g.dim() - 1)))


def attack_target(target: Target, eps: float, *, norm: str = "l2", steps: int = 50, draws: int = 64,
                  step_size: float = 0.25, generator: torch.Generator | None = None) -> torch.Tensor:
    """The projected gradient ascent of :func:`attack` on a target; the best perturbation per data set (standardized)."""
    free = target.free
    zero = torch.zeros_like(free)
    z = target.draws(draws, generator)
    with torch.no_grad():
        base = target.log_q(z, zero)
    delta = _random_start(free, eps, norm, generator)
    best, best_kl = delta.clone(), torch.full((free.shape[0],), -math.inf, dtype=base.dtype, device=base.device)
    for t in range(int(steps) + 1):
        delta = delta.detach().requires_grad_(True)
        kl = (base - target.log_q(z, delta)).mean(dim=1)
        with torch.no_grad():
            better = kl > best_kl
            best[better] = delta.detach()[better]
            best_kl = torch.where(better, kl.detach(), best_kl)
        if t == steps:
            break
        (g,) = torch.autograd.grad(kl.sum(), delta)
        alpha = step_size * eps * 0.5 * (1.0 + math.cos(math.pi * t / max(1, steps)))
        with torch.no_grad():
            delta = _project(delta + alpha * _ascent_step(g, free, norm), free, eps, norm)
    return best.detach()


def kl_estimate(target: Target, delta: torch.Tensor, n: int = 1000,
                generator: torch.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``KL(q(.|x) || q(.|x + delta))`` per data set from ``n`` fresh draws, with its Monte Carlo SE."""
    z = target.draws(n, generator)
    with torch.no_grad():
        diff = target.log_q(z, torch.zeros_like(delta)) - target.log_q(z, delta)
    diff = diff.double().cpu().numpy()
    return diff.mean(axis=1), diff.std(axis=1, ddof=1) / math.sqrt(diff.shape[1])


def attack(amortizer: Any, data: Any = None, eps: float = 0.5, *, norm: str = "l2", steps: int = 50,
           draws: int = 64, eval_draws: int = 1000, step_size: float = 0.25, seed: int | None = 0,
           columns: Sequence[str] | None = None, group: Any = None,
           context: dict[str, Any] | None = None) -> AttackResult:
    """The perturbation of norm at most ``eps`` that moves the amortized posterior of ``data`` most (KL).

    Args:
        amortizer: a posterior or multilevel amortizer (or an :class:`~amortbayes.formula.AmortizedFit`),
            or a :class:`~amortbayes.robust.targets.Target` (then ``data`` is ignored).
        data: one data set or many, as the amortizer's ``sample`` takes them.
        eps: the radius, in standardized units (1 = one training-data SD of a column).
        norm: ``"l2"`` (over all perturbable entries of a data set) or ``"linf"`` (each entry).
        steps: gradient ascent steps.
        draws: posterior draws of the Monte Carlo KL the ascent climbs (fixed for the ascent).
        eval_draws: fresh draws for the reported KL.
        step_size: the first step's length as a fraction of ``eps`` (decays along a cosine).
        seed: seeds the draws and the random start.
        columns: the data columns that may be perturbed (default: all).
        group: multilevel data: perturb only this group's rows (label or index); None: all groups.
        context: for an amortizer with contexts, the context to condition on.

    Returns:
        An :class:`AttackResult` (per data set KL, its SE, the perturbation and the attacked data).

    Raises:
        ValueError: ``eps <= 0``, an unknown norm, unknown columns or group.

    Example:
        >>> from amortbayes.robust.targets import LinearGaussianPosterior
        >>> A = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
        >>> post = LinearGaussianPosterior(A, torch.zeros(2), torch.eye(2), torch.zeros(1, 3))
        >>> result = attack(post, eps=0.1, eval_draws=4000)
        >>> bool(abs(float(post.kl(torch.as_tensor(result.delta))[0]) / post.worst_case_kl(0.1) - 1) < 0.05)
        True
    """
    e = one_eps(eps, "attack")
    norm = check_norm(norm)
    for name, value in (("steps", steps), ("draws", draws), ("eval_draws", eval_draws)):
        if int(value) < 1:
            raise ValueError(f"{name} must be a positive integer, got {value}")
    target = make_target(amortizer, data, columns=columns, group=group, context=context)
    net = getattr(target, "amortizer", None)
    gen = None if seed is None else torch.Generator().manual_seed(int(seed))
    was_training = net.training if net is not None else False
    if net is not None:
        net.eval()
    try:
        delta = attack_target(target, e, norm=norm, steps=steps, draws=draws, step_size=step_size, generator=gen)
        kl, se = kl_estimate(target, delta, eval_draws, gen)
        raw = target.raw(delta).detach()
    finally:
        if net is not None:
            net.train(was_training)
    x = getattr(target, "x", None)
    return AttackResult(kl=kl, kl_se=se, delta=delta.cpu().numpy(), delta_raw=raw.cpu().numpy(),
                        x_attacked=None if x is None else (x + raw.to(x)).detach().cpu().numpy(), eps=e, norm=norm)

"""Standardization of parameters and data, learned from simulations and saved with the model.

``z = (v - mean) / std`` per feature (last axis).  Statistics are computed over the
*observed* entries only (the mask), so padding never shifts them: a padded and an unpadded
batch give the same mean and std.  For parameters the log-Jacobian of the map is
``-sum(log std)``, which :class:`amortbayes.amortizers.PosteriorAmortizer` adds to
densities so that ``log_prob`` is on the original scale.
"""

from __future__ import annotations

import torch
from torch import nn


class Standardizer(nn.Module):
    """Per-feature affine standardization with statistics stored as buffers.

    Example:
        >>> s = Standardizer(2)
        >>> s.fit(torch.tensor([[0.0, 10.0], [2.0, 30.0]]))
        >>> s(torch.tensor([[1.0, 20.0]])).tolist()
        [[0.0, 0.0]]
    """

    def __init__(self, features: int, min_std: float = 1e-6):
        super().__init__()
        self.min_std = min_std
        self.register_buffer("mean", torch.zeros(features))
        self.register_buffer("std", torch.ones(features))
        self.register_buffer("fitted", torch.tensor(False))

    @torch.no_grad()
    def fit(self, values: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        """Learn mean and std over all axes but the last; ``mask`` has ``values.shape[:-1]``."""
        v = values.reshape(-1, values.shape[-1]).double()
        if mask is None:
            w = torch.ones(v.shape[0], dtype=v.dtype, device=v.device)
        else:
            w = mask.reshape(-1).to(v)
        n = w.sum().clamp_min(1.0)
        mean = (v * w[:, None]).sum(0) / n
        var = (((v - mean) ** 2) * w[:, None]).sum(0) / n
        self.mean.copy_(mean.float())
        self.std.copy_(var.sqrt().clamp_min(self.min_std).float())
        self.fitted.fill_(True)

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        return (values - self.mean) / self.std

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        return z * self.std + self.mean

    def log_abs_det(self) -> torch.Tensor:
        """``log |dz/dv|`` summed over features."""
        return -torch.log(self.std).sum()


SUPPORTS = ("real", "positive", "unit", "correlation")

SOFT_BOUND = 20.0


def soft_bound(z: torch.Tensor, bound: float = SOFT_BOUND) -> torch.Tensor:
    """``bound * tanh(z / bound)``: monotone, nearly the identity for ``|z| <= 3`` (relative change z^2/1200 < 0.8 %).

    Summary networks take pairwise products of standardized data and of their moments; one
    heavy-tailed observation (a 40 s response time is 128 SDs out) then reaches 1e8 and
    overflows training.  Bounding first keeps every input finite and informative.
    """
    return bound * torch.tanh(z / bound)


def _check_supports(support: tuple[str, ...], n: int) -> tuple[str, ...]:
    support = tuple(support) if support else ("real",) * n
    if len(support) != n:
        raise ValueError(f"got {len(support)} parameter supports for {n} parameters")
    unknown = sorted(set(support) - set(SUPPORTS))
    if unknown:
        raise ValueError(f"unknown parameter support(s) {unknown}; use {list(SUPPORTS)}")
    return support


class ParameterMap(nn.Module):
    """Constrained parameters to standardized unconstrained values and back.

    Each parameter has a support: ``"real"`` (identity), ``"positive"`` (log),
    ``"unit"`` (logit, for (0, 1)) or ``"correlation"`` (atanh, for (-1, 1)).  Flows work
    on ``z = standardize(u(theta))``; :meth:`log_abs_det` returns ``log |dz/dtheta|`` so
    densities can be reported for ``theta`` itself, and draws never leave the support.

    Example:
        >>> pm = ParameterMap(("real", "positive"))
        >>> pm.fit(torch.tensor([[0.0, 1.0], [2.0, 100.0]]))
        >>> pm.inverse(pm(torch.tensor([[1.0, 10.0]]))).tolist()
        [[1.0, 10.0]]
    """

    def __init__(self, support: tuple[str, ...] | int):
        super().__init__()
        n = support if isinstance(support, int) else len(support)
        self.support = _check_supports(() if isinstance(support, int) else support, n)
        codes = torch.tensor([SUPPORTS.index(s) for s in self.support])
        self.register_buffer("codes", codes, persistent=False)
        self.std = Standardizer(n)

    def unconstrain(self, theta: torch.Tensor) -> torch.Tensor:
        c = self.codes
        eps = 1e-6
        pos = torch.log(theta.clamp_min(1e-30))
        unit = torch.logit(theta.clamp(eps, 1 - eps))
        cor = torch.atanh(theta.clamp(-1 + eps, 1 - eps))
        return torch.where(c == 1, pos, torch.where(c == 2, unit, torch.where(c == 3, cor, theta)))

    def constrain(self, u: torch.Tensor) -> torch.Tensor:
        c = self.codes
        return torch.where(
            c == 1, torch.exp(u), torch.where(c == 2, torch.sigmoid(u), torch.where(c == 3, torch.tanh(u), u))
        )

    def fit(self, theta: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        self.std.fit(self.unconstrain(theta), mask)

    def forward(self, theta: torch.Tensor) -> torch.Tensor:
        return self.std(self.unconstrain(theta))

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        return self.constrain(self.std.inverse(z))

    def log_abs_det(self, theta: torch.Tensor) -> torch.Tensor:
        """``log |dz/dtheta|`` summed over parameters, shape ``theta.shape[:-1]``."""
        c = self.codes
        t = theta
        pos = -torch.log(t.abs().clamp_min(1e-30))
        unit = -torch.log((t * (1 - t)).clamp_min(1e-30))
        cor = -torch.log((1 - t * t).clamp_min(1e-30))
        per = torch.where(c == 1, pos, torch.where(c == 2, unit, torch.where(c == 3, cor, torch.zeros_like(t))))
        return per.sum(-1) + self.std.log_abs_det()

    def check_support(self, theta: torch.Tensor, names: tuple[str, ...]) -> None:
        """A clear error for values outside a parameter's support."""
        c = self.codes
        bad = ((c == 1) & (theta <= 0)) | ((c == 2) & ((theta <= 0) | (theta >= 1))) | (
            (c == 3) & (theta.abs() >= 1)
        )
        if bad.any():
            cols = sorted({names[i] for i in torch.nonzero(bad)[:, -1].tolist()})
            raise ValueError(f"parameter value(s) outside the support of {cols}")

"""An amortized posterior as a differentiable function of a data perturbation: what attacks and the FIM regularizer take.

A *target* holds one or more data sets and exposes

* ``free``: a 0/1 tensor shaped like the data, the entries a perturbation may change
  (observed rows, the chosen columns and groups);
* ``draws(n, generator)``: ``n`` draws of the clean posterior per data set (no gradient), on
  the networks' unconstrained, standardized parameter scale, in antithetic pairs (the second
  half pushes the negated base draws of the first through the flows: the first-order term of a
  KL estimate, pure noise of order ``eps / sqrt(n)`` against a KL of order ``eps^2``, cancels);
* ``log_q(draws, delta)``: ``log q(draws | x + delta)`` per data set and draw ``(B, n)``,
  differentiable in ``delta``.

Perturbations are in the data's *standardized units*: ``delta = 1`` moves a value by one
training-data standard deviation of its column (the standardization the amortizer learned), so
one radius means the same for every column.  The unconstrained scale leaves KL divergences
unchanged (a bijection that does not depend on the data; for the data-bounded parameters of a
multilevel model it is the clean data's bound).

:class:`LinearGaussianPosterior` is an exact posterior ``N(A x + b, Sigma)`` whose worst-case
KL is known in closed form: the check of the attack.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from amortbayes.networks import sample_flow
from amortbayes.networks.context import PairedContext
from amortbayes.sensitivity import encode_context
from amortbayes.simulation import prepare_observed

__all__ = ["LinearGaussianPosterior", "Target", "make_target", "target_from_batch"]


def antithetic_normal(b: int, n: int, dim: int, generator: torch.Generator | None, dtype=torch.float32) -> torch.Tensor:
    """Standard normal draws ``(b, n, dim)`` whose second half is the negated first (odd ``n``: one more plain draw)."""
    half = torch.randn(b, (n + 1) // 2, dim, generator=generator, dtype=dtype)
    return torch.cat([half, -half], dim=1)[:, :n]


class Target(abc.ABC):
    """Data sets and a posterior whose log density is differentiable in a perturbation of the data."""

    free: torch.Tensor

    @abc.abstractmethod
    def draws(self, n: int, generator: torch.Generator | None = None) -> Any:
        """``n`` draws of the clean posterior per data set (any structure ``log_q`` takes), without gradients."""

    @abc.abstractmethod
    def log_q(self, draws: Any, delta: torch.Tensor) -> torch.Tensor:
        """``log q(draws | x + delta)``, ``(B, n)``, differentiable in ``delta`` (standardized units, shaped as ``free``)."""

    def raw(self, delta: torch.Tensor) -> torch.Tensor:
        """``delta`` in the data's own units."""
        return delta

    def sample(self, delta: torch.Tensor, n: int, generator: torch.Generator | None = None) -> np.ndarray:
        """Draws of the (global) parameters on their own scale given the perturbed data, ``(B, n, D)``."""
        raise NotImplementedError


def _column_mask(names: Sequence[str], columns: Sequence[str] | None) -> torch.Tensor:
    if columns is None:
        return torch.ones(len(names))
    if isinstance(columns, str):
        columns = [columns]
    unknown = [c for c in columns if c not in names]
    if unknown or not columns:
        raise ValueError(f"unknown data column(s) {unknown or list(columns)} to perturb; the data columns are "
                         f"{list(names)}")
    return torch.tensor([1.0 if n in columns else 0.0 for n in names])


class _AmortizerTarget(Target):
    """What the targets of both amortizer kinds share: data on the networks' device, the perturbable entries, units."""

    def __init__(self, amortizer: Any, x: torch.Tensor, mask: torch.Tensor, context: torch.Tensor | None,
                 columns: Sequence[str] | None):
        dev = next(amortizer.parameters()).device
        self.amortizer, self.x, self.mask = amortizer, x.to(dev), mask.to(dev)
        self.context = None if context is None else context.to(dev)
        self.scale = amortizer.x_std.std.to(self.x)
        self.free = self.mask[..., None] * _column_mask(amortizer.info.data_names, columns).to(self.x)

    def raw(self, delta: torch.Tensor) -> torch.Tensor:
        return delta * self.free * self.scale

    def _x(self, delta: torch.Tensor | None) -> torch.Tensor:
        return self.x if delta is None else self.x + self.raw(delta)


class FlatTarget(_AmortizerTarget):
    """A :class:`~amortbayes.amortizers.PosteriorAmortizer` and padded data ``x (B, N, F)``."""

    def __init__(self, amortizer: Any, x: torch.Tensor, mask: torch.Tensor, context: torch.Tensor | None = None,
                 columns: Sequence[str] | None = None):
        super().__init__(amortizer, x, mask, context, columns)

    def _condition(self, delta: torch.Tensor | None) -> torch.Tensor:
        return self.amortizer.condition(self._x(delta), self.mask, self.context)

    def draws(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        with torch.no_grad():
            cond = self._condition(None)
            eps = antithetic_normal(cond.shape[0], int(n), len(self.amortizer.info.parameter_names), generator)
            return sample_flow(self.amortizer.flow, int(n), cond, eps=eps)

    def log_q(self, draws: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        b, n, d = draws.shape
        cond = self._condition(delta).repeat_interleave(n, dim=0)
        return self.amortizer.flow.log_prob(draws.reshape(b * n, d), context=cond).reshape(b, n)

    def sample(self, delta: torch.Tensor, n: int, generator: torch.Generator | None = None) -> np.ndarray:
        with torch.no_grad():
            z = sample_flow(self.amortizer.flow, int(n), self._condition(delta), generator)
            return self.amortizer.theta_map.inverse(z).cpu().numpy()


class MultilevelTarget(_AmortizerTarget):
    """A :class:`~amortbayes.amortizers.MultilevelAmortizer` (rows layout) and data ``x (B, J, N, F)``.

    The draws are joint: global and every group's parameters; ``log_q`` is the factorized
    density ``log q(global | x) + sum_j log q(local_j | global, x_j)`` over observed groups.
    ``group``: perturb only this group's rows (an index into the groups), None: every group's.
    """

    def __init__(self, amortizer: Any, x: torch.Tensor, mask: torch.Tensor, group_mask: torch.Tensor,
                 context: torch.Tensor | None = None, columns: Sequence[str] | None = None, group: int | None = None):
        if amortizer.moments:
            raise ValueError("this multilevel amortizer reads each group's moment sums, not its rows "
                             "(group_data='moments'), so its data rows cannot be perturbed; train it with rows "
                             "(a formula model: amortize(..., group_data='rows'))")
        super().__init__(amortizer, x, mask, context, columns)
        self.group_mask = group_mask.to(self.x.device)
        if group is not None:
            j = self.x.shape[1]
            if not 0 <= int(group) < j:
                raise ValueError(f"group index {group} is out of range: the data have {j} groups")
            keep = torch.zeros(j, device=self.x.device)
            keep[int(group)] = 1.0
            self.free = self.free * keep[None, :, None, None]

    def _embed(self, delta: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        with self.amortizer.using_encoded_context(self.context):
            return self.amortizer.embed(self._x(delta), self.mask, self.group_mask)

    def draws(self, n: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        a = self.amortizer
        with torch.no_grad():
            groups, summary = self._embed(None)
            b, j = groups.shape[:2]
            n_glob, n_loc = len(a.info.parameter_names), len(a.info.local_parameter_names)
            zg = sample_flow(a.global_flow, int(n), summary, eps=antithetic_normal(b, int(n), n_glob, generator))
            eps = antithetic_normal(b, int(n), j * n_loc, generator).reshape(b * int(n) * j, 1, n_loc)
            zl = sample_flow(a.local_flow, 1, PairedContext(groups, zg), eps=eps)[:, 0]
            return zg, zl.reshape(b, int(n), j, -1)

    def log_q(self, draws: tuple[torch.Tensor, torch.Tensor], delta: torch.Tensor) -> torch.Tensor:
        groups, summary = self._embed(delta)
        return self.amortizer.log_q_standardized(groups, summary, *draws, self.group_mask)

    def sample(self, delta: torch.Tensor, n: int, generator: torch.Generator | None = None) -> np.ndarray:
        with torch.no_grad():
            _, summary = self._embed(delta)
            zg = sample_flow(self.amortizer.global_flow, int(n), summary, generator)
            return self.amortizer.global_map.inverse(zg).cpu().numpy()


class LinearGaussianPosterior(Target):
    """An exact posterior ``q(theta | x) = N(A vec(x) + b, Sigma)`` of data sets ``x (B, d)`` in standardized units.

    Its KL between clean and perturbed data is ``0.5 (A delta)' Sigma^-1 (A delta)``, so the
    worst case in the L2 ball of radius ``eps`` is ``0.5 eps^2 lambda_max(A' Sigma^-1 A)``
    (:meth:`worst_case_kl`), the yardstick of the attack.

    Example:
        >>> post = LinearGaussianPosterior(torch.eye(2), torch.zeros(2), torch.eye(2), torch.zeros(1, 2))
        >>> post.worst_case_kl(0.5)
        0.125
    """

    def __init__(self, A: torch.Tensor, b: torch.Tensor, Sigma: torch.Tensor, x: torch.Tensor):
        self.A, self.b, self.x = A.double(), b.double(), x.double()
        self.L = torch.linalg.cholesky(Sigma.double())
        self.free = torch.ones_like(self.x)

    def _normal(self, delta: torch.Tensor | None) -> torch.distributions.MultivariateNormal:
        x = self.x if delta is None else self.x + delta
        return torch.distributions.MultivariateNormal(x @ self.A.T + self.b, scale_tril=self.L)

    def draws(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        eps = antithetic_normal(self.x.shape[0], int(n), self.b.shape[0], generator, torch.float64)
        return (self._normal(None).loc[:, None, :] + eps @ self.L.T).detach()

    def log_q(self, draws: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        normal = self._normal(delta)
        return torch.distributions.MultivariateNormal(normal.loc[:, None, :], scale_tril=self.L).log_prob(draws)

    def kl(self, delta: torch.Tensor) -> torch.Tensor:
        """Exact ``KL(q(.|x) || q(.|x + delta))`` per data set."""
        shift = torch.linalg.solve_triangular(self.L, (delta.double() @ self.A.T).T, upper=False)
        return 0.5 * (shift**2).sum(0)

    def fisher(self) -> torch.Tensor:
        """The Fisher information with respect to the data, ``A' Sigma^-1 A`` (the same for every ``x``)."""
        w = torch.linalg.solve_triangular(self.L, self.A, upper=False)
        return w.T @ w

    def worst_case_kl(self, eps: float) -> float:
        """``0.5 eps^2 lambda_max(A' Sigma^-1 A)``: the largest KL a perturbation of L2 norm ``eps`` can cause."""
        return 0.5 * float(eps) ** 2 * float(torch.linalg.eigvalsh(self.fisher())[-1])


def _unwrap(amortizer: Any) -> Any:
    """The posterior network of an amortizer (a fit's, a joint amortizer's) that a target can perturb."""
    from amortbayes.amortizers import MultilevelAmortizer, PosteriorAmortizer

    net = getattr(amortizer, "amortizer", amortizer)  # an AmortizedFit
    if type(net).__name__ == "JointAmortizer":
        net = net.posterior
    if not isinstance(net, (PosteriorAmortizer, MultilevelAmortizer)):
        raise TypeError(f"robustness analyses take a PosteriorAmortizer, a MultilevelAmortizer (rows layout) or a "
                        f"JointAmortizer's posterior network, not a {type(net).__name__}")
    return net


def make_target(amortizer: Any, data: Any, *, columns: Sequence[str] | None = None, group: Any = None,
                context: dict[str, Any] | None = None) -> Target:
    """A target of a user's data: one data set or many, in any form the amortizer's ``sample`` takes.

    ``group``: for a multilevel amortizer, perturb the rows of this group only (its label, or
    its index in the data's group order); None perturbs every group's rows.
    """
    if isinstance(amortizer, Target):
        return amortizer
    from amortbayes.simulation import MultilevelData

    net = _unwrap(amortizer)
    if hasattr(net, "global_flow"):
        d = data if isinstance(data, MultilevelData) else net.prepare(data)
        index = None
        if group is not None:
            labels = list(d.group_labels[0])
            if isinstance(group, (int, np.integer)) and not isinstance(group, bool) and str(group) not in labels:
                index = int(group)
            elif str(group) in labels:
                index = labels.index(str(group))
            else:
                raise ValueError(f"unknown group {group!r}; the data's groups are {labels[:10]}"
                                 f"{' ...' if len(labels) > 10 else ''}")
        return MultilevelTarget(net, d.x, d.mask, d.group_mask, encode_context(net.contexts, context, d.x.shape[0]),
                                columns, index)
    if group is not None:
        raise ValueError("group= is for multilevel amortizers; this one takes single-level data sets")
    x, mask, _ = prepare_observed(data, net.info, warn_outside=False)
    return FlatTarget(net, x, mask, encode_context(net.contexts, context, x.shape[0]), columns)


def target_from_batch(amortizer: Any, batch: dict[str, torch.Tensor], columns: Sequence[str] | None = None) -> Target:
    """A target of simulated data sets (a training or validation batch)."""
    net = _unwrap(amortizer)
    context = batch.get("context")
    if context is None and net.contexts:  # simulations without contexts: the default ones
        context = encode_context(net.contexts, {}, batch["x"].shape[0])
    if hasattr(net, "global_flow"):
        return MultilevelTarget(net, batch["x"], batch["mask"], batch["group_mask"], context, columns)
    return FlatTarget(net, batch["x"], batch["mask"], context, columns)


def norm_of(delta: torch.Tensor, norm: str) -> torch.Tensor:
    """Per data set norm of a perturbation ``(B, ...)``: ``"l2"`` or ``"linf"``."""
    flat = delta.reshape(delta.shape[0], -1)
    return flat.norm(dim=1) if norm == "l2" else flat.abs().amax(dim=1)

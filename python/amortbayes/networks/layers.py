"""Building blocks shared by the summary networks and the flows: MLPs and padded-set reshaping."""

from __future__ import annotations

import torch
from torch import nn

from amortbayes.networks.context import PairedContext


def mlp(n_in: int, n_hidden: int, n_out: int, depth: int = 2) -> nn.Sequential:
    """A ReLU MLP with ``depth`` hidden layers of width ``n_hidden``."""
    layers: list[nn.Module] = []
    width = n_in
    for _ in range(depth):
        layers += [nn.Linear(width, n_hidden), nn.ReLU()]
        width = n_hidden
    layers.append(nn.Linear(width, n_out))
    return nn.Sequential(*layers)


class SkipMLP(nn.Module):
    """``A x + b + MLP(x)``: a ReLU MLP (:func:`mlp`) beside a linear path from input to output.

    Posterior means are close to linear in exact statistics over most of the prior (a
    population mean follows the mean of the groups' intercepts) and must come out to a
    small fraction of the data's scale (sleepstudy: 0.1 posterior SD of ``b_Intercept`` is
    0.6 % of the training data's SD).  A ReLU network approximates a linear map only
    piecewise; the linear path carries it exactly and the MLP the curvature (shrinkage
    towards the prior, nonlinear statistics).

    Example:
        >>> SkipMLP(3, 8, 2)(torch.zeros(5, 3)).shape
        torch.Size([5, 2])
    """

    def __init__(self, n_in: int, n_hidden: int, n_out: int, depth: int = 2):
        super().__init__()
        self.linear = nn.Linear(n_in, n_out)
        self.mlp = mlp(n_in, n_hidden, n_out, depth)

    def forward(self, x: torch.Tensor | PairedContext) -> torch.Tensor:
        if isinstance(x, PairedContext):  # first layers from one product per half (see PairedContext)
            first = self.mlp[0]
            both = x.linear(torch.cat([self.linear.weight, first.weight]), torch.cat([self.linear.bias, first.bias]))
            direct, hidden = both.split([self.linear.out_features, first.out_features], dim=-1)
            return direct + self.mlp[1:](hidden)
        return self.linear(x) + self.mlp(x)


def flatten_lead(x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, tuple]:
    """Padded sets ``(..., N, F)`` and masks ``(..., N)`` as ``(B, N, F)``, ``(B, N)`` and the leading shape."""
    lead = x.shape[:-2]
    return x.reshape(-1, *x.shape[-2:]), mask.reshape(-1, mask.shape[-1]), lead

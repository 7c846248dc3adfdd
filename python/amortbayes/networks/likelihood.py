"""Likelihood network: a conditional flow ``q(x_i | theta, c_i)`` over one observation of exchangeable data.

For a data set of exchangeable rows ``x_1..x_N`` given the parameters (and fixed covariates
``c_i``, columns the model does not simulate), the likelihood factorizes over rows,

    log p(x | theta) = sum_i log p(x_i | theta, c_i),

so one conditional flow over a single row, conditioned on the standardized parameters and
the row's covariates, is a normalized surrogate of the whole data set's likelihood (the
likelihood network of JANA, Radev et al. 2023).  Its negative log density, averaged over
the observed rows of a batch, is the training loss term; sampling it row by row simulates
data (a surrogate simulator).  Rows are standardized with statistics learned from
simulations, and densities are returned on the data's own scale (the log-Jacobian of the
standardization subtracted).  The modelled columns must be continuous.

References:
    Papamakarios, Sterratt & Murray (2019). Sequential neural likelihood. AISTATS.
    Radev et al. (2023). JANA: Jointly amortized neural approximation of complex Bayesian
    models. UAI.
"""

from __future__ import annotations

import torch
from torch import nn

from amortbayes.networks.flows import FlowSettings, build_flow, sample_flow
from amortbayes.networks.standardize import Standardizer


class LikelihoodNetwork(nn.Module):
    """Conditional flow over a row's ``features`` modelled columns given ``parameters`` (standardized) and ``covariates``.

    Args:
        features: number of modelled (simulated) columns of a row.
        parameters: number of parameters it is conditioned on.
        covariates: number of covariate columns a row is conditioned on (0 for none).
        settings: the flow.

    Example:
        >>> net = LikelihoodNetwork(2, 3, 0, FlowSettings(layers=2, hidden=16))
        >>> x, mask = torch.randn(4, 7, 2), torch.ones(4, 7)
        >>> net.adapt(x, mask)
        >>> net.log_prob_rows(x, mask, torch.zeros(4, 3)).shape
        torch.Size([4, 7])
        >>> net.sample_rows(torch.zeros(4, 3), 5).shape
        torch.Size([4, 5, 2])
    """

    def __init__(self, features: int, parameters: int, covariates: int, settings: FlowSettings):
        super().__init__()
        if features < 1:
            raise ValueError("a likelihood network needs at least one modelled column")
        self.features, self.parameters, self.covariates = int(features), int(parameters), int(covariates)
        self.x_std = Standardizer(features)
        self.c_std = Standardizer(max(covariates, 1))
        self.flow = build_flow(features, parameters + covariates, settings)

    @torch.no_grad()
    def adapt(self, x: torch.Tensor, mask: torch.Tensor, covariates: torch.Tensor | None = None) -> None:
        """Learn the standardization of the modelled columns ``x (..., N, F)`` (and covariates) over observed rows."""
        self.x_std.fit(x, mask)
        if self.covariates:
            self.c_std.fit(covariates, mask)

    def _context(self, z_theta: torch.Tensor, rows: int, covariates: torch.Tensor | None) -> torch.Tensor:
        """``(B * rows, D + C)`` context of every row: its data set's parameters and its own covariates."""
        ctx = z_theta.repeat_interleave(rows, dim=0)
        if self.covariates:
            if covariates is None:
                raise ValueError(f"this likelihood network is conditioned on {self.covariates} covariate column(s)")
            ctx = torch.cat([ctx, self.c_std(covariates).reshape(-1, self.covariates)], dim=-1)
        return ctx

    def log_prob_rows(self, x: torch.Tensor, mask: torch.Tensor, z_theta: torch.Tensor,
                      covariates: torch.Tensor | None = None) -> torch.Tensor:
        """``log q(x_i | theta, c_i)`` of each row of ``x (B, N, F)`` on the data's scale, ``(B, N)``; 0 on padded rows.

        ``z_theta (B, D)`` are the standardized parameters of each data set, ``covariates (B, N, C)``.
        """
        b, n, f = x.shape
        z = self.x_std(x).reshape(b * n, f)
        lp = self.flow.log_prob(z, context=self._context(z_theta, n, covariates)).reshape(b, n)
        lp = lp - torch.log(self.x_std.std).sum()
        return torch.where(mask > 0, lp, torch.zeros_like(lp))

    def sample_rows(self, z_theta: torch.Tensor, n: int, covariates: torch.Tensor | None = None,
                    generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` rows per data set, ``(B, n, F)`` on the data's scale (``covariates (B, n, C)`` for each row)."""
        b = z_theta.shape[0]
        if self.covariates:
            z = sample_flow(self.flow, 1, self._context(z_theta, n, covariates), generator)[:, 0]
        else:
            z = sample_flow(self.flow, int(n), z_theta, generator).reshape(b * n, -1)
        return (z * self.x_std.std + self.x_std.mean).reshape(b, n, self.features)


__all__ = ["LikelihoodNetwork"]

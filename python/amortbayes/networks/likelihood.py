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
standardization subtracted).  The modelled columns must be continuous, unless the model
declares a row encoding (:mod:`amortbayes.networks.row_encoding`): then a categorical head
``q(c | theta)`` models each row's category (a response's boundary) and the flow the
continuous part on the encoding's unbounded scale given ``theta`` and the category (a mixed
likelihood network, Boelts et al. 2022), whose support bound may move with ``theta``.

For a time series the rows are not exchangeable; the *recurrent* variant factorizes
``log p(x | theta) = sum_t log p(x_t | x_<t, theta)`` and conditions the flow of row ``t``
on a GRU's state after rows ``1..t-1`` (and on ``theta``, which the GRU also reads), so it
is still normalized and is sampled row after row (the recurrent likelihood networks of
JANA's compartmental-model experiment).  Padded rows come after the observed ones.

References:
    Papamakarios, Sterratt & Murray (2019). Sequential neural likelihood. AISTATS.
    Boelts, Lueckmann, Gao & Macke (2022). Flexible and efficient simulation-based inference
    for models of decision-making. eLife.
    Radev et al. (2023). JANA: Jointly amortized neural approximation of complex Bayesian
    models. UAI.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from amortbayes.networks.flows import FlowSettings, build_flow, sample_flow
from amortbayes.networks.row_encoding import RowEncoding
from amortbayes.networks.standardize import Standardizer


class LikelihoodNetwork(nn.Module):
    """Conditional flow over a row's ``features`` modelled columns given ``parameters`` (standardized) and ``covariates``.

    Args:
        features: number of modelled (simulated) columns of a row.
        parameters: number of parameters it is conditioned on.
        covariates: number of covariate columns a row is conditioned on (0 for none).
        settings: the flow.
        recurrent: 0, or the width of the GRU of the time-series variant.
        encoding: the model's row encoding (default: the identity); the parameters it reads
            (raw, not standardized) are passed as ``theta`` to every method.

    Example:
        >>> net = LikelihoodNetwork(2, 3, 0, FlowSettings(layers=2, hidden=16))
        >>> x, mask = torch.randn(4, 7, 2), torch.ones(4, 7)
        >>> net.adapt(x, mask)
        >>> net.log_prob_rows(x, mask, torch.zeros(4, 3)).shape
        torch.Size([4, 7])
        >>> net.sample_rows(torch.zeros(4, 3), 5).shape
        torch.Size([4, 5, 2])
    """

    def __init__(self, features: int, parameters: int, covariates: int, settings: FlowSettings,
                 recurrent: int = 0, encoding: RowEncoding | None = None):
        super().__init__()
        if features < 1:
            raise ValueError("a likelihood network needs at least one modelled column")
        if recurrent < 0:
            raise ValueError(f"recurrent must be 0 (exchangeable rows) or a GRU width, got {recurrent}")
        self.encoding = encoding or RowEncoding(features)
        if recurrent and self.encoding.categories:
            raise ValueError("the recurrent likelihood network takes continuous rows only (no row encoding with "
                             "categories)")
        self.features, self.parameters, self.covariates = int(features), int(parameters), int(covariates)
        self.recurrent = int(recurrent)
        k = self.encoding.categories
        continuous = self.encoding.features
        self.x_std = Standardizer(continuous)  # of the encoding's continuous part
        self.c_std = Standardizer(max(covariates, 1))
        if self.recurrent:  # the state after the previous rows, from the rows, their covariates and theta
            self.gru = nn.GRU(continuous + covariates + parameters, self.recurrent, batch_first=True)
        if k:  # q(category | theta, covariates)
            h = settings.hidden
            self.head = nn.Sequential(nn.Linear(parameters + covariates, h), nn.SiLU(), nn.Linear(h, h), nn.SiLU(),
                                      nn.Linear(h, k))
        self.flow = build_flow(continuous, parameters + covariates + self.recurrent + k, settings)

    @torch.no_grad()
    def adapt(self, x: torch.Tensor, mask: torch.Tensor, covariates: torch.Tensor | None = None,
              theta: torch.Tensor | None = None) -> None:
        """Learn the standardization of the modelled columns ``x (..., N, F)`` (and covariates) over observed rows."""
        _, y, _, valid = self.encoding.encode(x, theta)
        self.x_std.fit(y, mask * valid)
        if self.covariates:
            self.c_std.fit(covariates, mask)

    def _with_codes(self, context: torch.Tensor, codes: torch.Tensor | None) -> torch.Tensor:
        if not self.encoding.categories:
            return context
        return torch.cat([context, nn.functional.one_hot(codes.reshape(-1), self.encoding.categories).to(context)], -1)

    def _context(self, z_theta: torch.Tensor, rows: int, covariates: torch.Tensor | None) -> torch.Tensor:
        """``(B * rows, D + C)`` context of every row: its data set's parameters and its own covariates."""
        ctx = z_theta.repeat_interleave(rows, dim=0)
        if self.covariates:
            if covariates is None:
                raise ValueError(f"this likelihood network is conditioned on {self.covariates} covariate column(s)")
            ctx = torch.cat([ctx, self.c_std(covariates).reshape(-1, self.covariates)], dim=-1)
        return ctx

    def log_prob_rows(self, x: torch.Tensor, mask: torch.Tensor, z_theta: torch.Tensor,
                      covariates: torch.Tensor | None = None, theta: torch.Tensor | None = None) -> torch.Tensor:
        """``log q(x_i | theta, c_i)`` of each row of ``x (B, N, F)`` on the data's scale, ``(B, N)``; 0 on padded rows.

        ``z_theta (B, D)`` are the standardized parameters of each data set, ``covariates (B, N, C)``,
        ``theta`` the raw parameters (read by a row encoding).  A row outside the encoding's
        support at ``theta`` has log density ``-inf``.
        """
        b, n, _ = x.shape
        codes, y, log_det, valid = self.encoding.encode(x, theta)
        z = self.x_std(y)
        context = self._context(z_theta, n, covariates)
        if self.recurrent:
            context = torch.cat([context, self._states(z, z_theta, covariates).reshape(b * n, -1)], dim=-1)
        lp = self.flow.log_prob(z.reshape(b * n, -1), context=self._with_codes(context, codes)).reshape(b, n)
        lp = lp - torch.log(self.x_std.std).sum() + log_det
        if codes is not None:
            logits = self.head(self._context(z_theta, n, covariates)).log_softmax(-1)
            lp = lp + logits.gather(-1, codes.reshape(-1, 1)).reshape(b, n)
        lp = torch.where(valid, lp, torch.full_like(lp, -math.inf))
        return torch.where(mask > 0, lp, torch.zeros_like(lp))

    def sample_rows(self, z_theta: torch.Tensor, n: int, covariates: torch.Tensor | None = None,
                    generator: torch.Generator | None = None, theta: torch.Tensor | None = None) -> torch.Tensor:
        """``n`` rows per data set, ``(B, n, F)`` on the data's scale (``covariates (B, n, C)`` for each row)."""
        b, n = z_theta.shape[0], int(n)
        if self.recurrent:
            return self.encoding.decode(None, self._sample_series(z_theta, n, covariates, generator), theta)
        codes = None
        if self.encoding.categories or self.covariates:
            context = self._context(z_theta, n, covariates)
            if self.encoding.categories:
                probs = self.head(context).softmax(-1)
                codes = torch.multinomial(probs, 1, generator=generator).reshape(b, n)
            z = sample_flow(self.flow, 1, self._with_codes(context, codes), generator)[:, 0]
        else:
            z = sample_flow(self.flow, n, z_theta, generator).reshape(b * n, -1)
        y = (z * self.x_std.std + self.x_std.mean).reshape(b, n, -1)
        return self.encoding.decode(codes, y, theta)

    def _gru_inputs(self, previous: torch.Tensor, z_theta: torch.Tensor, covariates: torch.Tensor | None) -> torch.Tensor:
        """GRU inputs ``(B, T, F + C + D)``: each step's previous standardized row, its own covariates and theta."""
        parts = [previous]
        if self.covariates:
            parts.append(self.c_std(covariates))
        parts.append(z_theta[:, None, :].expand(-1, previous.shape[1], -1))
        return torch.cat(parts, dim=-1)

    def _states(self, z: torch.Tensor, z_theta: torch.Tensor, covariates: torch.Tensor | None) -> torch.Tensor:
        """The GRU state before each row, ``(B, N, H)``: after rows ``1..t-1`` (zeros before the first)."""
        previous = torch.cat([torch.zeros_like(z[:, :1]), z[:, :-1]], dim=1)
        states, _ = self.gru(self._gru_inputs(previous, z_theta, covariates))
        return states

    def _sample_series(self, z_theta: torch.Tensor, n: int, covariates: torch.Tensor | None,
                       generator: torch.Generator | None) -> torch.Tensor:
        """Rows one after another, each given the GRU state after the ones drawn before it."""
        b = z_theta.shape[0]
        previous = torch.zeros(b, 1, self.encoding.features, device=z_theta.device, dtype=z_theta.dtype)
        hidden, rows = None, []
        for t in range(n):
            cov = None if covariates is None else covariates[:, t : t + 1]
            state, hidden = self.gru(self._gru_inputs(previous, z_theta, cov), hidden)
            context = torch.cat([self._context(z_theta, 1, cov), state[:, 0]], dim=-1)
            previous = sample_flow(self.flow, 1, context, generator)[:, :, :]  # (B, 1, F)
            rows.append(previous)
        z = torch.cat(rows, dim=1)
        return z * self.x_std.std + self.x_std.mean


__all__ = ["LikelihoodNetwork"]

"""Summary networks for time series: the data set's rows are time steps, padded at the end.

Each maps ``x (..., T, F)`` with a ``mask (..., T)`` that marks an observed prefix to a
fixed-size summary, and satisfies the summary contract of :mod:`amortbayes.networks.summary`
(padding is invisible, ``log T`` is seen).
"""

from __future__ import annotations

import torch
from torch import nn

from amortbayes.networks.layers import flatten_lead, mlp
from amortbayes.simulation import log_n


class RecurrentSummary(nn.Module):
    """GRU or LSTM over a time series; the summary is the state after the last observed step.

    The mask must mark an observed prefix (time series are padded at the end).

    Example:
        >>> net = RecurrentSummary(1, 8, hidden=16)
        >>> mask = torch.tensor([[1.0, 1, 1, 0], [1, 1, 1, 1]])
        >>> net(torch.randn(2, 4, 1), mask).shape
        torch.Size([2, 8])
    """

    def __init__(self, in_features: int, out_features: int, hidden: int = 64, cell: str = "gru"):
        super().__init__()
        if cell not in ("gru", "lstm"):
            raise ValueError(f"unknown recurrent cell {cell!r}; use 'gru' or 'lstm'")
        self.out_features = out_features
        rnn = nn.GRU if cell == "gru" else nn.LSTM
        self.rnn = rnn(in_features, hidden, batch_first=True)
        self.head = mlp(hidden + 1, hidden, out_features, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        xf, mf, lead = flatten_lead(x, mask)
        lengths = mf.sum(-1).clamp_min(1).long().cpu()
        packed = nn.utils.rnn.pack_padded_sequence(xf, lengths, batch_first=True, enforce_sorted=False)
        _, state = self.rnn(packed)
        h = state[0] if isinstance(state, tuple) else state
        out = self.head(torch.cat([h[-1], log_n(mf)], dim=-1))
        return out.reshape(*lead, -1)


class TemporalConv(nn.Module):
    """Causal dilated 1-D convolutions over a time series, pooled over the observed steps.

    Each residual layer mixes a step with the ``2 d`` steps before it (kernel 3, dilation
    ``d = 1, 2, 4, ...``); the summary is the mean of the top layer over the observed steps,
    its value at the last observed step and ``log T``, through a small MLP.  Causal left
    padding means no observed step sees a padded one, so padding at the end is invisible.
    The mean over steps of local features is what the sufficient statistics of
    autoregressive and state-space models look like (sums of ``x_t``, ``x_t x_{t-1}``, ...),
    and all steps are computed in parallel.  Measured on the AR(1) task of
    ``benchmarks/sbi_tasks.py`` at 10^4 simulations (2 CPU cores): 65 s to C2ST 0.60, against
    326 s to 0.56 for the GRU summary, which steps through time one step at a time.

    Example:
        >>> net = TemporalConv(1, 8, hidden=16)
        >>> mask = torch.tensor([[1.0, 1, 1, 0], [1, 1, 1, 1]])
        >>> net(torch.randn(2, 4, 1), mask).shape
        torch.Size([2, 8])
    """

    def __init__(self, in_features: int, out_features: int, hidden: int = 64, layers: int = 3, kernel: int = 3):
        super().__init__()
        if layers < 1 or kernel < 2:
            raise ValueError(f"TemporalConv needs at least one layer and a kernel of 2 or more, got {layers}, {kernel}")
        self.out_features = out_features
        self.inp = nn.Conv1d(in_features, hidden, 1)
        self.convs = nn.ModuleList(nn.Conv1d(hidden, hidden, kernel, dilation=2**i) for i in range(layers))
        self.pads = [(kernel - 1) * 2**i for i in range(layers)]
        self.head = mlp(2 * hidden + 1, hidden, out_features, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        xf, mf, lead = flatten_lead(x, mask)
        h = self.inp((xf * mf.unsqueeze(-1)).transpose(1, 2))  # (B, hidden, T)
        for conv, pad in zip(self.convs, self.pads):
            h = h + torch.relu(conv(nn.functional.pad(h, (pad, 0))))
        m = mf.unsqueeze(1)  # (B, 1, T)
        mean = (h * m).sum(-1) / m.sum(-1).clamp_min(1.0)
        last = mf.sum(-1).clamp_min(1).long() - 1
        at_last = h.gather(-1, last.view(-1, 1, 1).expand(-1, h.shape[1], 1)).squeeze(-1)
        out = self.head(torch.cat([mean, at_last, log_n(mf)], dim=-1))
        return out.reshape(*lead, -1)

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

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

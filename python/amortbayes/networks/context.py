"""A flow context made of all pairs of two sets of rows, never written out.

Ancestral sampling of a multilevel posterior (eq. 18) conditions the shared local flow on
``[h(x_j), z_i]`` for every group ``j`` and global draw ``i``: J = 100 groups and 1,000
draws make 100,000 context rows that repeat only 1,100 distinct halves.  A linear layer of
such a row splits as

    W [h_j, z_i] + b = W_h h_j + (W_z z_i + b),

so the first layer of every conditioner costs one product per group and one per draw and a
broadcast sum, instead of a product over 100,000 concatenated rows (which would also have
to be built and copied first).  :class:`PairedContext` carries the two halves; the coupling
layers (:mod:`amortbayes.networks.coupling`) and the flows' Gaussian base accept it
wherever they accept a context tensor.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F


@dataclasses.dataclass(frozen=True)
class PairedContext:
    """Context row ``(b, i, j)`` is ``[inner[b, j], outer[b, i]]``; rows are ordered ``(b, i, j)``.

    Attributes:
        inner: ``(B, J, C_in)``, the fast-varying half (a data set's group summaries).
        outer: ``(B, I, C_out)``, the slow-varying half (a data set's global draws).

    Example:
        >>> inner, outer = torch.randn(1, 3, 2), torch.randn(1, 4, 5)
        >>> pc = PairedContext(inner, outer)
        >>> pc.shape
        (12, 7)
        >>> layer = torch.nn.Linear(7, 6)
        >>> torch.allclose(pc.linear(layer.weight, layer.bias), layer(pc.materialize()), atol=1e-6)
        True
    """

    inner: torch.Tensor
    outer: torch.Tensor

    def __post_init__(self) -> None:
        if self.inner.dim() != 3 or self.outer.dim() != 3 or self.inner.shape[0] != self.outer.shape[0]:
            raise ValueError(
                f"a paired context needs inner (B, J, C) and outer (B, I, C) halves, got "
                f"{tuple(self.inner.shape)} and {tuple(self.outer.shape)}"
            )

    @property
    def shape(self) -> tuple[int, int]:
        b, j, c_in = self.inner.shape
        return (b * self.outer.shape[1] * j, c_in + self.outer.shape[2])

    @property
    def dtype(self) -> torch.dtype:
        return self.outer.dtype

    @property
    def device(self) -> torch.device:
        return self.outer.device

    def materialize(self) -> torch.Tensor:
        """The ``(B I J, C_in + C_out)`` context tensor itself."""
        b, j, _ = self.inner.shape
        i = self.outer.shape[1]
        rows = torch.cat([self.inner[:, None].expand(b, i, j, -1), self.outer[:, :, None].expand(b, i, j, -1)], -1)
        return rows.reshape(b * i * j, -1)

    def linear(self, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        """``F.linear(self.materialize(), weight, bias)`` from one product per half, ``(B I J, out)``."""
        c_in = self.inner.shape[-1]
        a = F.linear(self.inner, weight[:, :c_in])  # (B, J, out)
        o = F.linear(self.outer, weight[:, c_in:], bias)  # (B, I, out)
        return (o[:, :, None] + a[:, None]).reshape(-1, weight.shape[0])

    def pieces(self, rows: int) -> list[tuple[int, int, PairedContext]]:
        """Consecutive row ranges ``(start, stop, context)`` of whole ``(b, i)`` blocks, about ``rows`` rows each."""
        b, j, _ = self.inner.shape
        i = self.outer.shape[1]
        per = max(1, rows // j)
        out = []
        for k in range(b):
            for s in range(0, i, per):
                part = PairedContext(self.inner[k : k + 1], self.outer[k : k + 1, s : s + per])
                out.append(((k * i + s) * j, (k * i + min(s + per, i)) * j, part))
        return out

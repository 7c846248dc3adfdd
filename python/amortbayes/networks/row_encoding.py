"""Row encodings: a model's bijection from one data row to what a likelihood flow models best.

A likelihood network (:mod:`amortbayes.networks.likelihood`) fits a conditional flow to one
row of data.  A flow is smooth and has unbounded support, so rows with a discrete part or a
hard bound that moves with the parameters cost it accuracy exactly where densities are
largest.  A model can declare an encoding instead (its ``row_encoding()``, a small dict that
is saved with the amortizer's settings): for each row and parameter value it gives

* ``codes`` — a category ``0..K-1`` (``K = categories``; none when ``K = 0``), modelled by a
  categorical head ``q(c | theta)``,
* ``y`` — the continuous part on an unbounded scale, modelled by the flow given ``theta`` and
  the category, and
* ``log_det`` — ``log |dy / dx|``, so that ``log q(x | theta) = log q(c | theta) +
  log q(y | c, theta) + log_det``: still a normalized density of the row as the model writes it,
* ``valid`` — False where the row lies outside the support at that ``theta`` (density 0).

This is the mixed neural likelihood of Boelts et al. (2022) for choices and response times,
with the response-time bound made exact.

Encodings:

``{"kind": "identity"}``
    the row as it is.
``{"kind": "signed_rt", "shift": NAME}``
    one column of signed response times (``+rt`` upper boundary, ``-rt`` lower), ``NAME`` the
    parameter below which no response can come (non-decision time): category = boundary,
    ``y = log(rt - shift)``, ``log_det = -log(rt - shift)``.

References:
    Boelts, Lueckmann, Gao & Macke (2022). Flexible and efficient simulation-based inference
    for models of decision-making. eLife 11, e77220.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor

__all__ = ["RowEncoding", "SignedRT", "make_row_encoding"]


class RowEncoding:
    """The identity encoding: ``features`` continuous columns, no category, support everywhere."""

    categories = 0

    def __init__(self, features: int):
        self.features = int(features)

    def spec(self) -> dict[str, Any]:
        return {"kind": "identity"}

    def encode(self, rows: Tensor, theta: Tensor | None) -> tuple[Tensor | None, Tensor, Tensor, Tensor]:
        """``rows (B, N, F)``, raw ``theta (B, D)`` -> ``codes (B, N)`` or None, ``y (B, N, F')``, ``log_det``, ``valid``."""
        zeros = rows.new_zeros(rows.shape[:-1])
        return None, rows, zeros, torch.ones_like(zeros, dtype=torch.bool)

    def decode(self, codes: Tensor | None, y: Tensor, theta: Tensor | None) -> Tensor:
        """The rows ``(B, N, F)`` of codes and continuous parts (inverse of :meth:`encode`)."""
        return y


class SignedRT(RowEncoding):
    """Signed response times: boundary as a category, ``log(rt - shift)`` as the continuous part.

    Example:
        >>> enc = SignedRT(shift_index=0)
        >>> codes, y, log_det, valid = enc.encode(torch.tensor([[[0.5], [-0.3], [0.1]]]), torch.tensor([[0.2]]))
        >>> codes.tolist(), valid.tolist()
        ([[1, 0, 1]], [[True, True, False]])
        >>> enc.decode(codes[:, :2], y[:, :2], torch.tensor([[0.2]])).flatten().tolist()  # doctest: +ELLIPSIS
        [0.5, -0.3...]
    """

    categories = 2

    def __init__(self, shift_index: int, shift_name: str = "t0"):
        super().__init__(1)
        self.shift_index, self.shift_name = int(shift_index), shift_name

    def spec(self) -> dict[str, Any]:
        return {"kind": "signed_rt", "shift": self.shift_name}

    def _shift(self, theta: Tensor | None, like: Tensor) -> Tensor:
        if theta is None:
            raise ValueError("the signed_rt row encoding needs the parameters (its bound moves with them)")
        return theta[:, self.shift_index].to(like.dtype)[:, None]

    def encode(self, rows, theta):
        x = rows[..., 0]
        codes = (x > 0).long()
        gap = x.abs() - self._shift(theta, x)
        valid = gap > 0
        log_gap = torch.log(torch.where(valid, gap, torch.ones_like(gap)))  # finite everywhere: no NaN gradients
        return codes, log_gap[..., None], -log_gap, valid

    def decode(self, codes, y, theta):
        # log(rt - shift) capped at 30 (rt - shift of 10^13 s): a barely trained flow's far tail must not
        # overflow float32 to inf; a trained one puts no mass there
        rt = self._shift(theta, y) + torch.exp(y[..., 0].clamp(max=30.0))
        return torch.where(codes > 0, rt, -rt)[..., None]


def make_row_encoding(spec: dict[str, Any] | None, features: int, parameter_names: Sequence[str]) -> RowEncoding:
    """The encoding a spec names (None: identity), checked against the row width and the parameter names."""
    kind = (spec or {}).get("kind", "identity")
    if kind == "identity":
        return RowEncoding(features)
    if kind == "signed_rt":
        shift = spec.get("shift")
        if shift not in parameter_names:
            raise ValueError(f"row encoding signed_rt: shift {shift!r} is not a parameter; the parameters are "
                             f"{list(parameter_names)}")
        if features != 1:
            raise ValueError(f"row encoding signed_rt models one column of signed response times, got {features}")
        return SignedRT(list(parameter_names).index(shift), shift)
    raise ValueError(f"unknown row encoding {kind!r}; known: 'identity', 'signed_rt'")

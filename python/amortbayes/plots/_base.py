"""What every figure shares: panels on a grid, saving as PNG, the colours."""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

PathLike = str | os.PathLike[str]

_DPI = 120
_MAIN = "#1f4e79"
_REFERENCE = "#d95f02"
_BAND = "#b0b0b0"


def _panels(n: int, width: float = 3.2, height: float = 2.8) -> tuple[Figure, list[Axes]]:
    """A figure with ``n`` panels on a grid of at most four columns."""
    from matplotlib.figure import Figure

    cols = min(n, 4)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(cols * width, rows * height), layout="constrained")
    axes = list(fig.subplots(rows, cols, squeeze=False).reshape(-1))
    for ax in axes[n:]:
        fig.delaxes(ax)
    return fig, axes[:n]


def _finish(fig: Figure, path: PathLike | None) -> Figure:
    if path is not None:
        fig.savefig(os.fspath(path), dpi=_DPI, format="png")
    return fig


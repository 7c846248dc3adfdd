"""The training history figure."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from matplotlib.figure import Figure

from amortbayes.plots._base import _MAIN, _REFERENCE, PathLike, _finish, _panels


def plot_loss(history: pd.DataFrame, path: PathLike | None = None) -> Figure:
    """Training (and, if present, validation) loss per epoch, with the kept epoch marked.

    Args:
        history: Data frame with columns ``epoch``, ``train_loss`` and optionally ``val_loss``
            (NaN where no validation loss was computed) and ``kept`` (the epoch whose
            weights the amortizer ends with, as :func:`amortbayes.fit` returns it).
        path: Where to save a PNG, if given.

    Example:
        >>> h = pd.DataFrame({"epoch": [1, 2, 3], "train_loss": [3.0, 2.0, 1.5], "val_loss": [3.1, 2.2, 1.8]})
        >>> fig = plot_loss(h)
    """
    if not isinstance(history, pd.DataFrame):
        raise TypeError(f"history must be a pandas DataFrame, got {type(history).__name__}")
    missing = [c for c in ("epoch", "train_loss") if c not in history.columns]
    if missing:
        raise ValueError(f"history is missing column(s) {missing}; it needs epoch, train_loss and optionally val_loss")
    if len(history) == 0:
        raise ValueError("history has no rows")
    fig, axes = _panels(1, width=5.0, height=3.4)
    ax = axes[0]
    ax.plot(history["epoch"], history["train_loss"], color=_MAIN, marker=".", label="train")
    if "val_loss" in history.columns and history["val_loss"].notna().any():
        ax.plot(history["epoch"], history["val_loss"], color=_REFERENCE, marker=".", label="validation")
    if "kept" in history.columns and history["kept"].astype(bool).any():
        kept = history[history["kept"].astype(bool)].iloc[0]
        ax.axvline(kept["epoch"], color="0.5", linestyle=":", linewidth=1.0,
                   label=f"kept (epoch {int(kept['epoch'])})")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.legend(frameon=False)
    return _finish(fig, path)

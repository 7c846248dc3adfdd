"""What every amortizer shares: the contract, named draws as DataFrames, user-theta parsing, summaries.

An amortizer is an ``nn.Module`` with ``loss(batch) -> Tensor`` (what :func:`amortbayes.fit`
minimises), ``adapt(batch)`` (learn standardization from a first batch of simulations),
``sample(data, n)`` and, where defined, ``log_prob(theta, data)``; plus ``config()`` /
``from_config()`` so :mod:`amortbayes.io` can rebuild it from JSON.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd
import torch

from amortbayes.simulation import Batch


@runtime_checkable
class Amortizer(Protocol):
    """The minimum an amortizer implements (it is also a ``torch.nn.Module``)."""

    def loss(self, batch: Batch) -> torch.Tensor: ...

    def adapt(self, batch: Batch) -> None: ...

    def config(self) -> dict[str, Any]: ...


def draws_to_frame(
    draws: np.ndarray, names: Sequence[str], single: bool
) -> pd.DataFrame:
    """``(B, n, D)`` draws to a DataFrame: columns ``names`` (+ ``dataset``, ``draw`` if ``B > 1``)."""
    b, n, d = draws.shape
    if single:
        return pd.DataFrame(draws[0], columns=list(names))
    df = pd.DataFrame(draws.reshape(b * n, d), columns=list(names))
    df.insert(0, "draw", np.tile(np.arange(n), b))
    df.insert(0, "dataset", np.repeat(np.arange(b), n))
    return df


def summarize_draws(
    draws: pd.DataFrame, probs: Sequence[float] = (0.025, 0.5, 0.975), by: str | None = None
) -> pd.DataFrame:
    """Posterior mean, sd and quantiles per parameter (rows), like ``brms::posterior_summary``.

    Example:
        >>> df = pd.DataFrame({"mu": np.arange(101.0)})
        >>> summarize_draws(df).loc["mu", ["mean", "q50"]].tolist()
        [50.0, 50.0]
    """
    skip = {"dataset", "draw", "group"}

    def one(frame: pd.DataFrame) -> pd.DataFrame:
        values = frame[[c for c in frame.columns if c not in skip]]
        out = pd.DataFrame({"mean": values.mean(), "sd": values.std(ddof=1)})
        for p in probs:
            out[f"q{100 * p:g}"] = values.quantile(p)
        return out

    if by is not None and by in draws.columns:
        return pd.concat({k: one(g) for k, g in draws.groupby(by)}, names=[by, "parameter"])
    out = one(draws)
    out.index.name = "parameter"
    return out


def theta_from_user(theta: Any, names: Sequence[str]) -> np.ndarray:
    """Parameter values from an array, dict or DataFrame, as ``(M, D)`` float32 in ``names`` order.

    Raises:
        ValueError: unknown or missing parameter names, wrong width, or non-finite values.
    """
    names = list(names)
    if isinstance(theta, dict):
        theta = pd.DataFrame({k: np.atleast_1d(np.asarray(v, dtype=float)) for k, v in theta.items()})
    if isinstance(theta, pd.Series):
        theta = theta.to_frame().T
    if isinstance(theta, pd.DataFrame):
        unknown = [c for c in theta.columns if c not in names and c not in ("dataset", "draw")]
        if unknown:
            raise ValueError(f"unknown parameter name(s) {unknown}; the model's parameters are {names}")
        missing = [c for c in names if c not in theta.columns]
        if missing:
            raise ValueError(f"missing parameter(s) {missing}; the model's parameters are {names}")
        theta = theta[names].to_numpy()
    if isinstance(theta, torch.Tensor):
        theta = theta.detach().cpu().numpy()
    arr = np.asarray(theta, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != len(names):
        raise ValueError(
            f"parameter values must have {len(names)} columns {names}; got shape {arr.shape}"
        )
    if not np.all(np.isfinite(arr)):
        raise ValueError("parameter values contain NaN or Inf")
    return arr.astype(np.float32)


def select_parameters(names: Sequence[str], wanted: Sequence[str] | None) -> list[int]:
    """Column indices of ``wanted`` in ``names``; a clear error for unknown names."""
    if wanted is None:
        return list(range(len(names)))
    if isinstance(wanted, str):
        wanted = [wanted]
    unknown = [w for w in wanted if w not in names]
    if unknown:
        raise ValueError(f"unknown parameter name(s) {unknown}; the model's parameters are {list(names)}")
    return [list(names).index(w) for w in wanted]


@contextlib.contextmanager
def inference_mode(module: torch.nn.Module) -> Iterator[None]:
    """Evaluation mode without autograd (``torch.inference_mode``: no version counters either), restoring the training flag afterwards.

    Tensors made inside cannot enter autograd later; every caller returns numpy arrays.
    """
    was_training = module.training
    module.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        module.train(was_training)


def module_device(module: torch.nn.Module) -> torch.device:
    return next(module.parameters()).device


def make_generator(seed: int | None) -> torch.Generator | None:
    return None if seed is None else torch.Generator().manual_seed(int(seed))

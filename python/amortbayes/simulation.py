"""Simulator protocol, named-dict batches of float32 tensors, ragged data sets and padding masks.

A Bayesian model is a prior plus a simulator.  Training, diagnostics and the R layer all
exchange *batches*: plain ``dict[str, torch.Tensor]`` with float32 values and these keys
(shapes for a batch of ``B`` simulated data sets):

==================  ======================  ==============================================
key                 shape                   meaning
==================  ======================  ==============================================
``theta_global``    ``(B, D)``              parameters of a single-level model, or the
                                            global (hyper + shared) parameters of a
                                            multilevel model
``theta_local``     ``(B, J, L)``           group-level parameters (multilevel models)
``x``               ``(B, N, F)``           observations (``(B, J, N, F)`` multilevel);
                                            padded entries are zero
``mask``            ``(B, N)``              1.0 for an observed row, 0.0 for padding
                                            (``(B, J, N)`` multilevel)
``group_mask``      ``(B, J)``              1.0 for an existing group (multilevel)
``context``         ``(B, C)``              context variables (sensitivity analysis)
==================  ======================  ==============================================

Data sets of different sizes ``N_i`` share one batch: each is padded to ``max N_i`` with
zeros and the mask marks the real rows.  Every network pools with the mask, so results do
not depend on the padding.  Exchangeable (i.i.d.) rows and time series alike are padded at
the end, so the observed rows of a time series are always a prefix.

Example:
    >>> import torch
    >>> from amortbayes.models import ConjugateGaussian
    >>> model = ConjugateGaussian()
    >>> batch = model.simulate(8, torch.Generator().manual_seed(1))
    >>> sorted(batch)
    ['mask', 'theta_global', 'x']
    >>> batch["x"].shape[0], batch["x"].dtype
    (8, torch.float32)
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd
import torch

Batch = dict[str, torch.Tensor]


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """What an amortizer must know about its model; saved as JSON next to the weights.

    Attributes:
        name: registry name of the model (``"conjugate_gaussian"``) or a user's label.
        parameter_names: names of the (global) parameters, in column order.
        data_names: names of the observed columns (features), in column order.
        n_obs: inclusive range ``(min, max)`` of observations per data set seen in training.
        config: keyword arguments that rebuild the model (JSON-serialisable).
        local_parameter_names: names of the group-level parameters (multilevel only).
        n_groups: inclusive range of the number of groups (multilevel only).
    """

    name: str
    parameter_names: tuple[str, ...]
    data_names: tuple[str, ...]
    n_obs: tuple[int, int]
    config: dict[str, Any] = dataclasses.field(default_factory=dict)
    local_parameter_names: tuple[str, ...] = ()
    n_groups: tuple[int, int] = (1, 1)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "parameter_names": list(self.parameter_names),
            "data_names": list(self.data_names),
            "n_obs": list(self.n_obs),
            "config": dict(self.config),
            "local_parameter_names": list(self.local_parameter_names),
            "n_groups": list(self.n_groups),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelInfo:
        return cls(
            name=str(d["name"]),
            parameter_names=tuple(d["parameter_names"]),
            data_names=tuple(d["data_names"]),
            n_obs=(int(d["n_obs"][0]), int(d["n_obs"][1])),
            config=dict(d.get("config", {})),
            local_parameter_names=tuple(d.get("local_parameter_names", ())),
            n_groups=tuple(int(v) for v in d.get("n_groups", (1, 1))),  # type: ignore[arg-type]
        )


@runtime_checkable
class Simulator(Protocol):
    """The minimum a model must implement to be trained on.

    ``simulate`` draws ``batch_size`` parameter sets from the prior and one data set for
    each, vectorized over the batch (no Python loop per data set), and returns a batch.
    """

    @property
    def info(self) -> ModelInfo: ...

    def simulate(self, batch_size: int, generator: torch.Generator | None = None) -> Batch: ...


class FlatModel(abc.ABC):
    """A single-level model: ``theta ~ p(theta)``, ``x_1..x_N | theta ~ p(x | theta)``.

    Subclasses implement :meth:`sample_prior` and :meth:`simulate_data` for a whole batch;
    :meth:`simulate` draws a size ``N_i`` for every data set uniformly from ``n_obs``,
    simulates at ``max N_i`` and masks the tail of the shorter data sets.
    """

    name: str = "model"
    parameter_names: tuple[str, ...] = ()
    data_names: tuple[str, ...] = ()
    n_obs: tuple[int, int] = (1, 1)

    @abc.abstractmethod
    def sample_prior(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Return ``(n, D)`` float32 prior draws."""

    @abc.abstractmethod
    def simulate_data(
        self, theta: torch.Tensor, n_obs: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Return ``(B, n_obs, F)`` float32 observations, one data set per row of ``theta``."""

    def config(self) -> dict[str, Any]:
        """Keyword arguments that rebuild this model (dataclass fields by default)."""
        if dataclasses.is_dataclass(self):
            return {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}
        return {}

    @property
    def info(self) -> ModelInfo:
        return ModelInfo(
            name=self.name,
            parameter_names=tuple(self.parameter_names),
            data_names=tuple(self.data_names),
            n_obs=(int(self.n_obs[0]), int(self.n_obs[1])),
            config=self.config(),
        )

    def simulate(
        self,
        batch_size: int,
        generator: torch.Generator | None = None,
        n_obs: int | tuple[int, int] | None = None,
    ) -> Batch:
        """Simulate a batch with a size ``N_i`` drawn per data set from ``n_obs`` (inclusive)."""
        lo, hi = _size_range(self.n_obs if n_obs is None else n_obs)
        theta = self.sample_prior(batch_size, generator).float()
        sizes = torch.randint(lo, hi + 1, (batch_size,), generator=generator)
        n_max = int(sizes.max())
        x = self.simulate_data(theta, n_max, generator).float()
        mask = (torch.arange(n_max)[None, :] < sizes[:, None]).float()
        return {"theta_global": theta, "x": x * mask[..., None], "mask": mask}


def _size_range(n: int | tuple[int, int] | Sequence[int]) -> tuple[int, int]:
    if isinstance(n, (int, np.integer)):
        return int(n), int(n)
    lo, hi = int(n[0]), int(n[1])
    if lo < 1 or hi < lo:
        raise ValueError(f"a size range must satisfy 1 <= min <= max, got {n!r}")
    return lo, hi


def _jsonable(v: Any) -> Any:
    if isinstance(v, tuple):
        return [_jsonable(u) for u in v]
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    return v


def pad_datasets(datasets: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Stack data sets of shape ``(N_i, F)`` into ``x (B, max N_i, F)`` and ``mask (B, max N_i)``.

    Example:
        >>> x, mask = pad_datasets([np.ones((2, 1)), np.ones((3, 1))])
        >>> x.shape, mask.sum(axis=1).tolist()
        ((2, 3, 1), [2.0, 3.0])
    """
    n_max = max(d.shape[0] for d in datasets)
    n_feat = datasets[0].shape[1]
    x = np.zeros((len(datasets), n_max, n_feat), dtype=np.float32)
    mask = np.zeros((len(datasets), n_max), dtype=np.float32)
    for i, d in enumerate(datasets):
        x[i, : d.shape[0]] = d
        mask[i, : d.shape[0]] = 1.0
    return x, mask


def prepare_observed(
    data: Any, info: ModelInfo, *, warn_outside: bool = True
) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """Turn user data into a padded ``(x, mask)`` pair after validating it.

    Accepted forms: a 2-D array or DataFrame ``(N, F)`` (one data set), a 3-D array
    ``(B, N, F)`` (several of equal size), a list of 2-D arrays/DataFrames (ragged), or a
    dict ``{"x": ..., "mask": ...}`` (already padded).  For ``F == 1`` a 1-D array is one
    data set.  DataFrame columns are matched by name to ``info.data_names``.

    Returns ``(x, mask, single)`` where ``single`` says the input was one data set.

    Raises:
        ValueError: empty data set, NaN/Inf, wrong number of features, missing columns.
    """
    import warnings

    n_feat = len(info.data_names)
    single = False
    mask_np: np.ndarray | None = None
    if isinstance(data, dict):
        if "x" not in data:
            raise ValueError("a dict of observed data needs the key 'x' (and optionally 'mask')")
        x_np = _to_numpy(data["x"], info)
        if "mask" in data and data["mask"] is not None:
            mask_np = np.asarray(_as_np(data["mask"]), dtype=np.float32)
        if x_np.ndim == 2:
            single = True
            x_np = x_np[None]
            mask_np = None if mask_np is None else mask_np.reshape(1, -1)
    elif isinstance(data, (list, tuple)) and len(data) > 0 and not np.isscalar(data[0]):
        arrays = [_to_numpy(d, info, one=True) for d in data]
        for i, a in enumerate(arrays):
            _check_finite_nonempty(a, f"data set {i}")
        x_np, mask_np = pad_datasets(arrays)
    else:
        x_np = _to_numpy(data, info)
        if x_np.ndim == 1:
            if n_feat != 1:
                raise ValueError(
                    f"got a 1-D array but the model has {n_feat} observed columns "
                    f"{list(info.data_names)}; pass an array of shape (N, {n_feat})"
                )
            x_np = x_np[:, None]
        if x_np.ndim == 2:
            single = True
            x_np = x_np[None]
    if x_np.ndim != 3:
        raise ValueError(
            f"observed data must have shape (N, {n_feat}) or (B, N, {n_feat}); got {x_np.shape}"
        )
    if x_np.shape[-1] != n_feat:
        raise ValueError(
            f"wrong number of features: the model was trained on {n_feat} observed columns "
            f"{list(info.data_names)}, the data have {x_np.shape[-1]}"
        )
    if mask_np is None:
        mask_np = np.ones(x_np.shape[:2], dtype=np.float32)
    if mask_np.shape != x_np.shape[:2]:
        raise ValueError(f"mask shape {mask_np.shape} does not match data shape {x_np.shape[:2]}")
    sizes = mask_np.sum(axis=1)
    for i in range(x_np.shape[0]):
        rows = x_np[i][mask_np[i] > 0]
        _check_finite_nonempty(rows, "the data set" if single else f"data set {i}")
    if warn_outside:
        lo, hi = info.n_obs
        outside = [int(s) for s in sizes if s < lo or s > hi]
        if outside:
            warnings.warn(
                f"data set size(s) {sorted(set(outside))[:5]} outside the trained range "
                f"N in [{lo}, {hi}]; the posterior there is an extrapolation",
                stacklevel=3,
            )
    x_np = np.where(mask_np[..., None] > 0, x_np, 0.0).astype(np.float32)
    return torch.from_numpy(x_np), torch.from_numpy(mask_np.astype(np.float32)), single


def _as_np(a: Any) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        return a.detach().cpu().numpy()
    return np.asarray(a)


def _to_numpy(d: Any, info: ModelInfo, one: bool = False) -> np.ndarray:
    if isinstance(d, pd.Series):
        d = d.to_frame()
    if isinstance(d, pd.DataFrame):
        missing = [c for c in info.data_names if c not in d.columns]
        if missing:
            raise ValueError(
                f"observed data frame is missing column(s) {missing}; "
                f"the model needs {list(info.data_names)}"
            )
        d = d[list(info.data_names)].to_numpy()
    try:
        arr = np.asarray(_as_np(d), dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(f"observed data must be numeric, got {type(d).__name__}: {err}") from err
    if one:
        if arr.ndim == 1 and len(info.data_names) == 1:
            arr = arr[:, None]
        if arr.ndim != 2:
            raise ValueError(f"each data set in a list must be 2-D (N, F); got shape {arr.shape}")
    return arr.astype(np.float32) if np.all(np.isfinite(arr)) else arr


def _check_finite_nonempty(rows: np.ndarray, what: str) -> None:
    if rows.size == 0 or rows.shape[0] == 0:
        raise ValueError(f"{what} is empty: at least one observation is needed")
    bad = ~np.isfinite(rows)
    if bad.any():
        idx = np.argwhere(bad)[:3].tolist()
        kind = "NaN" if np.isnan(rows[bad]).any() else "Inf"
        raise ValueError(
            f"{what} contains {kind} values (first at row/column {idx}); remove or impute them"
        )


def log_n(mask: torch.Tensor) -> torch.Tensor:
    """``log(N)`` per set from a mask ``(..., N)``, as a ``(..., 1)`` feature for summaries."""
    return torch.log(mask.sum(-1, keepdim=True).clamp_min(1.0))


__all__ = [
    "Batch",
    "FlatModel",
    "ModelInfo",
    "Simulator",
    "pad_datasets",
    "prepare_observed",
    "log_n",
]

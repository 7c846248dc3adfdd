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

from amortbayes.sensitivity import ContextSpace

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
        parameter_support: per global parameter ``"real"``, ``"positive"``, ``"unit"``,
            ``"correlation"`` or ``"interval:<lo>:<hi>"`` (empty: all real); flows work on the
            unconstrained scale.
        local_parameter_support: the same for the local parameters, which may also be
            bounded above by their group's data: ``"below_min:<column>"`` or
            ``"below_log_min:<column>"`` (see :class:`amortbayes.networks.standardize.ParameterMap`).
        group_data: ``"rows"`` (each group is its rows) or ``"moments"`` (each group is one
            row of the moment sums of ``row_names``' columns, :mod:`amortbayes.moments`;
            multilevel only).
        row_names: the row columns whose moments a ``"moments"`` group holds.
        row_shift: the moments are of the row columns less these values (empty: none), see
            :func:`amortbayes.moments.augmented_gram`.
        contexts: the model's declared context space (:mod:`amortbayes.sensitivity`; empty: none).
    """

    name: str
    parameter_names: tuple[str, ...]
    data_names: tuple[str, ...]
    n_obs: tuple[int, int]
    config: dict[str, Any] = dataclasses.field(default_factory=dict)
    local_parameter_names: tuple[str, ...] = ()
    n_groups: tuple[int, int] = (1, 1)
    parameter_support: tuple[str, ...] = ()
    local_parameter_support: tuple[str, ...] = ()
    group_data: str = "rows"
    row_names: tuple[str, ...] = ()
    row_shift: tuple[float, ...] = ()
    contexts: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "parameter_names": list(self.parameter_names),
            "data_names": list(self.data_names),
            "n_obs": list(self.n_obs),
            "config": dict(self.config),
            "local_parameter_names": list(self.local_parameter_names),
            "n_groups": list(self.n_groups),
            "parameter_support": list(self.parameter_support),
            "local_parameter_support": list(self.local_parameter_support),
            "group_data": self.group_data,
            "row_names": list(self.row_names),
            "row_shift": list(self.row_shift),
            "contexts": dict(self.contexts),
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
            parameter_support=tuple(d.get("parameter_support", ())),
            local_parameter_support=tuple(d.get("local_parameter_support", ())),
            group_data=str(d.get("group_data", "rows")),
            row_names=tuple(d.get("row_names", ())),
            row_shift=tuple(float(v) for v in d.get("row_shift", ())),
            contexts=dict(d.get("contexts", {})),
        )


def model_config(model: Any) -> dict[str, Any]:
    """A dataclass model's fields as JSON-ready keyword arguments (empty for other classes).

    Fields marked ``metadata={"omit_default": True}`` (options added after amortizers of the
    model were saved) are left out at their default, so those amortizers still load.
    """
    if dataclasses.is_dataclass(model):
        return {f.name: _jsonable(getattr(model, f.name)) for f in dataclasses.fields(model)
                if not (f.metadata.get("omit_default") and getattr(model, f.name) == f.default)}
    return {}


def model_info(model: Any) -> ModelInfo:
    """The :class:`ModelInfo` of a single-level or two-level model from its class attributes."""
    n_groups = getattr(model, "n_groups", (1, 1))
    return ModelInfo(
        name=model.name,
        parameter_names=tuple(model.parameter_names),
        data_names=tuple(model.data_names),
        n_obs=(int(model.n_obs[0]), int(model.n_obs[1])),
        config=model.config(),
        local_parameter_names=tuple(getattr(model, "local_parameter_names", ())),
        n_groups=(int(n_groups[0]), int(n_groups[1])),
        parameter_support=tuple(model.parameter_support),
        local_parameter_support=tuple(getattr(model, "local_parameter_support", ())),
        group_data=str(getattr(model, "group_data", "rows")),
        row_names=tuple(getattr(model, "row_names", ())),
        row_shift=tuple(float(v) for v in getattr(model, "row_shift", ())),
        contexts=ContextSpace(getattr(model, "contexts", None)).spec,
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
    simulates at ``max N_i`` and masks the tail of the shorter data sets.  A model with a
    ``contexts`` declaration (:mod:`amortbayes.sensitivity`) takes each data set's context
    values as ``context=`` (a dict of ``(B,)`` tensors) in both methods, and its batches
    carry them encoded as ``"context"``.
    """

    name: str = "model"
    parameter_names: tuple[str, ...] = ()
    data_names: tuple[str, ...] = ()
    n_obs: tuple[int, int] = (1, 1)
    parameter_support: tuple[str, ...] = ()

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
        return model_config(self)

    @property
    def info(self) -> ModelInfo:
        return model_info(self)

    def simulate(
        self,
        batch_size: int,
        generator: torch.Generator | None = None,
        n_obs: int | tuple[int, int] | None = None,
    ) -> Batch:
        """Simulate a batch with a size ``N_i`` drawn per data set from ``n_obs`` (inclusive)."""
        lo, hi = _size_range(self.n_obs if n_obs is None else n_obs)
        space, context = draw_contexts(self, batch_size, generator)
        kw = {"context": context} if space else {}
        theta = self.sample_prior(batch_size, generator, **kw).float()
        sizes = torch.randint(lo, hi + 1, (batch_size,), generator=generator)
        n_max = int(sizes.max())
        x = self.simulate_data(theta, n_max, generator, **kw).float()
        mask = (torch.arange(n_max)[None, :] < sizes[:, None]).float()
        batch = {"theta_global": theta, "x": x * mask[..., None], "mask": mask}
        return with_context(batch, space, context)


class MultilevelModel(abc.ABC):
    """A two-level model (Habermann et al. 2024, eq. 13): global ``(tau, sigma)``, local ``theta_j``, data ``x_j``.

        (tau, sigma) ~ p(tau) p(sigma),   theta_j | tau ~ p(theta_j | tau),
        x_{j,i} | theta_j, sigma ~ p(x | theta_j, sigma),   j = 1..J,  i = 1..N_j

    Subclasses implement the three sampling steps for a whole batch and, for
    leave-one-group-out cross-validation, the two densities :meth:`local_log_prior` and
    :meth:`log_likelihood` (importance-sampled draws also need :meth:`global_log_prior`).  :meth:`simulate` draws ``J`` per data set and ``N_j`` per group
    uniformly from their ranges (so one batch mixes sizes), simulates at the maxima and
    masks the rest: ``theta_local`` of padded groups and ``x`` of padded rows are zero.
    A fraction ``balanced_designs`` of the data sets give every group the same ``N_j``
    (balanced designs, as most experiments have); models whose covariates depend on the
    group sizes read them from ``simulate_data``'s ``sizes``.  A model with ``contexts``
    (:mod:`amortbayes.sensitivity`) takes each data set's values as ``context=`` in
    :meth:`sample_global` and :meth:`simulate_data` (the group effects' own distribution is
    not part of the power-scaled prior, as in priorsense with brms).
    """

    name: str = "multilevel"
    parameter_names: tuple[str, ...] = ()  # global: hyperparameters and shared parameters
    local_parameter_names: tuple[str, ...] = ()
    data_names: tuple[str, ...] = ()
    n_groups: tuple[int, int] = (1, 1)
    n_obs: tuple[int, int] = (1, 1)
    parameter_support: tuple[str, ...] = ()
    local_parameter_support: tuple[str, ...] = ()
    balanced_designs: float = 0.0
    # True when p(theta_j | global parameters, x_j) is Gaussian (conjugate Gaussian-linear
    # models): the default local flow of a MultilevelAmortizer is then a small affine flow,
    # which can represent it exactly and samples J = 100 groups several times faster.
    gaussian_local_posterior: bool = False
    # True when a parameter's support ends at the data (the non-decision time of a diffusion
    # model lies below every response time): the amortizer then summarizes each group with
    # its exact minima and maxima too.  Declare the bound itself in local_parameter_support
    # ("below_log_min:rt") so that draws cannot cross it.
    support_depends_on_data: bool = False
    # "moments": each group's data are one row of the moment sums of the row columns
    # row_names (amortbayes.moments), which the model simulates and reads in place of rows
    group_data: str = "rows"
    row_names: tuple[str, ...] = ()
    row_shift: tuple[float, ...] = ()  # the moments are of the row columns less these

    @abc.abstractmethod
    def sample_global(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``(n, G)`` draws of the hyper- and shared parameters."""

    @abc.abstractmethod
    def sample_local(
        self, theta_global: torch.Tensor, n_groups: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """``(..., n_groups, L)`` group parameters given ``theta_global (..., G)``."""

    @abc.abstractmethod
    def simulate_data(
        self,
        theta_global: torch.Tensor,
        theta_local: torch.Tensor,
        n_obs: int,
        generator: torch.Generator | None = None,
        sizes: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``(B, J, n_obs, F)`` observations; rows of a time series are in time order.

        ``sizes (B, J)`` are the group sizes ``N_j`` (rows past them are masked out).
        """

    def global_log_prior(self, theta_global: torch.Tensor) -> torch.Tensor:
        """``log p(tau) + log p(sigma)``, the density :meth:`sample_global` draws from, shape ``theta_global.shape[:-1]``.

        Needed for importance-sampled draws (``MultilevelAmortizer.importance_draws``).
        """
        raise NotImplementedError(f"{type(self).__name__} does not define global_log_prior")

    def local_log_prior(self, theta_global: torch.Tensor, theta_local: torch.Tensor) -> torch.Tensor:
        """``log p(theta_j | tau)``, shape ``theta_local.shape[:-1]``."""
        raise NotImplementedError(f"{type(self).__name__} does not define local_log_prior")

    def log_likelihood(
        self, theta_global: torch.Tensor, theta_local: torch.Tensor, x: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """``log p(x_j | theta_j, sigma)`` summed over each group's observed rows: shape ``x.shape[:-2]``."""
        raise NotImplementedError(f"{type(self).__name__} does not define log_likelihood")

    def config(self) -> dict[str, Any]:
        """Keyword arguments that rebuild this model (dataclass fields by default)."""
        return model_config(self)

    @property
    def info(self) -> ModelInfo:
        return model_info(self)

    def simulate(
        self,
        batch_size: int,
        generator: torch.Generator | None = None,
        n_groups: int | tuple[int, int] | None = None,
        n_obs: int | tuple[int, int] | None = None,
    ) -> Batch:
        """A batch with ``J`` drawn per data set and ``N_j`` per group (inclusive ranges)."""
        jlo, jhi = _size_range(self.n_groups if n_groups is None else n_groups)
        nlo, nhi = _size_range(self.n_obs if n_obs is None else n_obs)
        space, context = draw_contexts(self, batch_size, generator)
        kw = {"context": context} if space else {}
        theta_g = self.sample_global(batch_size, generator, **kw).float()
        groups = torch.randint(jlo, jhi + 1, (batch_size,), generator=generator)
        j_max = int(groups.max())
        group_mask = (torch.arange(j_max)[None, :] < groups[:, None]).float()
        sizes = torch.randint(nlo, nhi + 1, (batch_size, j_max), generator=generator)
        if self.balanced_designs > 0:  # (only then: other models' random streams stay as they were)
            balanced = torch.rand(batch_size, generator=generator) < self.balanced_designs
            sizes = torch.where(balanced[:, None], sizes[:, :1].expand_as(sizes), sizes)
        sizes = sizes * group_mask.long()
        n_max = int(sizes.max())
        theta_l = self.sample_local(theta_g, j_max, generator).float()
        x = self.simulate_data(theta_g, theta_l, n_max, generator, sizes=sizes, **kw).float()
        mask = (torch.arange(n_max)[None, None, :] < sizes[..., None]).float()
        batch = {
            "theta_global": theta_g,
            "theta_local": theta_l * group_mask[..., None],
            "x": x * mask[..., None],
            "mask": mask,
            "group_mask": group_mask,
        }
        return with_context(batch, space, context)


def draw_contexts(model: Any, n: int, generator: torch.Generator | None) -> tuple[ContextSpace, dict | None]:
    """A model's context space and one draw of its contexts per data set (None when it declares none)."""
    space = ContextSpace(getattr(model, "contexts", None))
    return space, (space.sample(n, generator) if space else None)


def with_context(batch: Batch, space: ContextSpace, context: dict | None) -> Batch:
    """``batch`` with the encoded contexts under ``"context"`` (unchanged without contexts)."""
    if space:
        batch["context"] = space.encode(context)
    return batch


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


@dataclasses.dataclass(frozen=True)
class MultilevelData:
    """Validated, padded multilevel data: ``x (B, J, N, F)``, ``mask (B, J, N)``, ``group_mask (B, J)``."""

    x: torch.Tensor
    mask: torch.Tensor
    group_mask: torch.Tensor
    group_labels: tuple[tuple[str, ...], ...]


def prepare_multilevel(
    data: Any,
    info: ModelInfo,
    *,
    group: str | None = None,
    columns: dict[str, str] | None = None,
    warn_outside: bool = True,
) -> MultilevelData:
    """Turn multilevel user data into padded tensors after validating it.

    Accepted forms:

    * a long DataFrame with one row per observation, a grouping column ``group`` and the
      model's observed columns (``columns`` maps model names to data-frame names, e.g.
      ``{"x": "Days", "y": "Reaction"}``); rows keep their order within a group (time
      series), groups are labelled by their values;
    * a list of such DataFrames (several data sets);
    * a list of 2-D arrays, one per group (one data set);
    * a batch dict with ``x (B, J, N, F)`` (or ``(J, N, F)``), ``mask`` and ``group_mask``.

    Raises:
        ValueError: unknown grouping column, missing columns, NaN/Inf (naming the column
            and group), a group with zero observations, no groups at all.
    """
    import warnings

    if isinstance(data, MultilevelData):
        return data
    if isinstance(data, dict):
        out = _multilevel_from_batch(data, info)
    elif isinstance(data, pd.DataFrame):
        out = _multilevel_from_frames([data], info, group, columns)
    elif isinstance(data, (list, tuple)) and data and all(isinstance(d, pd.DataFrame) for d in data):
        out = _multilevel_from_frames(list(data), info, group, columns)
    elif isinstance(data, (list, tuple)) and data:
        arrays = [np.asarray(_as_np(a), dtype=np.float64) for a in data]
        for k, a in enumerate(arrays):
            if a.ndim != 2:
                raise ValueError(f"group {k + 1}: each group must be a 2-D array (N_j, F), got shape {a.shape}")
        labels = tuple(str(k + 1) for k in range(len(arrays)))
        out = _pack([arrays], [labels], info)
    else:
        raise TypeError(
            "multilevel data must be a DataFrame with a grouping column, a list of per-group arrays, "
            f"or a batch dict; got {type(data).__name__}"
        )
    if warn_outside:
        jlo, jhi = info.n_groups
        nlo, nhi = info.n_obs
        js = out.group_mask.sum(1).int().tolist()
        ns = out.mask.sum(-1)[out.group_mask > 0].int().tolist()
        bad_j = sorted({j for j in js if j < jlo or j > jhi})
        bad_n = sorted({n for n in ns if n < nlo or n > nhi})
        if bad_j:
            warnings.warn(
                f"number of groups J = {bad_j[:5]} outside the trained range [{jlo}, {jhi}]; "
                "the posterior there is an extrapolation", stacklevel=3)
        if bad_n:
            warnings.warn(
                f"group size(s) N_j = {bad_n[:5]} outside the trained range [{nlo}, {nhi}]; "
                "the posterior there is an extrapolation", stacklevel=3)
    return out


def group_levels(values: pd.Series, *, drop_unused: bool = False) -> list:
    """The groups of a grouping column in the package's one order, used for amortized and Stan data alike.

    A categorical column's categories in their order (``drop_unused`` leaves out those with no
    rows), otherwise the sorted distinct values, as ``pd.Categorical`` orders them, so group ``j``
    of :func:`prepare_multilevel` is group ``j + 1`` of the Stan data from
    :func:`amortbayes.reference.padded_groups`.
    """
    cat = values.astype("category") if not isinstance(values.dtype, pd.CategoricalDtype) else values
    if drop_unused:
        cat = cat.cat.remove_unused_categories()
    return list(cat.cat.categories)


def _multilevel_from_frames(frames, info, group, columns) -> MultilevelData:
    if group is None:
        raise ValueError("multilevel data frames need group= naming the grouping column")
    columns = dict(columns or {})
    unknown = sorted(set(columns) - set(info.data_names))
    if unknown:
        raise ValueError(f"columns= maps unknown model variable(s) {unknown}; the model's are {list(info.data_names)}")
    names = [columns.get(n, n) for n in info.data_names]
    all_arrays, all_labels = [], []
    for k, df in enumerate(frames):
        where = "" if len(frames) == 1 else f" (data set {k + 1})"
        if group not in df.columns:
            raise ValueError(f"unknown grouping column {group!r}{where}; the data have columns {list(df.columns)}")
        missing = [c for c in names if c not in df.columns]
        if missing:
            raise ValueError(f"data{where} is missing column(s) {missing}; the model needs {names}")
        if df.empty:
            raise ValueError(f"data{where} has no rows")
        if df[group].isna().any():
            raise ValueError(f"grouping column {group!r}{where} contains missing values")
        g = df[group]
        levels = group_levels(g)
        # the rows of each level in their order, by one stable sort on the level's position (a loop of
        # boolean masks over the levels cost a second for 500 groups)
        code = pd.Categorical(g, categories=levels).codes
        counts = np.bincount(code[code >= 0], minlength=len(levels))
        if (counts == 0).any():
            raise ValueError(f"group {levels[int(np.argmin(counts))]!r}{where} has zero observations; drop unused levels")
        order = np.argsort(code, kind="stable")
        values_all = df[names].to_numpy(dtype=np.float64)[order]
        bad = ~np.isfinite(values_all)
        if bad.any():
            r, c = np.argwhere(bad)[0]
            level = levels[int(code[order][r])]
            raise ValueError(f"column {names[int(c)]!r} contains NaN or Inf in group {level!r}{where}; remove or impute it")
        arrays = np.split(values_all, np.cumsum(counts)[:-1])
        labels = [str(level) for level in levels]
        all_arrays.append(arrays)
        all_labels.append(tuple(labels))
    return _pack(all_arrays, all_labels, info)


def _pack(data_sets: list[list[np.ndarray]], labels: list[tuple[str, ...]], info: ModelInfo) -> MultilevelData:
    n_feat = len(info.data_names)
    b = len(data_sets)
    j_max = max(len(d) for d in data_sets)
    if j_max == 0:
        raise ValueError("the data set has no groups")
    n_max = max(a.shape[0] for d in data_sets for a in d)
    x = np.zeros((b, j_max, max(n_max, 1), n_feat), dtype=np.float32)
    mask = np.zeros((b, j_max, max(n_max, 1)), dtype=np.float32)
    gmask = np.zeros((b, j_max), dtype=np.float32)
    for i, groups in enumerate(data_sets):
        for j, a in enumerate(groups):
            if a.shape[-1] != n_feat:
                raise ValueError(
                    f"wrong number of features in group {labels[i][j]!r}: the model has {n_feat} "
                    f"observed columns {list(info.data_names)}, got {a.shape[-1]}")
            if a.shape[0] == 0:
                raise ValueError(f"group {labels[i][j]!r} has zero observations")
            if not np.all(np.isfinite(a)):
                raise ValueError(f"group {labels[i][j]!r} contains NaN or Inf values")
            x[i, j, : a.shape[0]] = a
            mask[i, j, : a.shape[0]] = 1.0
            gmask[i, j] = 1.0
    return MultilevelData(torch.from_numpy(x), torch.from_numpy(mask), torch.from_numpy(gmask), tuple(labels))


def _multilevel_from_batch(data: dict, info: ModelInfo) -> MultilevelData:
    if "x" not in data:
        raise ValueError("a dict of multilevel data needs the key 'x' (and 'mask', 'group_mask')")
    x = torch.as_tensor(_as_np(data["x"]), dtype=torch.float32)
    if x.dim() == 3:
        x = x[None]
    if x.dim() != 4:
        raise ValueError(f"multilevel x must have shape (B, J, N, F) or (J, N, F), got {tuple(x.shape)}")
    if x.shape[-1] != len(info.data_names):
        raise ValueError(
            f"wrong number of features: the model has {len(info.data_names)} observed columns "
            f"{list(info.data_names)}, the data have {x.shape[-1]}")
    mask = torch.as_tensor(_as_np(data["mask"]), dtype=torch.float32).reshape(x.shape[:3]) if "mask" in data \
        else torch.ones(x.shape[:3])
    gmask = torch.as_tensor(_as_np(data["group_mask"]), dtype=torch.float32).reshape(x.shape[:2]) \
        if "group_mask" in data else (mask.sum(-1) > 0).float()
    empty = (gmask > 0) & (mask.sum(-1) == 0)
    if empty.any():
        b, j = torch.nonzero(empty)[0].tolist()
        raise ValueError(f"group {j + 1} of data set {b + 1} has zero observations")
    observed = x[mask > 0]
    if not torch.isfinite(observed).all():
        col = int(torch.nonzero(~torch.isfinite(observed))[0, 1])
        raise ValueError(f"column {info.data_names[col]!r} contains NaN or Inf")
    x = torch.where(mask[..., None] > 0, x, torch.zeros_like(x))
    labels = tuple(tuple(str(j + 1) for j in range(int(g.sum()))) for g in gmask)
    return MultilevelData(x, mask, gmask, labels)


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


def numpy_rng(generator: torch.Generator | None) -> np.random.Generator:
    """A numpy generator seeded from ``generator``, for distributions torch cannot sample with one (Beta, Gamma)."""
    if generator is None:
        return np.random.default_rng()
    return np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=generator)))


def log_n(mask: torch.Tensor) -> torch.Tensor:
    """``log(N)`` per set from a mask ``(..., N)``, as a ``(..., 1)`` feature for summaries."""
    return torch.log(mask.sum(-1, keepdim=True).clamp_min(1.0))


__all__ = [
    "Batch",
    "FlatModel",
    "ModelInfo",
    "MultilevelData",
    "MultilevelModel",
    "Simulator",
    "group_levels",
    "pad_datasets",
    "prepare_multilevel",
    "prepare_observed",
    "log_n",
    "numpy_rng",
]

"""Two-level amortizer (ML-NPE): a global flow for (tau, sigma) and one weight-shared local flow for every theta_j.

For a two-level model with hyperparameters ``tau``, shared parameters ``sigma`` and group
parameters ``theta_j`` (Habermann et al. 2024, eq. 15) the posterior factorizes as

    p(tau, sigma, {theta_j} | {x_j}) = p(tau, sigma | {x_j}) prod_j p(theta_j | tau, sigma, x_j),

because ``theta_j`` is independent of the other groups' data given ``(tau, sigma)``.  A
group summary network ``h_2`` embeds each group's observations, a second summary network
``h_1`` pools the group embeddings into a data-set summary, and two conditional flows
model the two factors.  The loss is the negative log of the factorized density (eq. 17),

    L = E[ -log q_1(tau, sigma | h_1({h_2(x_j)})) - sum_j log q_2(theta_j | h_2(x_j), tau, sigma) ],

and draws follow ancestral sampling (eq. 18): ``(tau, sigma)^(s) ~ q_1``, then every
``theta_j^(s) ~ q_2(. | h_2(x_j), (tau, sigma)^(s))``, all groups and draws in one pass.
The number of groups ``J`` and of observations ``N_j`` vary freely (padding + masks), and
the network size does not depend on ``J``.

Leave-one-group-out posteriors need no refit (group ``k`` masked out of the same global
network), and the amortized posterior is a proposal for the exact one: both live in
:mod:`amortbayes.inference` (``logo``, ``group_log_evidence``, ``importance_draws``), which
this class's methods of those names are.

References:
    Habermann, Schmitt, Kühmichel, Bulling, Radev & Bürkner (2024). Amortized Bayesian
    Multilevel Models. arXiv:2408.13230.
    Heinrich et al. (2023). Hierarchical neural simulation-based inference over event
    ensembles. arXiv:2306.12584.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from amortbayes.amortizers.base import inference_mode, make_generator, module_device
from amortbayes.amortizers.draws import MultilevelDraws
from amortbayes.inference import importance as _importance
from amortbayes.inference import logo as _logo
from amortbayes.networks import (
    DataRange,
    DeepSet,
    FlowSettings,
    ParameterMap,
    Standardizer,
    build_flow,
    build_summary,
    sample_flow,
)
from amortbayes.networks.context import PairedContext
from amortbayes.networks.pilot import PilotSettings, pilot_context
from amortbayes.networks.standardize import soft_bound
from amortbayes.networks.summary import n_statistics, pairwise_products, with_statistics
from amortbayes.sensitivity import ContextSpace, encode_context
from amortbayes.simulation import Batch, ModelInfo, MultilevelData, prepare_multilevel

__all__ = ["MultilevelAmortizer", "MultilevelDraws", "MultilevelSettings", "default_settings"]


@dataclasses.dataclass(frozen=True)
class MultilevelSettings:
    """Network settings of a :class:`MultilevelAmortizer`.

    Attributes:
        group_summary: summary network of one group's rows: ``"deepset"``,
            ``"set_transformer"``, ``"conv"`` or ``"recurrent"`` (time series).
        group_summary_dim: size of a group's learned embedding ``h_2(x_j)`` (a DeepSet adds
            the group's exact statistics to it).
        group_extremes: a DeepSet group summary also passes each feature's exact minimum and
            maximum within the group (models whose parameter support ends at the data).
        group_row_network: a DeepSet group summary passes each row through a learned network
            before pooling (True), or reads a group only through its exact first and second
            moments and the statistics computed from them (False: a few products per row,
            so a step's cost hardly grows with the rows; needed for models whose groups are
            moment rows, ``group_data = "moments"``, :mod:`amortbayes.moments`).
        global_summary_dim: size of the data-set embedding ``h_1``.
        hidden: width of the summary networks.
        global_flow: flow for the global parameters.
        local_flow: flow for one group's parameters (shared across groups).
        pooled_moments: the group statistics (indices into ``DeepSet.statistics``) whose exact
            between-group second moments the data-set summary gets (None: all).  They grow with
            the square of the statistics, which grow with the square of the columns: a formula
            model of six columns had 70 statistics, 2,485 second moments, and its data-set
            summary was half of a training step.
        summary_columns: the data columns the summary networks read (None: all).  Constant
            columns (an intercept's ones) and copies of other columns only cost time: a
            formula model's rows repeat its design's intercept and slopes in X and Z.
        pilot: a pooled-GLM pilot estimate that centres and scales the global flow on some
            global parameters (regression coefficients; :mod:`amortbayes.networks.pilot`),
            None for none.
        seed: seed of the weight initialisation.
    """

    group_summary: str = "deepset"
    group_summary_dim: int = 16
    group_extremes: bool = False
    group_row_network: bool = True
    global_summary_dim: int = 32
    hidden: int = 64
    global_flow: FlowSettings = FlowSettings()
    local_flow: FlowSettings = FlowSettings()
    summary_columns: tuple[int, ...] | None = None
    pooled_moments: tuple[int, ...] | None = None
    pilot: PilotSettings | None = None
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MultilevelSettings:
        d = dict(d)
        d["global_flow"] = FlowSettings(**d.get("global_flow", {}))
        d["local_flow"] = FlowSettings(**d.get("local_flow", {}))
        d["pilot"] = PilotSettings.from_dict(d.get("pilot"))
        for key in ("summary_columns", "pooled_moments"):
            if d.get(key) is not None:
                d[key] = tuple(d[key])
        return cls(**d)


GAUSSIAN_LOCAL_FLOW = FlowSettings(kind="affine", layers=2, hidden=32)


def default_settings(model: Any) -> MultilevelSettings:
    """``MultilevelSettings()``, with the local flow ``GAUSSIAN_LOCAL_FLOW`` for models whose local posterior is Gaussian.

    The local flow runs once per group and draw (100,000 times for J = 100 groups and 1,000
    draws), so its size sets the latency.  Where ``p(theta_j | global, x_j)`` is Gaussian
    (``model.gaussian_local_posterior``) two affine coupling layers on the conditional
    Gaussian base represent it exactly.  Measured on sleepstudy (benchmarks/multilevel.py):
    J = 100 in 86 ms instead of 450 ms, means as close to Stan.  Other models (the diffusion
    model's skewed local posteriors) keep the spline flow.  Models that declare
    ``support_depends_on_data`` (a diffusion model's non-decision time lies below every
    response time) get the groups' exact minima and maxima in their summaries.

    Example:
        >>> from amortbayes.models import HierarchicalLinear, HierarchicalDDM
        >>> default_settings(HierarchicalLinear()).local_flow.kind, default_settings(HierarchicalDDM()).local_flow.kind
        ('affine', 'spline')
    """
    if getattr(model, "gaussian_local_posterior", False):
        return MultilevelSettings(local_flow=GAUSSIAN_LOCAL_FLOW)
    return MultilevelSettings(group_extremes=bool(getattr(model, "support_depends_on_data", False)))



class MultilevelAmortizer(nn.Module):
    """Amortized posterior of a two-level model over any number of groups and group sizes.

    ``settings`` default to :func:`default_settings` of the model.

    Example:
        >>> from amortbayes.models import HierarchicalLinear
        >>> from amortbayes import fit, TrainSettings
        >>> model = HierarchicalLinear()
        >>> amortizer = MultilevelAmortizer(model)
        >>> _ = fit(amortizer, model, settings=TrainSettings(epochs=1, iterations_per_epoch=2,
        ...     batch_size=8, validation_sims=8, adapt_sims=64), progress=False)
        >>> data = model.simulate(1)
        >>> amortizer.sample(data, 10).shape[0]
        10
    """

    def __init__(self, model: Any, settings: MultilevelSettings | None = None):
        super().__init__()
        info = model if isinstance(model, ModelInfo) else model.info
        if not info.local_parameter_names:
            raise ValueError(f"model {info.name!r} has no local parameters; use PosteriorAmortizer")
        self.info = info
        self.settings = s = settings or default_settings(model)
        n_glob, n_loc, n_feat = len(info.parameter_names), len(info.local_parameter_names), len(info.data_names)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(s.seed)
            self.global_map = ParameterMap(tuple(info.parameter_support) or n_glob)
            # a local support may end at the group's data ("below_log_min:rt"); see ParameterMap
            self.local_map = ParameterMap(tuple(info.local_parameter_support) or n_loc, tuple(info.data_names))
            # groups as moment rows (amortbayes.moments): the summary reads the row columns' moments
            self.moments = info.group_data == "moments"
            if self.moments and (s.group_summary != "deepset" or s.group_row_network):
                raise ValueError(f"model {info.name!r} gives each group as moment sums (group_data='moments'), which "
                                 "only a DeepSet group summary without a row network reads: "
                                 "MultilevelSettings(group_summary='deepset', group_row_network=False)")
            names = tuple(info.row_names) if self.moments else tuple(info.data_names)
            n_cols = len(names)
            self.x_std = Standardizer(n_cols)  # of the row columns (fitted from the moments for moment rows)
            self.data_range = DataRange(names, grouped=True, moments=self.moments, shift=tuple(info.row_shift))
            if s.summary_columns is not None and (not s.summary_columns or not set(s.summary_columns) <= set(range(n_cols))):
                what = "row" if self.moments else "data"
                raise ValueError(f"summary_columns must be {what} columns 0..{n_cols - 1}, got {s.summary_columns}")
            n_read = n_cols if s.summary_columns is None else len(s.summary_columns)
            if not s.group_row_network and s.group_summary != "deepset":
                raise ValueError(f"group_row_network=False is a DeepSet option; group_summary is {s.group_summary!r}")
            self.group_summary = build_summary(s.group_summary, n_read, s.group_summary_dim, s.hidden,
                                               extremes=s.group_extremes, row_network=s.group_row_network)
            # a group's embedding carries its exact statistics (when the group summary has them),
            # and the data-set summary pools their exact cross-group second moments (between-group
            # spread and covariance of the groups' slopes, means and residual SDs).  Exact
            # second moments of the learned part too (interactions=True) cost accuracy on the
            # hierarchical Gaussian's mean at small budgets (closed-form test: 0.34-0.39
            # posterior SD against 0.3).
            stats = n_statistics(self.group_summary)
            group_dim = s.group_summary_dim + stats
            pooled = range(stats) if s.pooled_moments is None else s.pooled_moments  # of the statistics
            self.global_summary = DeepSet(group_dim, s.global_summary_dim, s.hidden, interactions=False,
                                          second_moments_of=tuple(s.group_summary_dim + i for i in pooled))
            # the global flow also sees the groups' pooled within-group (residual) SDs: sums of
            # squares over degrees of freedom, the estimate of sigma that the likelihood pools
            self.n_pooled = self.group_summary.n_pooled_statistics if stats else 0
            # a pilot adds its location and log scale per global parameter to the flow's context
            n_pilot = 2 * n_glob if s.pilot is not None else 0
            # a model with contexts (amortbayes.sensitivity): both flows see the data set's context,
            # carried as trailing columns of every group's embedding (so each consumer of the
            # embeddings, LOGO and importance sampling included, passes it on unchanged)
            self.contexts = ContextSpace(info.contexts)
            self.group_dim, width = group_dim, self.contexts.width
            self._active_context: torch.Tensor | None = None
            self.global_flow = build_flow(n_glob, s.global_summary_dim + self.n_pooled + width + n_pilot,
                                          s.global_flow, context_shift=s.pilot is not None)
            self.local_flow = build_flow(n_loc, group_dim + width + n_glob, s.local_flow)

    # -- training -------------------------------------------------------------------------
    def adapt(self, batch: Batch) -> None:
        """Learn standardization of global and local parameters and of the data (masked)."""
        self.global_map.fit(batch["theta_global"])
        self.local_map.fit(batch["theta_local"], batch["group_mask"], self.local_map.upper(batch["x"], batch["mask"]))
        if self.moments:
            self.x_std.fit_moments(batch["x"], batch["group_mask"])
        else:
            self.x_std.fit(batch["x"], batch["mask"])
        self.data_range.fit(batch["x"], batch["mask"])

    def embed(self, x: torch.Tensor, mask: torch.Tensor, group_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Group embeddings ``(B, J, S_l)`` and data-set summaries ``(B, S_g)`` (embedding + pooled SDs + pilot)."""
        groups = self.embed_groups(x, mask, group_mask)
        return groups, self.pool(groups, x, mask, group_mask)

    def embed_groups(self, x: torch.Tensor, mask: torch.Tensor, group_mask: torch.Tensor) -> torch.Tensor:
        """Each group's embedding ``h_2(x_j)`` and exact statistics, ``(B, J, S_l)``; a group's depends on its data only."""
        if not self.settings.group_row_network:
            # a group enters through its exact standardized moments only: from moment rows,
            # or from rows by a few products per row (no network per row, no soft bound)
            groups = torch.cat(self.group_summary.forward_moments(*self._group_moments(x, mask, group_mask)), dim=-1)
        else:
            z = soft_bound(self.x_std(x)) * mask.unsqueeze(-1)
            if self.settings.summary_columns is not None:
                z = z[..., list(self.settings.summary_columns)]
            # padded groups get one dummy row so every network sees a non-empty set; their
            # embeddings are excluded by group_mask below
            safe = mask.clone()
            safe[..., 0] = torch.where(group_mask > 0, mask[..., 0], torch.ones_like(mask[..., 0]))
            groups = with_statistics(self.group_summary, z, safe)
        if self.contexts:
            c = self._context_rows(groups.shape[0]).to(groups)
            groups = torch.cat([groups, c[:, None, :].expand(-1, groups.shape[1], -1)], dim=-1)
        return groups

    def _context_rows(self, b: int) -> torch.Tensor:
        """The encoded context of each of ``b`` data sets: the one in use, else the default (powers 1, first options)."""
        c = self._active_context
        if c is None:
            c = encode_context(self.contexts, {})
        return c.expand(b, -1) if c.shape[0] == 1 else c

    @contextlib.contextmanager
    def using_context(self, context: dict[str, Any] | None):
        """Within the block, the networks condition on ``context`` (a user's dict; None: the default)."""
        with self.using_encoded_context(encode_context(self.contexts, context)):
            yield

    @contextlib.contextmanager
    def using_encoded_context(self, encoded: torch.Tensor | None):
        """Within the block, the networks condition on encoded contexts ``(1 or B, C)`` (None: the default)."""
        previous = self._active_context
        self._active_context = encoded
        try:
            yield
        finally:
            self._active_context = previous

    def pool(self, groups: torch.Tensor, x: torch.Tensor, mask: torch.Tensor, group_mask: torch.Tensor) -> torch.Tensor:
        """The data-set summary ``(B, S_g)`` of the groups that ``group_mask`` keeps: pooled embeddings, SDs and the pilot."""
        own = groups[..., : self.group_dim]  # without the context columns
        summary = self.global_summary(own, group_mask)
        if self.n_pooled:
            stats = own[..., -n_statistics(self.group_summary) :]
            summary = torch.cat([summary, self.group_summary.pooled_statistics(stats, group_mask)], dim=-1)
        if self.contexts:  # the same in every group's columns
            summary = torch.cat([summary, groups[..., 0, self.group_dim :]], dim=-1)
        if self.settings.pilot is not None:
            rows = mask * (group_mask > 0).unsqueeze(-1).to(mask)  # a left-out group's rows do not count
            std = self.global_map.std
            shift = torch.tensor(self.info.row_shift, dtype=torch.float64) if self.info.row_shift else None
            summary = torch.cat([summary, pilot_context(x, rows, self.settings.pilot, std.mean, std.std,
                                                        moments=self.moments, shift=shift)], dim=-1)
        return summary

    def _group_moments(self, x: torch.Tensor, mask: torch.Tensor,
                       group_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per group the means and second moments ``k <= l`` of the standardized summary columns, and ``N``.

        From moment rows exactly (:func:`amortbayes.moments.standardized_moments`), or from
        rows; the two agree for the same data.  Padded groups get zero moments and ``N = 0``.
        """
        from amortbayes.moments import moment_means, standardized_moments

        cols = self.settings.summary_columns
        if self.moments:
            n, mean, second = moment_means(x, mask * (group_mask[..., None] > 0).to(mask))
            f = mean.shape[-1]
            if cols is not None:  # the moments of a subset of columns are a subset of the moments
                keep = [k * f - k * (k - 1) // 2 + (l - k) for i, k in enumerate(cols) for l in cols[i:]]
                mean, second = mean[..., list(cols)], second[..., keep]
            loc, scale = self.x_std.mean, self.x_std.std
            if cols is not None:
                loc, scale = loc[list(cols)], scale[list(cols)]
            mean, second = standardized_moments(mean, second, loc, scale)
            return mean.to(x.dtype), second.to(x.dtype), n.to(x.dtype)
        cols = list(range(x.shape[-1])) if cols is None else list(cols)
        m = mask.unsqueeze(-1)
        z = (x[..., cols] - self.x_std.mean[cols]) / self.x_std.std[cols] * m  # standardized before the products
        n = m.sum(-2)
        moments = pairwise_products(z).sum(-2) / n.clamp_min(1.0)
        return moments[..., : len(cols)], moments[..., len(cols):], n[..., 0]

    def loss(self, batch: Batch) -> torch.Tensor:
        """Negative log of the factorized posterior density (eq. 17), averaged over data sets."""
        with self.using_encoded_context(batch.get("context")):
            groups, summary = self.embed(batch["x"], batch["mask"], batch["group_mask"])
        zg = self.global_map(batch["theta_global"])
        zl = self.local_map(batch["theta_local"], self.local_map.upper(batch["x"], batch["mask"]))
        return -self.log_q_standardized(groups, summary, zg[:, None], zl[:, None], batch["group_mask"]).mean()

    def log_q_standardized(self, groups: torch.Tensor, summary: torch.Tensor, zg: torch.Tensor, zl: torch.Tensor,
                           group_mask: torch.Tensor) -> torch.Tensor:
        """``log q(z_global | x) + sum_j log q(z_local_j | z_global, x_j)`` of ``n`` draws per data set, ``(B, n)``.

        On the networks' standardized scale: ``zg (B, n, G)``, ``zl (B, n, J, L)``; ``groups`` and
        ``summary`` from :meth:`embed`; padded groups (``group_mask`` 0) are left out.
        """
        b, n, g = zg.shape
        lq = self.global_flow.log_prob(zg.reshape(b * n, g), context=summary.repeat_interleave(n, dim=0))
        j = groups.shape[1]
        valid = (group_mask > 0)[:, None, :].expand(b, n, j)
        context = torch.cat([groups[:, None].expand(b, n, j, -1), zg[:, :, None].expand(b, n, j, g)], dim=-1)
        local = self.local_flow.log_prob(zl[valid], context=context[valid])
        rows = torch.arange(b * n, device=zg.device).reshape(b, n, 1).expand(b, n, j)[valid]
        return lq.index_add(0, rows, local).reshape(b, n)

    # -- inference ------------------------------------------------------------------------
    def prepare(self, data: Any, **kwargs: Any) -> MultilevelData:
        """Validate and pad user data (see :func:`prepare_multilevel`)."""
        return prepare_multilevel(data, self.info, **kwargs)

    def sample_draws(self, data: Any, n: int = 1000, *, seed: int | None = None, exact_local: Any = None,
                     context: dict[str, Any] | None = None, **kwargs: Any) -> MultilevelDraws:
        """Joint posterior draws (ancestral sampling, eq. 18) for one or many data sets.

        ``exact_local``: a model's exact conditional of all groups' parameters,
        ``(theta_global (n, 1, G), x (J, N, F), mask (J, N), generator) -> (n, J, L)`` (a
        gaussian formula model's ``sample_local_posteriors``), drawn given each global draw
        in place of the local flow; None (default) for the local flow.  For many groups it is
        the cheaper of the two (4,000 draws of 500 groups: 0.4 s against 1.2 s) and it is
        exact, so only the global draws are the network's.  ``context``: for a model with
        contexts, the modelling choices to condition on (default: powers 1, first options).
        """
        if not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"number of draws must be a positive integer, got {n!r}")
        d = data if isinstance(data, MultilevelData) else self.prepare(data, **kwargs)
        self.data_range.check(d.x, d.mask)
        dev = module_device(self)
        gen = make_generator(seed)
        with inference_mode(self), self.using_context(context):
            x, mask, gmask = d.x.to(dev), d.mask.to(dev), d.group_mask.to(dev)
            groups, summary = self.embed(x, mask, gmask)
            zg = sample_flow(self.global_flow, int(n), summary, gen)  # (B, n, G)
            theta_g = self.global_map.inverse(zg)
            if exact_local is None:
                theta_l = self._sample_local(groups, zg, gmask, gen, self.local_map.upper(x, mask))
            else:
                theta_l = self._exact_local(exact_local, theta_g, x, mask, gmask, gen)
        return MultilevelDraws(
            theta_g.cpu().numpy(), theta_l.cpu().numpy(), self.info.parameter_names,
            self.info.local_parameter_names, d.group_labels,
        )

    def _sample_local(self, groups, zg, gmask, gen, upper=None) -> torch.Tensor:
        """One local draw per group and global draw, ``(B, n, J, L)``; NaN for padded groups.

        The context of group ``j`` under global draw ``i`` is ``[groups[j], zg[i]]``, passed as
        a :class:`PairedContext` (never concatenated: J = 100 groups and 1,000 draws would be
        100,000 rows).  Padded groups are sampled too (finite dummy embeddings) and blanked
        afterwards: cheaper than gathering the valid rows.  ``upper (B, J, L)`` holds the
        groups' bounds of data-bounded parameters (:meth:`ParameterMap.upper`), None without.
        """
        b, n, _ = zg.shape
        j = groups.shape[1]
        zl = sample_flow(self.local_flow, 1, PairedContext(groups, zg), gen)[:, 0]
        out = self.local_map.inverse(zl.reshape(b, n, j, -1), None if upper is None else upper[:, None])
        if bool((gmask > 0).all()):
            return out
        return out.masked_fill((gmask <= 0)[:, None, :, None], float("nan"))

    def _exact_local(self, exact_local, theta_g, x, mask, gmask, gen) -> torch.Tensor:
        """``(B, n, J, L)`` draws of each data set's groups from ``exact_local`` (see :meth:`sample_draws`); NaN padded."""
        from amortbayes.inference.evidence import in_draw_chunks

        b, n, _ = theta_g.shape
        out = torch.full((b, n, x.shape[1], len(self.info.local_parameter_names)), float("nan"), dtype=theta_g.dtype,
                         device=theta_g.device)
        for k in range(b):
            j = int((gmask[k] > 0).sum())
            draw = lambda t: exact_local(t[:, None].double(), x[k, :j], mask[k, :j], gen)  # noqa: E731
            out[k, :, :j] = in_draw_chunks(draw, theta_g[k], j).to(out.dtype)
        return out

    def sample_contexts(self, data: Any, contexts: Sequence[dict[str, Any]], n: int = 1000, *,
                        seed: int | None = None, **kwargs: Any) -> np.ndarray:
        """Global draws of one data set under each of ``G`` contexts, same base draws for all: ``(G, n, G_par)``."""
        summary = self._context_summaries(data, contexts, kwargs)
        with inference_mode(self):
            eps = torch.randn(1, int(n), len(self.info.parameter_names), generator=make_generator(seed))
            z = sample_flow(self.global_flow, int(n), summary, eps=eps.expand(len(contexts), -1, -1))
            return self.global_map.inverse(z).cpu().numpy()

    def log_prob_contexts(self, theta: Any, data: Any, contexts: Sequence[dict[str, Any]], **kwargs: Any) -> np.ndarray:
        """``log q(theta_global | x, c_g)`` of global parameter values ``(M, G_par)`` under each context: ``(G, M)``."""
        from amortbayes.amortizers.base import theta_from_user

        th = torch.from_numpy(theta_from_user(theta, self.info.parameter_names))
        summary = self._context_summaries(data, contexts, kwargs)
        with inference_mode(self):
            th = th.to(summary)
            g, m = summary.shape[0], th.shape[0]
            z = self.global_map(th).repeat(g, 1)
            lp = self.global_flow.log_prob(z, context=summary.repeat_interleave(m, dim=0)).reshape(g, m)
            return (lp + self.global_map.log_abs_det(th)[None, :]).double().cpu().numpy()

    def _context_summaries(self, data: Any, contexts: Sequence[dict[str, Any]], kwargs: dict) -> torch.Tensor:
        """The global flow's condition ``(G, C)`` of one data set under each context."""
        if not self.contexts:
            raise ValueError("this amortizer was trained without contexts (declare them on the model: "
                             "amortbayes.sensitivity)")
        if len(contexts) < 1:
            raise ValueError("give at least one context")
        d = data if isinstance(data, MultilevelData) else self.prepare(data, **kwargs)
        if d.x.shape[0] != 1:
            raise ValueError(f"one data set at a time, got {d.x.shape[0]}")
        self.data_range.check(d.x, d.mask)
        dev = module_device(self)
        x, mask, gmask = d.x.to(dev), d.mask.to(dev), d.group_mask.to(dev)
        out = []
        with inference_mode(self):
            for c in contexts:
                with self.using_context(c):
                    out.append(self.embed(x, mask, gmask)[1])
        return torch.cat(out)

    def sample(self, data: Any, n: int = 1000, *, seed: int | None = None, **kwargs: Any) -> pd.DataFrame:
        """Wide DataFrame of draws for one data set: ``mu_alpha, ..., alpha[group], ...``."""
        draws = self.sample_draws(data, n, seed=seed, **kwargs)
        if draws.global_draws.shape[0] != 1:
            raise ValueError("sample() takes one data set; use sample_draws() for several")
        return draws.to_frame(0)

    def posterior_summary(self, data: Any, n: int = 4000, *, seed: int | None = 0, **kwargs: Any) -> pd.DataFrame:
        return self.sample_draws(data, n, seed=seed, **kwargs).summary(0)

    # -- inference: importance correction, leave-one-group-out, group evidence (amortbayes.inference)
    importance_draws = _importance.importance_draws
    logo = _logo.logo
    group_log_evidence = _logo.group_log_evidence

    # -- persistence ----------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        return {"model": self.info.to_dict(), "settings": self.settings.to_dict()}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> MultilevelAmortizer:
        return cls(ModelInfo.from_dict(config["model"]), MultilevelSettings.from_dict(config["settings"]))

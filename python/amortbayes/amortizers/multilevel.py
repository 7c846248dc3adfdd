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

Leave-one-group-out (LOGO) posteriors need no refit: masking group ``k`` out of the data
set gives ``p(tau, sigma | x_{-k})`` from the same global network.  The ELPD of the left-out
group, ``log p(x_k | x_{-k}) = log E_{tau, sigma | x_{-k}} p(x_k | tau, sigma)``, uses the
local flow as an importance proposal for ``theta_k``:
``p(x_k | tau, sigma) ~= mean_m p(x_k | theta_m, sigma) p(theta_m | tau) / q_2(theta_m | x_k, tau, sigma)``.

References:
    Habermann, Schmitt, Kühmichel, Bulling, Radev & Bürkner (2024). Amortized Bayesian
    Multilevel Models. arXiv:2408.13230.
    Heinrich et al. (2023). Hierarchical neural simulation-based inference over event
    ensembles. arXiv:2306.12584.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from amortbayes.amortizers.base import inference_mode, make_generator, module_device, summarize_draws, theta_from_user
from amortbayes.diagnostics.importance import RELIABLE_PARETO_K, effective_sample_size, pareto_smooth, tempering_exponent
from amortbayes.diagnostics.multilevel import log_mean_exp, weighted_quantiles
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
from amortbayes.simulation import Batch, ModelInfo, MultilevelData, prepare_multilevel

LIKELIHOOD_CHUNK_TERMS = 2**18  # likelihood terms (draws x rows) per pass when estimating a group's evidence
LOGO_CHUNK_ROWS = 2**20  # padded rows (copies x groups x rows) per pass of the leave-one-group-out summaries
PROGRESS_DELAY_S = 2.0  # group-by-group work shows a progress bar once it has run this long
REFINE_DEFENSIVE = 0.1  # share of a refined importance proposal drawn from the amortized posterior itself
REFINE_T_DF = 5  # degrees of freedom of the refined proposal's Student-t part
REFINE_TARGET_ESS = 0.1  # a refinement fits the tempered weights that keep this fraction as effective draws
# rounds > 1 refine the proposal until the weights' Pareto k is at most this (finite variance) and a
# fraction REFINE_TARGET_ESS of one round's proposals are effective draws
REFINE_UNTIL_K = 0.5


def _over_groups(j: int, desc: str, progress: bool):
    """``range(j)`` for a loop over groups, with a progress bar when it takes longer than ``PROGRESS_DELAY_S``."""
    return tqdm(range(j), desc=desc, unit="group", delay=PROGRESS_DELAY_S, leave=False, disable=not progress)


def _weighted_noise_sd(probs: np.ndarray, variance: np.ndarray) -> float:
    """``sqrt(sum_s p_s v_s / sum_s p_s)`` over the draws with a finite variance ``v_s`` (NaN if none)."""
    ok = np.isfinite(variance) & (probs > 0)
    if not ok.any():
        return float("nan")
    return float(np.sqrt(np.sum(probs[ok] * variance[ok]) / np.sum(probs[ok])))


def _nan_to_neginf(log_w: torch.Tensor) -> torch.Tensor:
    """NaN log weights (a density outside its support) become zero weights; -inf stays -inf."""
    return torch.where(torch.isnan(log_w), torch.full_like(log_w, -math.inf), log_w)


def _exact_groups(model: Any) -> tuple[Any, Any]:
    """A model's closed forms for one group: ``group_log_marginal`` and, only beside it, ``sample_local_posterior``."""
    marginal = getattr(model, "group_log_marginal", None)
    return marginal, getattr(model, "sample_local_posterior", None) if marginal is not None else None


def _all_groups(model: Any) -> tuple[Any, Any] | None:
    """A model's exact marginals and conditional draws of all groups at once, or None.

    ``group_log_marginals(theta_g (..., J or 1, G), x (J, N, F), mask (J, N)) -> (..., J)`` and
    ``sample_local_posteriors(theta_g, x, mask, generator) -> (..., J, L)`` (a formula model's
    moments layout, whose groups are all one row).
    """
    marginals, draws = getattr(model, "group_log_marginals", None), getattr(model, "sample_local_posteriors", None)
    return (marginals, draws) if marginals is not None and draws is not None else None


def _in_draw_chunks(fn, theta: torch.Tensor, groups: int) -> torch.Tensor:
    """``fn`` of ``theta (S, ...)`` in chunks of draws of about ``LIKELIHOOD_CHUNK_TERMS`` draw-group pairs, concatenated."""
    per = max(1, LIKELIHOOD_CHUNK_TERMS // max(1, groups))
    return torch.cat([fn(theta[s : s + per]) for s in range(0, theta.shape[0], per)])


def _defensive_draws(s: int) -> int:
    """How many of a refined round's ``s`` importance proposals come from the amortized posterior itself."""
    return max(1, round(REFINE_DEFENSIVE * s))


@dataclasses.dataclass(frozen=True)
class _StudentT:
    """Multivariate Student-t ``t_nu(mean, L L')``: the fitted part of a refined importance proposal.

    Heavier tails than the Gaussian of the same scale matrix, so a proposal fitted to few
    effective draws still covers the target's tails.
    """

    mean: torch.Tensor  # (G,)
    chol: torch.Tensor  # (G, G), lower triangular
    nu: float = REFINE_T_DF

    @classmethod
    def fit(cls, z: torch.Tensor, log_w: torch.Tensor) -> _StudentT:
        """Weighted mean and covariance of draws ``z (S, G)`` under normalized ``exp(log_w)``."""
        p = torch.softmax(log_w.double(), 0)
        zd = z.double()
        mean = p @ zd
        centred = zd - mean
        cov = (centred * p[:, None]).T @ centred / max(1e-12, 1.0 - float((p * p).sum()))
        # relative to the draws' own spread: a fit to one or two effective draws stays a valid (narrow) t
        jitter = 1e-6 * (zd.var(0).mean() + 1e-12)
        chol = torch.linalg.cholesky(cov + jitter * torch.eye(len(mean), dtype=cov.dtype, device=cov.device))
        return cls(mean.to(z.dtype), chol.to(z.dtype))

    def sample(self, s: int, gen: torch.Generator | None) -> torch.Tensor:
        g = len(self.mean)
        eps = torch.randn(s, g, generator=gen, dtype=self.mean.dtype)
        chi2 = torch.randn(s, int(self.nu), generator=gen, dtype=self.mean.dtype).square().sum(-1)
        scale = torch.sqrt(self.nu / chi2)[:, None].to(self.mean.device)
        return self.mean + scale * (eps.to(self.mean.device) @ self.chol.T)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        g, nu = len(self.mean), self.nu
        u = torch.linalg.solve_triangular(self.chol, (z - self.mean).T, upper=False).T
        return (math.lgamma((nu + g) / 2) - math.lgamma(nu / 2) - 0.5 * g * math.log(nu * math.pi)
                - torch.log(torch.diagonal(self.chol)).sum() - 0.5 * (nu + g) * torch.log1p(u.square().sum(-1) / nu))


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


@dataclasses.dataclass(frozen=True)
class MultilevelDraws:
    """Posterior draws of one or many data sets.

    Attributes:
        global_draws: ``(B, n, G)`` hyper- and shared parameters.
        local_draws: ``(B, n, J, L)`` group parameters (NaN for padded groups).
        parameter_names, local_parameter_names: column names.
        group_labels: per data set, the labels of its groups.
        diagnostics: for importance-sampled draws (:meth:`MultilevelAmortizer.importance_draws`),
            ``pareto_k``, ``ess``, ``ess_fraction``, ``proposals``, ``rounds``,
            ``pareto_k_by_round`` (a list) and ``likelihood_mc_sd`` of the importance weights.
    """

    global_draws: np.ndarray
    local_draws: np.ndarray
    parameter_names: tuple[str, ...]
    local_parameter_names: tuple[str, ...]
    group_labels: tuple[tuple[str, ...], ...]
    diagnostics: dict[str, Any] | None = None

    def to_frame(self, dataset: int = 0) -> pd.DataFrame:
        """Wide DataFrame of one data set: global columns then ``name[group]`` local columns."""
        glob = pd.DataFrame(self.global_draws[dataset], columns=list(self.parameter_names))
        labels = self.group_labels[dataset]
        cols = {}
        for li, lname in enumerate(self.local_parameter_names):
            for j, lab in enumerate(labels):
                cols[f"{lname}[{lab}]"] = self.local_draws[dataset, :, j, li]
        return pd.concat([glob, pd.DataFrame(cols)], axis=1)

    def to_long(self, dataset: int = 0) -> pd.DataFrame:
        """Long DataFrame of one data set's local draws: ``draw, group, parameter, value``."""
        labels = self.group_labels[dataset]
        loc = self.local_draws[dataset][:, : len(labels)]  # (n, J, L)
        n, j, l_ = loc.shape
        return pd.DataFrame(
            {
                "draw": np.repeat(np.arange(n), j * l_),
                "group": np.tile(np.repeat(np.asarray(labels, dtype=object), l_), n),
                "parameter": np.tile(np.asarray(self.local_parameter_names, dtype=object), n * j),
                "value": loc.reshape(-1),
            }
        )

    def summary(self, dataset: int = 0) -> pd.DataFrame:
        """Mean, sd and quantiles of every global and local parameter."""
        return summarize_draws(self.to_frame(dataset))


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
            self.global_summary = DeepSet(
                group_dim, s.global_summary_dim, s.hidden, interactions=False,
                **({"second_moments_of_last": stats} if s.pooled_moments is None else
                   {"second_moments_of": tuple(s.group_summary_dim + i for i in s.pooled_moments)})
            )
            # the global flow also sees the groups' pooled within-group (residual) SDs: sums of
            # squares over degrees of freedom, the estimate of sigma that the likelihood pools
            self.n_pooled = self.group_summary.n_pooled_statistics if stats else 0
            # a pilot adds its location and log scale per global parameter to the flow's context
            n_pilot = 2 * n_glob if s.pilot is not None else 0
            self.global_flow = build_flow(n_glob, s.global_summary_dim + self.n_pooled + n_pilot, s.global_flow,
                                          context_shift=s.pilot is not None)
            self.local_flow = build_flow(n_loc, group_dim + n_glob, s.local_flow)

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
        return groups

    def pool(self, groups: torch.Tensor, x: torch.Tensor, mask: torch.Tensor, group_mask: torch.Tensor) -> torch.Tensor:
        """The data-set summary ``(B, S_g)`` of the groups that ``group_mask`` keeps: pooled embeddings, SDs and the pilot."""
        summary = self.global_summary(groups, group_mask)
        if self.n_pooled:
            stats = groups[..., -n_statistics(self.group_summary) :]
            summary = torch.cat([summary, self.group_summary.pooled_statistics(stats, group_mask)], dim=-1)
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
        groups, summary = self.embed(batch["x"], batch["mask"], batch["group_mask"])
        zg = self.global_map(batch["theta_global"])
        log_q_global = self.global_flow.log_prob(zg, context=summary)
        valid = batch["group_mask"] > 0
        b, j = valid.shape
        context = torch.cat([groups, zg[:, None, :].expand(b, j, -1)], dim=-1)[valid]
        zl = self.local_map(batch["theta_local"], self.local_map.upper(batch["x"], batch["mask"]))[valid]
        log_q_local = self.local_flow.log_prob(zl, context=context)
        rows = torch.arange(b, device=zg.device)[:, None].expand(b, j)[valid]
        per_set = log_q_global.index_add(0, rows, log_q_local)
        return -per_set.mean()

    # -- inference ------------------------------------------------------------------------
    def prepare(self, data: Any, **kwargs: Any) -> MultilevelData:
        """Validate and pad user data (see :func:`prepare_multilevel`)."""
        return prepare_multilevel(data, self.info, **kwargs)

    def sample_draws(self, data: Any, n: int = 1000, *, seed: int | None = None, **kwargs: Any) -> MultilevelDraws:
        """Joint posterior draws (ancestral sampling, eq. 18) for one or many data sets."""
        if not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"number of draws must be a positive integer, got {n!r}")
        d = data if isinstance(data, MultilevelData) else self.prepare(data, **kwargs)
        self.data_range.check(d.x, d.mask)
        dev = module_device(self)
        gen = make_generator(seed)
        with inference_mode(self):
            x, mask, gmask = d.x.to(dev), d.mask.to(dev), d.group_mask.to(dev)
            groups, summary = self.embed(x, mask, gmask)
            zg = sample_flow(self.global_flow, int(n), summary, gen)  # (B, n, G)
            theta_g = self.global_map.inverse(zg)
            theta_l = self._sample_local(groups, zg, gmask, gen, self.local_map.upper(x, mask))
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

    def sample(self, data: Any, n: int = 1000, *, seed: int | None = None, **kwargs: Any) -> pd.DataFrame:
        """Wide DataFrame of draws for one data set: ``mu_alpha, ..., alpha[group], ...``."""
        draws = self.sample_draws(data, n, seed=seed, **kwargs)
        if draws.global_draws.shape[0] != 1:
            raise ValueError("sample() takes one data set; use sample_draws() for several")
        return draws.to_frame(0)

    def posterior_summary(self, data: Any, n: int = 4000, *, seed: int | None = 0, **kwargs: Any) -> pd.DataFrame:
        return self.sample_draws(data, n, seed=seed, **kwargs).summary(0)

    # -- importance sampling ----------------------------------------------------------------
    def importance_draws(self, data: Any, model: Any, n: int = 1000, *, proposals: int | None = None,
                         importance: int = 8, rounds: int = 1, seed: int | None = 0, warn: bool = True,
                         progress: bool = True, **kwargs: Any) -> MultilevelDraws:
        """Posterior draws of one data set corrected towards the exact posterior by importance sampling.

        The amortized posterior is a proposal: ``proposals`` global draws ``g_s ~ q_1(g | x)``
        get the weights ``w_s = p(g_s) prod_j p(x_j | g_s) / q_1(g_s | x)``, where each
        group's ``p(x_j | g_s)`` (its parameters integrated out) is estimated from
        ``importance`` draws of the local flow, as in :meth:`logo`.  An unbiased estimate of
        each factor keeps the weighted draws exact in the limit (pseudo-marginal importance
        sampling).  ``n`` draws are then resampled with probabilities ``w_s`` (Pareto-smoothed,
        :func:`amortbayes.diagnostics.pareto_smooth`), and each
        group's parameters are picked among its local draws in proportion to their own
        weights.  The price is ``proposals * importance * J`` likelihood evaluations; the
        gain is draws whose remaining error is Monte Carlo error, with a diagnostic: the
        Pareto ``k`` of the weights (:func:`amortbayes.diagnostics.pareto_khat`).  Above 0.7
        the amortized posterior misses mass the exact one has (data unlike the training
        simulations, an undertrained network) and the draws are not to be trusted; that
        warns (``warn=False`` silences it).  ``model`` supplies ``global_log_prior``,
        ``local_log_prior`` and ``log_likelihood``; a model with other priors than the one
        trained on (a prior sensitivity check) works as long as ``k`` stays low.

        ``rounds > 1`` refines the proposal while ``k`` stays above 0.5 (``REFINE_UNTIL_K``:
        weights of finite variance) or fewer than a tenth of one round's proposals are
        effective draws (``k`` alone is noisy when the likelihood estimates are), up to
        ``rounds`` rounds of ``proposals`` draws each (adaptive importance sampling): the next proposal
        is a Student-t (5 degrees of freedom) fitted to all draws so far in the flow's
        standardized space, weighted by ``w ** beta`` with the largest ``beta <= 1`` that
        keeps a tenth of them as effective draws (geometric tempering: a step towards the
        posterior that few effective draws can still describe), mixed with the amortized
        posterior itself for a tenth of the draws (defensive mixture: the weights are never
        worse than ten times the amortized ones).  Every round's draws keep their likelihood
        estimates and are reweighted against the mixture of all rounds' proposals
        (deterministic-mixture weights, as in adaptive multiple importance sampling), so no
        likelihood evaluation is wasted and the draws returned are resampled from all rounds.
        For a network whose posterior is narrower than the exact one, or off by a few of its
        SDs (a prior unlike the trained one, a data set at the edge of the simulations), at
        the cost of ``rounds`` times the work.

        A progress bar over the groups appears when the work runs longer than ``PROGRESS_DELAY_S``
        (2 s); ``progress=False`` hides it.

        Returns :class:`MultilevelDraws` with ``diagnostics``: ``pareto_k``, ``ess`` (of the
        weights of all rounds' draws), ``ess_fraction``, ``proposals`` (weighted draws, all
        rounds), ``rounds`` (run), ``pareto_k_by_round`` (after each round, of all draws so
        far) and ``likelihood_mc_sd``: the
        Monte Carlo SD of the estimated ``sum_j log p(x_j | g)`` (delta method over each group's
        local weights as if they were independent draws, averaged over the weighted draws; the
        local draws are randomized quasi-Monte Carlo, which lowers the actual noise, while
        heavy-tailed local weights raise it: on speed_acc 2.0 / 1.4 nats reported where repeated
        estimates at Stan's draws spread by 2.2 / 1.2 with 8 / 32 local draws).  That noise
        enters every log weight;
        above about 1 nat it alone makes the weights degenerate (a noise variance ``s^2``
        keeps roughly a fraction ``exp(-s^2)`` of the effective sample size), and the warning
        then says to raise ``importance``.

        References:
            Dax et al. (2023). Neural importance sampling for rapid and reliable
            gravitational-wave inference. Physical Review Letters 130, 171403.
            Cappé, Guillin, Marin & Robert (2004). Population Monte Carlo. Journal of
            Computational and Graphical Statistics 13(4), 907-929.
            Cornuet, Marin, Mira & Robert (2012). Adaptive multiple importance sampling.
            Scandinavian Journal of Statistics 39(4), 798-812.
        """
        dev = module_device(self)
        d, j, x, mask = self._one_data_set(data, "importance_draws", kwargs, dev)
        proposals = 2 * n if proposals is None else proposals
        for name, value, least in (("n", n, 1), ("proposals", proposals, 10), ("importance", importance, 1),
                                   ("rounds", rounds, 1)):
            if not isinstance(value, (int, np.integer)) or value < least:
                raise ValueError(f"importance_draws() needs an integer {name} >= {least}, got {value!r}")
        if not hasattr(model, "global_log_prior"):
            raise TypeError(f"importance_draws() needs a model with global_log_prior, local_log_prior and log_likelihood; got {type(model).__name__}")
        gen = make_generator(seed)
        k_by_round: list[float] = []
        with inference_mode(self):
            groups, summary = self.embed(x, mask, d.group_mask[:, :j].to(dev))
            fits: list[_StudentT] = []  # the Student-t part of each refined round's proposal
            kept: list[tuple] = []  # per round: z, theta, log target, log flow density, local draws, their weights, noise
            for r in range(int(rounds)):
                zg, log_flow = self._global_proposal(summary, int(proposals), fits[-1] if fits else None, gen)
                theta_g = self.global_map.inverse(zg)
                label = None if not progress else "importance weights" + (f", round {r + 1}" if rounds > 1 else "")
                log_px, local, local_log_w, noise = self._groups_evidence(groups, zg, theta_g, x, mask, model,
                                                                          importance, gen, label)
                # the exact posterior's unnormalized log density in the flow's standardized space
                log_target = model.global_log_prior(theta_g) - self.global_map.log_abs_det(theta_g) + log_px.sum(-1)
                kept.append((zg, theta_g, log_target, log_flow, local, local_log_w, noise))
                z_all = torch.cat([kr[0] for kr in kept])
                log_q = self._proposals_log_density(z_all, torch.cat([kr[3] for kr in kept]), fits, int(proposals))
                log_w = _nan_to_neginf(torch.cat([kr[2] for kr in kept]) - log_q)
                if not torch.isfinite(log_w).any():
                    raise ValueError("importance_draws(): every proposal has zero weight under the model (likelihood or "
                                     "prior is zero at all amortized draws); the data do not fit the model or the amortizer")
                smoothed, k_hat = pareto_smooth(log_w.cpu().double().numpy())
                k_by_round.append(k_hat)
                settled = k_hat <= REFINE_UNTIL_K and effective_sample_size(smoothed) >= REFINE_TARGET_ESS * int(proposals)
                if settled or r == rounds - 1:
                    break
                lw = log_w.cpu().double()
                beta = tempering_exponent(lw.numpy(), REFINE_TARGET_ESS * len(lw))
                fits.append(_StudentT.fit(z_all, (beta * lw).to(dev)))
            theta_g = torch.cat([kr[1] for kr in kept])
            noise = torch.cat([kr[6] for kr in kept])
            # resampling on the CPU, where the seeded generator lives (the draws may be on a GPU)
            probs = torch.as_tensor(np.exp(smoothed - smoothed.max()), dtype=torch.float64)
            picked = torch.multinomial(probs, int(n), replacement=True, generator=gen).to(dev)
            out = torch.empty(int(n), j, len(self.info.local_parameter_names), device=dev)
            exact_local = _exact_groups(model)[1]
            batched = _all_groups(model)
            if batched is not None:  # every group's parameters given the picked globals, drawn exactly at once
                out[:] = _in_draw_chunks(lambda t: batched[1](t[:, None], x[0], mask[0], gen), theta_g[picked].double(),
                                         j).to(out)
            for k in range(0 if batched is not None else j):
                if exact_local is not None:  # the group's parameters given the picked globals, drawn exactly
                    out[:, k] = exact_local(theta_g[picked].double(), x[0, k], mask[0, k], gen).to(out)
                    continue
                local_k = torch.cat([kr[4][k] for kr in kept])
                inner = torch.softmax(torch.cat([kr[5][k] for kr in kept])[picked].double().cpu(), -1)  # (n, m); finite where the global weight is
                which = torch.multinomial(inner, 1, generator=gen)[:, 0].to(dev)
                out[:, k] = local_k[picked, which]
        weighted = len(probs)
        ess = effective_sample_size(smoothed)  # k-hat is the raw weights' tail; the ESS that of the weights used
        diag = {"pareto_k": k_hat, "ess": ess, "ess_fraction": ess / weighted, "proposals": weighted,
                "rounds": len(k_by_round), "pareto_k_by_round": k_by_round,
                "likelihood_mc_sd": _weighted_noise_sd(probs.numpy(), noise.cpu().double().numpy())}
        if warn and diag["pareto_k"] > RELIABLE_PARETO_K:
            noisy = (f" The groups' likelihoods, each estimated from {importance} local draws, add noise of "
                     f"{diag['likelihood_mc_sd']:.1f} nats to the log weights, which alone degrades them; a larger "
                     "importance= (or a better trained local flow) reduces it."
                     if diag["likelihood_mc_sd"] > 1.0 else "")
            more = (f" {rounds} rounds of refined proposals did not bring k below {RELIABLE_PARETO_K}." if rounds > 1 else
                    " rounds=3 or more refines the proposal towards the exact posterior.")
            warnings.warn(
                f"importance weights may be unreliable (Pareto k = {diag['pareto_k']:.2f} > {RELIABLE_PARETO_K}, "
                f"effective sample size {diag['ess']:.0f} of {weighted}): the amortized posterior's tails are lighter "
                "than the exact posterior's for these data. If the effective sample size is small, do not trust these "
                "draws: compare with a Stan fit (amortbayes.reference), or retrain with simulations like these data."
                + more + noisy, stacklevel=2)
        local_all = np.full((1, int(n), d.x.shape[1], out.shape[-1]), np.nan, dtype=np.float32)
        local_all[0, :, :j] = out.cpu().numpy()
        return MultilevelDraws(
            theta_g[picked].cpu().numpy()[None], local_all, self.info.parameter_names,
            self.info.local_parameter_names, d.group_labels, diagnostics=diag,
        )

    def _global_proposal(self, summary: torch.Tensor, s: int, fitted: _StudentT | None, gen) -> tuple[torch.Tensor, torch.Tensor]:
        """``s`` standardized global draws ``(s, G)`` for one data set and the amortized posterior's log density at them.

        Without ``fitted``: draws of the amortized posterior.  With it: ``REFINE_DEFENSIVE`` of the
        draws from the amortized posterior and the rest from ``fitted`` (fixed counts; the
        proposal is their mixture, :meth:`_proposals_log_density`).
        """
        if fitted is None:
            zg, log_q = sample_flow(self.global_flow, s, summary, gen, log_prob=True)
            return zg[0], log_q[0]
        z_flow, log_flow = sample_flow(self.global_flow, _defensive_draws(s), summary, gen, log_prob=True)
        z_t = fitted.sample(s - z_flow.shape[1], gen)  # the flow's density at these needs a pass of its own
        log_flow_t = self.global_flow.log_prob(z_t, context=summary.expand(len(z_t), -1))
        return torch.cat([z_flow[0], z_t]), torch.cat([log_flow[0], log_flow_t])

    @staticmethod
    def _proposals_log_density(z: torch.Tensor, log_flow: torch.Tensor, fits: list[_StudentT], s: int) -> torch.Tensor:
        """Log density of the mixture of every round's proposal at ``z (R s, G)`` (all rounds' draws).

        Round 1 proposes from the amortized posterior (log density ``log_flow``), round ``r > 1``
        from ``fits[r - 2]`` and, for ``_defensive_draws(s)`` of its ``s`` draws, the amortized
        posterior; every round draws ``s``, so each weighs ``1 / R`` (deterministic mixture).
        """
        rounds = len(fits) + 1
        share = _defensive_draws(s) / s
        parts = [log_flow + math.log((1 + (rounds - 1) * share) / rounds)]
        parts += [t.log_prob(z) + math.log((1 - share) / rounds) for t in fits]
        return torch.logsumexp(torch.stack(parts), 0)

    # -- leave-one-group-out --------------------------------------------------------------
    def logo(self, data: Any, model: Any, n: int = 1000, *, importance: int = 16, seed: int | None = 0,
             progress: bool = True, **kwargs: Any) -> pd.DataFrame:
        """Leave-one-group-out ELPD of every group of one data set, without refitting.

        For each group ``k`` the global posterior given the other groups, ``q_{-k}``, comes
        from the same network (group ``k`` masked out; all ``J`` LOGO posteriors and the
        full-data posterior ``q`` in one batch).  ``log p(x_k | x_{-k}) = log E_{q_{-k}}
        p(x_k | tau, sigma)`` is estimated by multiple importance sampling: half of the
        ``n`` global draws from ``q_{-k}``, half from ``q``, weighted by
        ``q_{-k} / (q_{-k} / 2 + q / 2)`` (both densities are the flow's).  Draws from
        ``q_{-k}`` alone rarely reach the region where an informative or outlying group's
        likelihood lies, and the estimate then rests on a few draws; the full-data posterior
        is proportional to ``p(x_k | .) q_{-k}``, the ideal proposal, so the weighted
        integrand stays below twice the estimate.  ``p(x_k | tau, sigma)`` takes
        ``importance`` local draws from the local flow as the proposal.  ``model`` supplies
        ``log_likelihood`` and ``local_log_prior``.

        Returns a DataFrame with one row per group: ``group``, ``elpd``, ``mc_se`` (the
        Monte Carlo standard error of the estimate, by the delta method) and ``q10``, ``q90``:
        the central 80 % interval of ``log p(x_k | tau, sigma)`` over the LOGO posterior
        ``q_{-k}`` (the spread the ELPD averages over, as the intervals of Habermann et al.
        2024, Figure 9; see :func:`amortbayes.plots.plot_logo`).

        A progress bar over the groups appears when the work runs longer than ``PROGRESS_DELAY_S``
        (2 s); ``progress=False`` hides it.
        """
        dev = module_device(self)
        d, j, x, mask = self._one_data_set(data, "logo", kwargs, dev)
        if not isinstance(n, (int, np.integer)) or n < 2 or not isinstance(importance, (int, np.integer)) or importance < 1:
            raise ValueError(f"logo() needs n >= 2 global and importance >= 1 local draws, got n={n!r}, importance={importance!r}")
        if j < 2:
            raise ValueError("leave-one-group-out needs at least two groups")
        gen = make_generator(seed)
        with inference_mode(self):
            # J + 1 summaries of the data set: summary k without group k, the last one complete.
            # The groups' embeddings do not depend on which group is left out: computed once, and
            # the summaries in passes of about LOGO_CHUNK_ROWS rows (J copies of J groups would be
            # J^2 groups: 250,000 for 500)
            groups = self.embed_groups(x, mask, torch.ones(1, j, device=dev))
            loo_gmask = torch.cat([1.0 - torch.eye(j, device=dev), torch.ones(1, j, device=dev)])
            per = max(1, LOGO_CHUNK_ROWS // max(1, int(x.shape[1] * x.shape[2])))
            summary = torch.cat([self.pool(groups.expand(len(gm), -1, -1), x.expand(len(gm), -1, -1, -1),
                                           mask.expand(len(gm), -1, -1), gm)
                                 for gm in loo_gmask.split(per)])
            zg, log_q_mix = self._logo_proposal(summary, n, gen)  # (J, n, G), (J, n)
            theta_g = self.global_map.inverse(zg)
            # the left-out group's own embedding (its data, not the others'); one group at a
            # time keeps memory at n * importance * N_k likelihood terms
            own = groups[0]  # (J, S_l)
            elpd = torch.empty(j, device=dev)
            rel_se = torch.empty(j, device=dev)
            interval = torch.empty(j, 2, device=dev)
            batched = _all_groups(model)
            if batched is not None:  # group k's exact marginal at its own LOGO draws theta_g[k], all k at once
                log_pxs = _in_draw_chunks(lambda t: batched[0](t, x[0], mask[0]), theta_g.transpose(0, 1), j)
            for k in _over_groups(j, "leave-one-group-out", progress):
                if batched is not None:
                    log_px = log_pxs[:, k]
                else:
                    log_px, _, _ = self._group_evidence(own[k], zg[k], theta_g[k], x[0, k], mask[0, k], model,
                                                        importance, gen)
                elpd[k], rel_se[k] = log_mean_exp(log_px + log_q_mix[k])  # weighted: q_{-k} / mixture
                interval[k] = weighted_quantiles(log_px, log_q_mix[k], (0.1, 0.9)).to(interval.dtype)
        interval = interval.cpu().numpy()
        return pd.DataFrame({"group": list(d.group_labels[0][:j]), "elpd": elpd.cpu().numpy(),
                             "mc_se": rel_se.cpu().numpy(), "q10": interval[:, 0], "q90": interval[:, 1]})

    def group_log_evidence(self, data: Any, model: Any, theta_global: Any, *, importance: int = 16,
                           seed: int | None = 0, progress: bool = True, **kwargs: Any) -> np.ndarray:
        """``log p(x_j | tau, sigma)`` of every group of one data set at given global parameter values.

        Each group's own parameters are integrated out by importance sampling with
        ``importance`` draws of the local flow as the proposal (unbiased for any global
        values, as in :meth:`logo`).  ``theta_global`` is ``(S, G)`` (array, dict or a
        DataFrame with the global parameter names, such as Stan's draws; other columns are
        ignored).  With draws of the full-data posterior, e.g. a Stan fit,
        :func:`amortbayes.diagnostics.psis_logo` turns the result into leave-one-group-out
        ELPDs without refits: a reference for :meth:`logo` that does not use the global flow.

        Returns ``(S, J)``; ``-inf`` where a group's data are impossible under a draw.

        A progress bar over the groups appears when the work runs longer than ``PROGRESS_DELAY_S``
        (2 s); ``progress=False`` hides it.
        """
        dev = module_device(self)
        d, j, x, mask = self._one_data_set(data, "group_log_evidence", kwargs, dev)
        if not isinstance(importance, (int, np.integer)) or importance < 1:
            raise ValueError(f"group_log_evidence() needs an integer importance >= 1, got {importance!r}")
        names = self.info.parameter_names
        if isinstance(theta_global, pd.DataFrame):
            theta_global = theta_global[[c for c in theta_global.columns if c in names]]
        th = torch.from_numpy(theta_from_user(theta_global, names))
        self.global_map.check_support(th, names)
        gen = make_generator(seed)
        with inference_mode(self):
            groups = self.embed_groups(x, mask, d.group_mask[:, :j].to(dev))
            theta_g = th.to(dev)
            log_px = self._groups_evidence(groups, self.global_map(theta_g), theta_g, x, mask, model, importance, gen,
                                           "group evidence" if progress else None)[0]
        return _nan_to_neginf(log_px).cpu().double().numpy()

    def _one_data_set(self, data: Any, caller: str, kwargs: dict, dev: torch.device) -> tuple[MultilevelData, int, torch.Tensor, torch.Tensor]:
        """Prepared data of exactly one data set, checked against the trained data range.

        Returns the data, its number of groups ``J`` and the groups' rows ``x (1, J, N, F)``
        and ``mask (1, J, N)`` on ``dev``.
        """
        d = data if isinstance(data, MultilevelData) else self.prepare(data, **kwargs)
        if d.x.shape[0] != 1:
            raise ValueError(f"{caller}() takes one data set")
        self.data_range.check(d.x, d.mask)
        j = int(d.group_mask.sum())
        return d, j, d.x[:, :j].to(dev), d.mask[:, :j].to(dev)

    def _groups_evidence(self, groups, zg, theta_g, x, mask, model, m: int, gen,
                         progress: str | None = None) -> tuple[torch.Tensor, list, list, torch.Tensor]:
        """:meth:`_group_evidence` of each of one data set's ``J`` groups at the same ``n`` global draws.

        ``groups (1, J, S_l)``, ``x (1, J, N, F)``, ``mask (1, J, N)``.  Returns ``log p(x_j |
        g)`` ``(n, J)``, per group its local draws and their log weights, and the Monte Carlo
        variance of each draw's ``sum_j log p(x_j | g)`` ``(n,)``.  One group at
        a time, and its likelihood in passes of about ``LIKELIHOOD_CHUNK_TERMS`` terms, keep memory
        bounded.  ``progress``: the label of a progress bar over the groups (shown when the work
        lasts), None for none.  A model with ``group_log_marginals`` and ``sample_local_posteriors``
        (every group's exact marginal and conditional at once) is evaluated in one pass over the
        groups instead (:func:`_all_groups`).
        """
        batched = _all_groups(model)
        if batched is not None:
            log_px = _in_draw_chunks(lambda t: batched[0](t[:, None], x[0], mask[0]), theta_g, x.shape[1])
            empty = [None] * x.shape[1]
            return log_px, empty, empty, torch.zeros(zg.shape[0], device=zg.device)
        parts = [self._group_evidence(groups[0, k], zg, theta_g, x[0, k], mask[0, k], model, m, gen)
                 for k in _over_groups(x.shape[1], progress or "", progress is not None)]
        # Monte Carlo variance of each global draw's summed log-likelihood estimate (delta method);
        # none where the model integrates a group's parameters out exactly (group_log_marginal)
        if _exact_groups(model)[0] is not None:
            noise = torch.zeros(zg.shape[0], device=zg.device)
        else:
            noise = torch.stack([log_mean_exp(p[2])[1] for p in parts], -1).square().sum(-1)
        return torch.stack([p[0] for p in parts], dim=-1), [p[1] for p in parts], [p[2] for p in parts], noise

    def _group_evidence(self, own, zg, theta_g, x, mask, model, m: int, gen) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``log p(x_k | globals)`` of one group at ``n`` global draws, by importance sampling over its parameters.

        ``own (S_l,)`` is the group's embedding, ``zg, theta_g (n, G)`` the global draws
        (standardized and natural), ``x (N, F)`` and ``mask (N,)`` its rows.  The local flow
        proposes ``m`` draws per global draw (randomized quasi-Monte Carlo,
        :func:`~amortbayes.networks.flows.quasi_normal`); ``log p(x_k | g) ~= log mean_m p(x_k | theta_m, g)
        p(theta_m | g) / q_2(theta_m | x_k, g)``.  Returns that ``(n,)``, the local draws
        ``(n, m, L)`` and their log weights ``(n, m)``.  A model with
        ``group_log_marginal(theta_g, x, mask)`` (the group's parameters integrated out in closed
        form, e.g. a gaussian model's) gives the first exactly; the local draws and their weights
        then only pick the group's parameters, and one that also has
        ``sample_local_posterior(theta_g, x, mask, generator)`` draws those exactly after
        resampling, so no local draws are made here (``None, None`` returned for them).  A model
        with ``local_proposal(theta_g, x, mask, m, generator)`` (draws ``(n, m, L)`` and their log
        density ``(n, m)``) proposes the local draws itself, in place of the local flow.
        """
        n = zg.shape[0]
        exact, exact_local = _exact_groups(model)
        if exact_local is not None:
            # the group's parameters are drawn exactly after resampling (importance_draws): no local flow
            return _nan_to_neginf(exact(theta_g, x, mask)), None, None
        proposal = getattr(model, "local_proposal", None)
        if proposal is not None:  # the model's own proposal (a formula model's Laplace approximation)
            theta_l, log_q = proposal(theta_g, x, mask, m, gen)
            theta_l = theta_l.to(theta_g.dtype).reshape(n, m, 1, -1)
        else:
            context = torch.cat([own[None].expand(n, -1), zg], -1)
            # randomized quasi-Monte Carlo: the m draws of each global draw spread evenly (still each
            # an exact flow draw, rows independent), so the average varies less than with m random ones
            zl, log_q = sample_flow(self.local_flow, m, context, gen, log_prob=True, qmc=True)  # (n, m, L), (n, m)
            upper = self.local_map.upper(x, mask)  # (L,): the group's data bounds, None without
            theta_l = self.local_map.inverse(zl.reshape(n * m, -1), upper)
            log_q = log_q + self.local_map.log_abs_det(theta_l, upper).reshape(n, m)
            theta_l = theta_l.reshape(n, m, 1, -1)
        tg = theta_g[:, None, :].expand(n, m, -1)
        # the m draws of a global draw enter as m groups of it: one prior factorization per global draw
        log_prior = model.local_log_prior(theta_g, theta_l[:, :, 0])  # (n, m)
        # in chunks of global draws of about LIKELIHOOD_CHUNK_TERMS trial terms: every temporary of the
        # likelihood stays a few MB (the same values; speed_acc, 4,000 x 32 draws: 5x faster)
        per = max(1, LIKELIHOOD_CHUNK_TERMS // (m * max(1, x.shape[0])))  # global draws per pass
        rows, observed = x[None, None, None], mask[None, None, None]
        log_lik = torch.cat([model.log_likelihood(tg[s : s + per], theta_l[s : s + per], rows, observed)[..., 0]
                             for s in range(0, n, per)])
        log_w = _nan_to_neginf(log_lik + log_prior - log_q)
        if exact is not None:  # the group's parameters integrated out in closed form: no Monte Carlo noise
            return _nan_to_neginf(exact(theta_g, x, mask)), theta_l[:, :, 0], log_w
        return torch.logsumexp(log_w, dim=-1) - math.log(m), theta_l[:, :, 0], log_w

    def _logo_proposal(self, summary: torch.Tensor, n: int, gen) -> tuple[torch.Tensor, torch.Tensor]:
        """Global draws for LOGO and their log weights ``log q_{-k} - log((q_{-k} + q) / 2)``.

        ``summary (J + 1, S)`` holds the ``J`` leave-one-out summaries and, last, the full
        data set's.  Returns ``(J, n, G)`` standardized draws, the first ``n - n // 2`` of
        row ``k`` from ``q_{-k}`` and the rest from ``q`` (the same for every ``k``).
        """
        j = summary.shape[0] - 1
        n_full = n // 2
        z_loo = sample_flow(self.global_flow, n - n_full, summary[:j], gen)
        z_full = sample_flow(self.global_flow, n_full, summary[j:], gen).expand(j, -1, -1)
        z = torch.cat([z_loo, z_full], dim=1)
        flat = z.reshape(j * n, -1)
        log_q_loo = self.global_flow.log_prob(flat, context=summary[:j].repeat_interleave(n, 0)).reshape(j, n)
        log_q_full = self.global_flow.log_prob(flat, context=summary[j:].expand(j * n, -1)).reshape(j, n)
        log_mix = torch.logaddexp(log_q_loo + math.log((n - n_full) / n), log_q_full + math.log(n_full / n))
        return z, log_q_loo - log_mix

    # -- persistence ----------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        return {"model": self.info.to_dict(), "settings": self.settings.to_dict()}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> MultilevelAmortizer:
        return cls(ModelInfo.from_dict(config["model"]), MultilevelSettings.from_dict(config["settings"]))

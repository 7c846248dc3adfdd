"""The evidence of a model's groups at global draws: ``log p(x_j | tau, sigma)``, each group's parameters integrated out.

For global draws ``g`` of a two-level model, the group ``j``'s evidence ``p(x_j | g) = int
p(x_j | theta_j, g) p(theta_j | g) d theta_j`` is estimated by importance sampling with a
proposal for ``theta_j``: the amortizer's local flow ``q_2(theta_j | x_j, g)`` (randomized
quasi-Monte Carlo draws), or the model's own ``local_proposal`` (a formula model's Laplace
approximation), or not at all where the model integrates it out in closed form
(``group_log_marginal``, or ``group_log_marginals`` for every group at once):

    p(x_j | g) ~= mean_m p(x_j | theta_m, g) p(theta_m | g) / q(theta_m).

This is the one estimator :mod:`amortbayes.inference.importance` (importance-corrected draws)
and :mod:`amortbayes.inference.logo` (leave-one-group-out ELPD, group evidence) share.  The
amortizer gives the proposals (its networks); ``model`` gives ``local_log_prior`` and
``log_likelihood`` (or the closed forms).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch
from tqdm.auto import tqdm

from amortbayes.diagnostics.multilevel import log_mean_exp
from amortbayes.networks import sample_flow
from amortbayes.simulation import MultilevelData

if TYPE_CHECKING:
    from amortbayes.amortizers.multilevel import MultilevelAmortizer

LIKELIHOOD_CHUNK_TERMS = 2**18  # likelihood terms (draws x rows) per pass when estimating a group's evidence
PROGRESS_DELAY_S = 2.0  # group-by-group work shows a progress bar once it has run this long


def over_groups(j: int, desc: str, progress: bool):
    """``range(j)`` for a loop over groups, with a progress bar when it takes longer than ``PROGRESS_DELAY_S``."""
    return tqdm(range(j), desc=desc, unit="group", delay=PROGRESS_DELAY_S, leave=False, disable=not progress)


def nan_to_neginf(log_w: torch.Tensor) -> torch.Tensor:
    """NaN log weights (a density outside its support) become zero weights; -inf stays -inf."""
    return torch.where(torch.isnan(log_w), torch.full_like(log_w, -math.inf), log_w)


def exact_groups(model: Any) -> tuple[Any, Any]:
    """A model's closed forms for one group: ``group_log_marginal`` and, only beside it, ``sample_local_posterior``."""
    marginal = getattr(model, "group_log_marginal", None)
    return marginal, getattr(model, "sample_local_posterior", None) if marginal is not None else None


def all_groups(model: Any) -> tuple[Any, Any] | None:
    """A model's exact marginals and conditional draws of all groups at once, or None.

    ``group_log_marginals(theta_g (..., J or 1, G), x (J, N, F), mask (J, N)) -> (..., J)`` and
    ``sample_local_posteriors(theta_g, x, mask, generator) -> (..., J, L)`` (a formula model's
    moments layout, whose groups are all one row).
    """
    marginals, draws = getattr(model, "group_log_marginals", None), getattr(model, "sample_local_posteriors", None)
    return (marginals, draws) if marginals is not None and draws is not None else None


def in_draw_chunks(fn, theta: torch.Tensor, groups: int) -> torch.Tensor:
    """``fn`` of ``theta (S, ...)`` in chunks of draws of about ``LIKELIHOOD_CHUNK_TERMS`` draw-group pairs, concatenated."""
    per = max(1, LIKELIHOOD_CHUNK_TERMS // max(1, groups))
    return torch.cat([fn(theta[s : s + per]) for s in range(0, theta.shape[0], per)])


def one_data_set(amortizer: MultilevelAmortizer, data: Any, caller: str, kwargs: dict, dev: torch.device) -> tuple[MultilevelData, int, torch.Tensor, torch.Tensor]:
    """Prepared data of exactly one data set, checked against the trained data range.

    Returns the data, its number of groups ``J`` and the groups' rows ``x (1, J, N, F)``
    and ``mask (1, J, N)`` on ``dev``.
    """
    d = data if isinstance(data, MultilevelData) else amortizer.prepare(data, **kwargs)
    if d.x.shape[0] != 1:
        raise ValueError(f"{caller}() takes one data set")
    amortizer.data_range.check(d.x, d.mask)
    j = int(d.group_mask.sum())
    return d, j, d.x[:, :j].to(dev), d.mask[:, :j].to(dev)


def groups_evidence(amortizer: MultilevelAmortizer, groups, zg, theta_g, x, mask, model, m: int, gen,
                     progress: str | None = None) -> tuple[torch.Tensor, list, list, torch.Tensor]:
    """:func:`group_evidence` of each of one data set's ``J`` groups at the same ``n`` global draws.

    ``groups (1, J, S_l)``, ``x (1, J, N, F)``, ``mask (1, J, N)``.  Returns ``log p(x_j |
    g)`` ``(n, J)``, per group its local draws and their log weights, and the Monte Carlo
    variance of each draw's ``sum_j log p(x_j | g)`` ``(n,)``.  One group at
    a time, and its likelihood in passes of about ``LIKELIHOOD_CHUNK_TERMS`` terms, keep memory
    bounded.  ``progress``: the label of a progress bar over the groups (shown when the work
    lasts), None for none.  A model with ``group_log_marginals`` and ``sample_local_posteriors``
    (every group's exact marginal and conditional at once) is evaluated in one pass over the
    groups instead (:func:`all_groups`).
    """
    batched = all_groups(model)
    if batched is not None:
        log_px = in_draw_chunks(lambda t: batched[0](t[:, None], x[0], mask[0]), theta_g, x.shape[1])
        empty = [None] * x.shape[1]
        return log_px, empty, empty, torch.zeros(zg.shape[0], device=zg.device)
    parts = [group_evidence(amortizer, groups[0, k], zg, theta_g, x[0, k], mask[0, k], model, m, gen)
             for k in over_groups(x.shape[1], progress or "", progress is not None)]
    # Monte Carlo variance of each global draw's summed log-likelihood estimate (delta method);
    # none where the model integrates a group's parameters out exactly (group_log_marginal)
    if exact_groups(model)[0] is not None:
        noise = torch.zeros(zg.shape[0], device=zg.device)
    else:
        noise = torch.stack([log_mean_exp(p[2])[1] for p in parts], -1).square().sum(-1)
    return torch.stack([p[0] for p in parts], dim=-1), [p[1] for p in parts], [p[2] for p in parts], noise

def group_evidence(amortizer: MultilevelAmortizer, own, zg, theta_g, x, mask, model, m: int, gen) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
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
    exact, exact_local = exact_groups(model)
    if exact_local is not None:
        # the group's parameters are drawn exactly after resampling (importance_draws): no local flow
        return nan_to_neginf(exact(theta_g, x, mask)), None, None
    proposal = getattr(model, "local_proposal", None)
    if proposal is not None:  # the model's own proposal (a formula model's Laplace approximation)
        theta_l, log_q = proposal(theta_g, x, mask, m, gen)
        theta_l = theta_l.to(theta_g.dtype).reshape(n, m, 1, -1)
    else:
        context = torch.cat([own[None].expand(n, -1), zg], -1)
        # randomized quasi-Monte Carlo: the m draws of each global draw spread evenly (still each
        # an exact flow draw, rows independent), so the average varies less than with m random ones
        zl, log_q = sample_flow(amortizer.local_flow, m, context, gen, log_prob=True, qmc=True)  # (n, m, L), (n, m)
        upper = amortizer.local_map.upper(x, mask)  # (L,): the group's data bounds, None without
        theta_l = amortizer.local_map.inverse(zl.reshape(n * m, -1), upper)
        log_q = log_q + amortizer.local_map.log_abs_det(theta_l, upper).reshape(n, m)
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
    log_w = nan_to_neginf(log_lik + log_prior - log_q)
    if exact is not None:  # the group's parameters integrated out in closed form: no Monte Carlo noise
        return nan_to_neginf(exact(theta_g, x, mask)), theta_l[:, :, 0], log_w
    return torch.logsumexp(log_w, dim=-1) - math.log(m), theta_l[:, :, 0], log_w

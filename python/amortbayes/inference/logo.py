"""Leave-one-group-out ELPD and group evidence of a two-level model from one trained amortizer, without refits.

Masking group ``k`` out of the data set gives ``q_{-k}(g) = q_1(g | x_{-k})`` from the same
global network, and ``log p(x_k | x_{-k}) = log E_{q_{-k}} p(x_k | g)`` is estimated by
multiple importance sampling over ``q_{-k}`` and the full-data posterior, with the group's
evidence ``p(x_k | g)`` from :mod:`amortbayes.inference.evidence`.  See :func:`logo`.

References:
    Habermann, Schmitt, Kühmichel, Bulling, Radev & Bürkner (2024). Amortized Bayesian
    Multilevel Models. arXiv:2408.13230 (Section 4.3, Figure 9).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from amortbayes.amortizers.base import inference_mode, make_generator, module_device, theta_from_user
from amortbayes.diagnostics.multilevel import log_mean_exp, weighted_quantiles
from amortbayes.inference.evidence import (
    all_groups,
    group_evidence,
    groups_evidence,
    in_draw_chunks,
    nan_to_neginf,
    one_data_set,
    over_groups,
)
from amortbayes.networks import sample_flow

if TYPE_CHECKING:
    from amortbayes.amortizers.multilevel import MultilevelAmortizer

LOGO_CHUNK_ROWS = 2**20  # padded rows (copies x groups x rows) per pass of the leave-one-group-out summaries


def logo(amortizer: MultilevelAmortizer, data: Any, model: Any, n: int = 1000, *, importance: int = 16, seed: int | None = 0,
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
    dev = module_device(amortizer)
    d, j, x, mask = one_data_set(amortizer, data, "logo", kwargs, dev)
    if not isinstance(n, (int, np.integer)) or n < 2 or not isinstance(importance, (int, np.integer)) or importance < 1:
        raise ValueError(f"logo() needs n >= 2 global and importance >= 1 local draws, got n={n!r}, importance={importance!r}")
    if j < 2:
        raise ValueError("leave-one-group-out needs at least two groups")
    gen = make_generator(seed)
    with inference_mode(amortizer):
        # J + 1 summaries of the data set: summary k without group k, the last one complete.
        # The groups' embeddings do not depend on which group is left out: computed once, and
        # the summaries in passes of about LOGO_CHUNK_ROWS rows (J copies of J groups would be
        # J^2 groups: 250,000 for 500)
        groups = amortizer.embed_groups(x, mask, torch.ones(1, j, device=dev))
        loo_gmask = torch.cat([1.0 - torch.eye(j, device=dev), torch.ones(1, j, device=dev)])
        per = max(1, LOGO_CHUNK_ROWS // max(1, int(x.shape[1] * x.shape[2])))
        summary = torch.cat([amortizer.pool(groups.expand(len(gm), -1, -1), x.expand(len(gm), -1, -1, -1),
                                       mask.expand(len(gm), -1, -1), gm)
                             for gm in loo_gmask.split(per)])
        zg, log_q_mix = _logo_proposal(amortizer, summary, n, gen)  # (J, n, G), (J, n)
        theta_g = amortizer.global_map.inverse(zg)
        # the left-out group's own embedding (its data, not the others'); one group at a
        # time keeps memory at n * importance * N_k likelihood terms
        own = groups[0]  # (J, S_l)
        elpd = torch.empty(j, device=dev)
        rel_se = torch.empty(j, device=dev)
        interval = torch.empty(j, 2, device=dev)
        batched = all_groups(model)
        if batched is not None:  # group k's exact marginal at its own LOGO draws theta_g[k], all k at once
            log_pxs = in_draw_chunks(lambda t: batched[0](t, x[0], mask[0]), theta_g.transpose(0, 1), j)
        for k in over_groups(j, "leave-one-group-out", progress):
            if batched is not None:
                log_px = log_pxs[:, k]
            else:
                log_px, _, _ = group_evidence(amortizer, own[k], zg[k], theta_g[k], x[0, k], mask[0, k], model,
                                                    importance, gen)
            elpd[k], rel_se[k] = log_mean_exp(log_px + log_q_mix[k])  # weighted: q_{-k} / mixture
            interval[k] = weighted_quantiles(log_px, log_q_mix[k], (0.1, 0.9)).to(interval.dtype)
    interval = interval.cpu().numpy()
    return pd.DataFrame({"group": list(d.group_labels[0][:j]), "elpd": elpd.cpu().numpy(),
                         "mc_se": rel_se.cpu().numpy(), "q10": interval[:, 0], "q90": interval[:, 1]})


def group_log_evidence(amortizer: MultilevelAmortizer, data: Any, model: Any, theta_global: Any, *, importance: int = 16,
                       seed: int | None = 0, progress: bool = True, **kwargs: Any) -> np.ndarray:
    """``log p(x_j | tau, sigma)`` of every group of one data set at given global parameter values.

    Each group's own parameters are integrated out by importance sampling with
    ``importance`` draws of the local flow as the proposal (unbiased for any global
    values, as in :func:`~amortbayes.inference.logo.logo`).  ``theta_global`` is ``(S, G)`` (array, dict or a
    DataFrame with the global parameter names, such as Stan's draws; other columns are
    ignored).  With draws of the full-data posterior, e.g. a Stan fit,
    :func:`amortbayes.diagnostics.psis_logo` turns the result into leave-one-group-out
    ELPDs without refits: a reference for :func:`~amortbayes.inference.logo.logo` that does not use the global flow.

    Returns ``(S, J)``; ``-inf`` where a group's data are impossible under a draw.

    A progress bar over the groups appears when the work runs longer than ``PROGRESS_DELAY_S``
    (2 s); ``progress=False`` hides it.
    """
    dev = module_device(amortizer)
    d, j, x, mask = one_data_set(amortizer, data, "group_log_evidence", kwargs, dev)
    if not isinstance(importance, (int, np.integer)) or importance < 1:
        raise ValueError(f"group_log_evidence() needs an integer importance >= 1, got {importance!r}")
    names = amortizer.info.parameter_names
    if isinstance(theta_global, pd.DataFrame):
        theta_global = theta_global[[c for c in theta_global.columns if c in names]]
    th = torch.from_numpy(theta_from_user(theta_global, names))
    amortizer.global_map.check_support(th, names)
    gen = make_generator(seed)
    with inference_mode(amortizer):
        groups = amortizer.embed_groups(x, mask, d.group_mask[:, :j].to(dev))
        theta_g = th.to(dev)
        log_px = groups_evidence(amortizer, groups, amortizer.global_map(theta_g), theta_g, x, mask, model, importance, gen,
                                       "group evidence" if progress else None)[0]
    return nan_to_neginf(log_px).cpu().double().numpy()


def _logo_proposal(amortizer: MultilevelAmortizer, summary: torch.Tensor, n: int, gen) -> tuple[torch.Tensor, torch.Tensor]:
    """Global draws for LOGO and their log weights ``log q_{-k} - log((q_{-k} + q) / 2)``.

    ``summary (J + 1, S)`` holds the ``J`` leave-one-out summaries and, last, the full
    data set's.  Returns ``(J, n, G)`` standardized draws, the first ``n - n // 2`` of
    row ``k`` from ``q_{-k}`` and the rest from ``q`` (the same for every ``k``).
    """
    j = summary.shape[0] - 1
    n_full = n // 2
    z_loo = sample_flow(amortizer.global_flow, n - n_full, summary[:j], gen)
    z_full = sample_flow(amortizer.global_flow, n_full, summary[j:], gen).expand(j, -1, -1)
    z = torch.cat([z_loo, z_full], dim=1)
    flat = z.reshape(j * n, -1)
    log_q_loo = amortizer.global_flow.log_prob(flat, context=summary[:j].repeat_interleave(n, 0)).reshape(j, n)
    log_q_full = amortizer.global_flow.log_prob(flat, context=summary[j:].expand(j * n, -1)).reshape(j, n)
    log_mix = torch.logaddexp(log_q_loo + math.log((n - n_full) / n), log_q_full + math.log(n_full / n))
    return z, log_q_loo - log_mix

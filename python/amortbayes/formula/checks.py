"""Checks of a formula fit: SBC of its amortizer, the side-by-side with Stan, and ArviZ export.

Each calls the core (``diagnostics.sbc_check``, ``reference.fit_stan`` and ``compare_draws``,
``plots.plot_sbc_ecdf``); nothing here is a second implementation of them.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from amortbayes.diagnostics.sbc import SBCResult


def sbc(fit: Any, n_sims: int = 200, n_draws: int = 200, *, alpha: float = 0.01, seed: int = 2024) -> SBCResult:
    """SBC of ``fit``'s amortizer on data sets simulated from its own model over the trained design ranges.

    The network's own draws are checked (importance correction is what makes observed-data draws
    exact; SBC asks whether the amortizer is calibrated before it).

    Raises:
        ValueError: ``n_sims < 20`` or ``n_draws < 10``.
    """
    import torch

    from amortbayes.diagnostics import one_group_per_data_set, sbc_check

    if not isinstance(n_sims, (int, np.integer)) or n_sims < 20 or not isinstance(n_draws, (int, np.integer)) \
            or n_draws < 10:
        raise ValueError(f"sbc() needs n_sims >= 20 and n_draws >= 10, got {n_sims!r} and {n_draws!r}")
    model = fit.model
    batch = model.simulate(int(n_sims), torch.Generator().manual_seed(seed))
    draws = fit.amortizer.sample_draws(batch, int(n_draws), seed=seed + 1)
    local, local_truth = one_group_per_data_set(draws.local_draws, batch["theta_local"].numpy(),
                                                batch["group_mask"].numpy())
    all_draws = np.concatenate([draws.global_draws, local], axis=-1)
    truth = np.concatenate([batch["theta_global"].numpy(), local_truth], axis=-1)
    finite = np.isfinite(all_draws).all(axis=(1, 2))
    if not finite.all():
        import warnings

        warnings.warn(f"sbc(): the network gave non-finite draws for {int((~finite).sum())} of {len(finite)} "
                      "simulated data sets (far in the prior's tails); they are left out of the ranks", UserWarning,
                      stacklevel=2)
        all_draws, truth = all_draws[finite], truth[finite]
    names = list(model.parameter_names) + [n.replace("[.,", "[j,") for n in model.local_parameter_names]
    table = sbc_check(all_draws, truth, names, alpha)
    table.insert(0, "level", ["global"] * len(model.parameter_names) + ["local"] * len(model.local_parameter_names))
    return SBCResult(table, all_draws, truth, alpha, int((~finite).sum()))


def stan_draws(model: Any, *, chains: int = 4, warmup: int = 1000, draws: int = 1000, seed: int = 1,
               file: str | Path | None = None, terms: Any = None):
    """Stan's NUTS fit of :func:`make_stancode`'s program (through ``reference.fit_stan``) and its draws in brms' names.

    Returns ``(StanFit, DataFrame)``; the frame has the global parameters and ``r_g[level,coef]``.
    """
    from amortbayes.formula.stan import make_stancode, make_standata, stan_draws_to_brms
    from amortbayes.reference import fit_stan

    code = make_stancode(model)
    folder = _program_folder(code)
    fit = fit_stan("formula", make_standata(model, terms), chains=chains, warmup=warmup, draws=draws, seed=seed,
                   stan_dir=folder, file=file)
    d = fit.draws
    P, K = model.P, model.K
    t = model.terms if terms is None else terms
    columns = {"b": [f"b[{i + 1}]" for i in range(P)], "sd_g": [f"sd_g[{k + 1}]" for k in range(K)],
               "Omega": [f"Omega[{i + 1},{k + 1}]" for i in range(K) for k in range(K)]}
    raw = {key: d[cols].to_numpy() for key, cols in columns.items()}
    raw["Omega"] = raw["Omega"].reshape(-1, K, K)
    raw.update({p: d[p].to_numpy() for p in model.family.dpars})
    out = pd.DataFrame(stan_draws_to_brms(raw, model))
    local = {f"r_{t.group}[{lev},{name}]": d[f"r[{j + 1},{k + 1}]"].to_numpy()
             for k, name in enumerate(t.group_names) for j, lev in enumerate(t.levels)}
    return fit, pd.concat([out, pd.DataFrame(local, index=out.index)], axis=1)


def _program_folder(code: str) -> Path:
    """A cache folder holding ``formula.stan`` with this code (``fit_stan`` reads programs by name from a folder)."""
    from amortbayes.reference.stan import _cache_root

    folder = _cache_root() / "formula_programs" / hashlib.sha256(code.encode()).hexdigest()[:16]
    folder.mkdir(parents=True, exist_ok=True)
    program = folder / "formula.stan"
    if not program.exists() or program.read_text() != code:
        program.write_text(code)
    return folder


def compare_stan(fit: Any, *, chains: int = 4, warmup: int = 1000, draws: int = 1000, seed: int = 1,
                 file: str | Path | None = None, locals_: bool = False, plot: str | Path | None = None) -> pd.DataFrame:
    """Fit the same model with Stan and compare it with ``fit``'s draws, one row per parameter (``compare_draws``).

    Args:
        fit: an :class:`~amortbayes.formula.AmortizedFit` (its own data, or update()'s).
        file: keep the Stan fit in this ``.npz`` file (``fit_stan(file=)``).
        locals_: also compare every ``r_g[level,coef]``.
        plot: save a figure of the two posteriors' intervals here (PNG).

    Returns:
        ``compare_draws``' columns (``mean_amortized``, ``mean_reference``, ``mean_diff_in_sd``,
        ``sd_ratio``, overlaps); ``attrs["stan"]`` holds the StanFit (seconds, R-hat, divergences).
    """
    from amortbayes.reference import compare_draws

    stan, reference = stan_draws(fit.model, chains=chains, warmup=warmup, draws=draws, seed=seed, file=file,
                                 terms=fit.data_terms)
    ours = fit.draws()
    names = list(fit.model.parameter_names)
    if locals_:
        names += [c for c in reference.columns if c.startswith("r_")]
    table = compare_draws(ours, reference, names)
    table.attrs["stan"] = stan
    if plot is not None:
        _plot_comparison(ours, reference, list(fit.model.parameter_names), plot)
    return table


def _plot_comparison(ours: pd.DataFrame, reference: pd.DataFrame, names: list[str], path: str | Path):
    """Per parameter: 50 % and 95 % intervals and means of both posteriors, stacked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(names), figsize=(2.4 * len(names), 2.4), squeeze=False)
    for ax, name in zip(axes[0], names):
        for row, (label, frame, color) in enumerate((("Stan", reference, "black"), ("amortbayes", ours, "tab:blue"))):
            v = frame[name].to_numpy()
            q = np.quantile(v, [0.025, 0.25, 0.75, 0.975])
            ax.plot(q[[0, 3]], [row, row], color=color, lw=1)
            ax.plot(q[[1, 2]], [row, row], color=color, lw=4)
            ax.plot([v.mean()], [row], "o", color="white", mec=color, ms=5)
        ax.set_yticks([0, 1], ["Stan", "amortbayes"] if ax is axes[0][0] else ["", ""])
        ax.set_ylim(-0.7, 1.7)
        ax.set_title(name, fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return fig


def to_arviz(fit: Any):
    """ArviZ ``InferenceData``: posterior (globals; ``r_g`` with dims level x coef), log_likelihood, observed_data.

    Raises:
        ImportError: arviz is not installed (``pip install amortbayes[arviz]``).
    """
    try:
        import arviz as az
    except ImportError as error:
        raise ImportError("to_arviz() needs arviz: pip install 'amortbayes[arviz]'") from error
    t, post = fit.terms, fit.posterior
    glob = np.asarray(post.global_draws[0])
    posterior = {name: glob[None, :, i] for i, name in enumerate(fit.model.parameter_names)}
    posterior[f"r_{t.group}"] = np.asarray(post.local_draws[0])[None, :, : len(t.levels)]
    ll = fit.log_lik()
    return az.from_dict(posterior=posterior, log_likelihood={t.response: ll[None]},
                        observed_data={t.response: np.asarray(t.y)},
                        coords={t.group: list(t.levels), "coef": list(t.group_names), "obs": np.arange(len(t.y))},
                        dims={f"r_{t.group}": [t.group, "coef"], t.response: ["obs"]})

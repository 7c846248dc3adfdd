"""``amortize(formula, data, family, prior)``: parse, build the model, train with the one ``fit()``, draw; the result object.

``amortize`` only chains the stages (:func:`~amortbayes.formula.parse_terms`,
:class:`~amortbayes.formula.model.FormulaModel`, ``MultilevelAmortizer`` + ``fit()``,
``importance_draws``); :class:`AmortizedFit` reads its draws in brms' layout.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from amortbayes.formula.model import FormulaModel
from amortbayes.formula.priors import Prior
from amortbayes.formula.priors import prior as make_prior
from amortbayes.formula.terms import new_terms, parse_terms
from amortbayes.simulation import pad_datasets

FIT_SPEC, FIT_DATA = "formula.json", "data.csv"
# online training steps (batch 32) of a formula amortizer when budget= is not given
DEFAULT_STEPS = 10_000
# importance correction: local draws per group and proposal and adaptive rounds (see
# MultilevelAmortizer.importance_draws).  One round with 8 local draws left sleepstudy's
# weights degenerate (Pareto k 0.84-1.07: the network's posterior is wider than the exact one
# and the likelihood estimates add 1.1 nats of noise); 32 draws and 3 rounds gave k 0.25.
# A student model's heavier-tailed local proposal (formula.laplace) needs 32 draws: with 8 its
# likelihood estimates added 1.0 nat of noise (ESS 163 of 24,000 on sleepstudy), with 32 0.7.
IMPORTANCE_LOCAL_DRAWS, IMPORTANCE_ROUNDS = 8, 3
IMPORTANCE_LOCAL_DRAWS_HEAVY = 32
# pointwise log likelihood terms (draws x rows) per pass of log_lik() and loo(): about 100 MB of float64
LOG_LIK_CHUNK_TERMS = 2**24


@dataclasses.dataclass
class AmortizedFit:
    """A trained formula amortizer with its data and posterior draws (brms' names and layouts).

    Attributes:
        model: the :class:`FormulaModel`.
        amortizer: the trained ``MultilevelAmortizer``.
        data: the data frame (rows used by the model).
        method: ``"importance"`` (importance-corrected to the exact posterior) or ``"amortized"``.
        posterior: the draws (``MultilevelDraws``).
        history: the training history from ``fit()``.
        data_terms: the parsed new data of :meth:`update` (None: the training data).
    """

    model: FormulaModel
    amortizer: Any
    data: pd.DataFrame
    method: str
    posterior: Any
    history: pd.DataFrame | None = None
    data_terms: Any = None  # the parsed data of this fit when it is not the training data (update)

    def draws(self) -> pd.DataFrame:
        """Wide draws with ``brms::as_draws_df``'s column names (``r_Subject[308,Intercept]``)."""
        frame = self.posterior.to_frame(0)
        pattern = re.compile(r"^(r_[^\[]+)\[\.,([^\]]+)\]\[([^\]]+)\]$")
        return frame.rename(columns=lambda c: pattern.sub(lambda m: f"{m[1]}[{m[3]},{m[2]}]", c))

    def fixef(self) -> pd.DataFrame:
        """Population-level effects: Estimate, Est.Error, Q2.5, Q97.5 per coefficient (brms' ``fixef``)."""
        d = self.draws()
        cols = [f"b_{n}" for n in self.model.terms.fixed_names]
        return _summarize(d[cols], quantile_names=True).rename(index=lambda c: c[2:])

    def _per_level(self, coef_draws) -> pd.DataFrame:
        t = self.terms
        out = {}
        for name in t.group_names:
            d = pd.DataFrame({lev: coef_draws(name, lev) for lev in t.levels})
            out[name] = _summarize(d, quantile_names=True)
        frame = pd.concat(out, axis=1)
        frame.index.name = t.group
        return frame

    def ranef(self) -> pd.DataFrame:
        """Group-level effects per level (brms' ``ranef``): index the levels, columns (coefficient, statistic)."""
        d, g = self.draws(), self.model.terms.group
        return self._per_level(lambda name, lev: d[f"r_{g}[{lev},{name}]"])

    def coef(self) -> pd.DataFrame:
        """Population plus group-level effects per level (brms' ``coef``), for the coefficients with group terms."""
        d, g = self.draws(), self.model.terms.group
        fixed = set(self.model.terms.fixed_names)

        def total(name, lev):
            r = d[f"r_{g}[{lev},{name}]"]
            return r + d[f"b_{name}"] if name in fixed else r
        return self._per_level(total)

    def update(self, newdata: pd.DataFrame, *, draws: int = 4000, seed: int = 0) -> AmortizedFit:
        """The posterior for new data of the same formula, without training (brms' ``update(newdata=)``).

        Raises:
            ValueError: new data with a fixed-effect factor level the training data did not
                have, or any error of :func:`~amortbayes.formula.terms.new_terms`.
        """
        new = new_terms(self.model.terms, newdata, min_levels=2)
        self.model.family.check_response(new.y, new.trials)
        return _draw(self.model, self.amortizer, newdata, self.method, draws, seed, self.history, new)

    def save(self, path: str | Path, *, key: dict | None = None) -> Path:
        """Write the amortizer (``amortbayes.save``), the data and the formula, family and priors to the folder ``path``."""
        from amortbayes.io import save

        if self.data_terms is not None:
            raise ValueError("this fit is an update() on new data; save the fit that trained the amortizer (its "
                             "model is built from the training data), and update() it again after loading")
        folder = save(self.amortizer, path)
        data = self.model.terms_data(self.data)
        data.to_csv(folder / FIT_DATA, index=False)
        # text columns stay text when read back (a factor coded "1", "2" must not become numeric)
        text = [c for c in data.columns if not pd.api.types.is_numeric_dtype(data[c])]
        spec = {**self.model.config(), "method": self.method, "text_columns": text, "key": key}
        (folder / FIT_SPEC).write_text(json.dumps(spec, indent=2))
        return folder

    @classmethod
    def load(cls, path: str | Path, *, draws: int = 4000, seed: int = 0, method: str | None = None) -> AmortizedFit:
        """Read a fit written by :meth:`save`: rebuild the model from formula, family, priors and data, then draw.

        Raises:
            ValueError: a folder without a saved fit, or one whose amortizer was written for another model.
        """
        from amortbayes.io import load

        folder = Path(path)
        if not (folder / FIT_SPEC).exists() or not (folder / FIT_DATA).exists():
            raise ValueError(f"{folder} holds no saved formula fit ({FIT_SPEC} and {FIT_DATA} are written by "
                             "AmortizedFit.save)")
        spec = json.loads((folder / FIT_SPEC).read_text())
        data = pd.read_csv(folder / FIT_DATA, dtype={c: str for c in spec.get("text_columns", [])})
        terms = parse_terms(spec["formula"], data)
        priors = [make_prior(p["prior"], class_=p["class"], coef=p["coef"], group=p["group"]) for p in spec["priors"]]
        n_obs = spec.get("n_obs")
        model = FormulaModel(terms, spec["family"], priors, tuple(spec["n_groups"]), tuple(n_obs) if n_obs else None,
                             group_data=spec.get("group_data", "rows"), contexts=spec.get("contexts"))
        amortizer = load(folder, model=model)
        return _draw(model, amortizer, data, method or spec["method"], draws, seed, None)

    @property
    def terms(self):
        """The parsed data of this fit (the training data's, or ``update``'s new data)."""
        return self.data_terms if self.data_terms is not None else self.model.terms

    def _log_lik_passes(self, chunk_rows: int | None):
        """``(rows, log_lik (draws, len(rows)))`` over passes of whole groups of about ``chunk_rows`` rows.

        ``rows`` are positions in the data's row order.  Each pass's memory is checked before it
        is allocated (:func:`amortbayes.memory.require`).
        """
        import torch

        from amortbayes.memory import BYTES_PER_TERM, format_bytes, require

        t = self.terms
        groups = self.model.observed_rows(t)
        theta = torch.as_tensor(self.posterior.global_draws[0], dtype=torch.float64)
        local = torch.as_tensor(self.posterior.local_draws[0], dtype=torch.float64)
        draws = theta.shape[0]
        per = max(1, (LOG_LIK_CHUNK_TERMS // draws) if chunk_rows is None else int(chunk_rows))
        where = [np.flatnonzero(t.group_index == j) for j in range(len(groups))]  # rows of each group, in order
        start = 0
        while start < len(groups):
            stop, rows = start, 0
            while stop < len(groups) and (stop == start or rows + len(groups[stop]) <= per):
                rows += len(groups[stop])
                stop += 1
            longest = max(len(g) for g in groups[start:stop])
            need = BYTES_PER_TERM * draws * (stop - start) * longest
            require(need, f"the pointwise log likelihood of {rows:,} rows x {draws:,} draws in one pass",
                    f"pass chunk_rows= below {per:,} (rows per pass; whole groups go together, the largest has "
                    f"{max(len(g) for g in groups):,}), or use fewer draws ({format_bytes(need / draws)} per draw)")
            x, mask = pad_datasets(groups[start:stop])
            ll = self.model.pointwise_log_lik(theta, local[:, start:stop], torch.as_tensor(x, dtype=torch.float64)[None],
                                              torch.as_tensor(mask, dtype=torch.float64)[None]).numpy()
            index = np.concatenate(where[start:stop])
            values = np.concatenate([ll[:, k, : len(groups[start + k])] for k in range(stop - start)], axis=1)
            yield index, values
            start = stop

    def log_lik(self, *, chunk_rows: int | None = None) -> np.ndarray:
        """``(draws, rows)`` pointwise log likelihood at the posterior draws, rows in the data's order.

        Computed in passes of whole groups (``chunk_rows`` rows each; default about
        ``LOG_LIK_CHUNK_TERMS`` draw-row terms).  The full matrix itself must fit in memory:
        for data of 10^5 rows that is gigabytes, and :meth:`loo` (which keeps only each pass)
        is the way to the LOO estimate.

        Raises:
            MemoryBudgetError: the matrix or a pass needs more memory than is available.
        """
        from amortbayes.memory import require

        draws, n = self.posterior.global_draws.shape[1], len(self.terms.y)
        require(8.0 * draws * n, f"the pointwise log likelihood matrix of {draws:,} draws x {n:,} rows",
                "loo() computes PSIS-LOO pass by pass without it; or use fewer draws")
        out = np.empty((draws, n))
        for index, values in self._log_lik_passes(chunk_rows):
            out[:, index] = values
        return out

    def loo(self, *, chunk_rows: int | None = None) -> dict[str, Any]:
        """PSIS-LOO over the rows (``elpd_loo``, ``se``, ``p_loo``, Pareto k per row), as ``loo::loo`` reports it.

        The pointwise log likelihood is made and smoothed pass by pass (``chunk_rows`` rows of
        whole groups each, see :meth:`log_lik`), so memory stays bounded for any number of rows;
        the result is the same as from the whole matrix.

        Raises:
            MemoryBudgetError: one pass needs more memory than is available (lower ``chunk_rows``).
        """
        from amortbayes.diagnostics import elpd_summary, psis_loo

        n = len(self.terms.y)
        elpd, khat, lppd = np.empty(n), np.empty(n), np.empty(n)
        for index, values in self._log_lik_passes(chunk_rows):
            part = psis_loo(values)
            elpd[index], khat[index] = part["elpd"].to_numpy(), part["khat"].to_numpy()
            lppd[index] = np.logaddexp.reduce(values, axis=0) - np.log(values.shape[0])
        pointwise = pd.DataFrame({"observation": np.arange(n), "elpd": elpd, "khat": khat})
        totals = elpd_summary(pointwise)
        return {"elpd_loo": totals["elpd"], "se": totals["se"], "p_loo": float(lppd.sum()) - totals["elpd"],
                "max_khat": totals["max_khat"], "n_khat_above_0.7": totals["n_khat_above_0.7"],
                "pointwise": pointwise}

    def powerscale_sensitivity(self, variables: list[str] | None = None, *, delta: float = 0.01,
                               method: str = "reweight", n: int = 4000, seed: int = 0) -> pd.DataFrame:
        """Priorsense's power-scaling sensitivity of the posterior to the prior and the likelihood, per variable.

        ``method="reweight"``: by importance reweighting of this fit's draws (as
        ``priorsense::powerscale_sensitivity`` does with a brms fit): the prior is the joint
        prior of the population-level, group-level SD and correlation and family parameters
        (brms' ``lprior``; the group effects' own distribution belongs to neither component),
        the likelihood the sum of :meth:`log_lik`.  Reliable with ``method="importance"`` draws
        (the exact posterior); ``variables`` default to all but the group effects ``r_*``.

        ``method="amortized"``: from a fit trained with ``sensitivity=`` contexts, by the global
        flow's density ratio between powers (:func:`amortbayes.sensitivity.powerscale_sensitivity`;
        the global parameters only), applied to this fit's draws (importance-corrected ones when
        the fit has them: measured on sleepstudy, the raw network's own draws gave likelihood
        sensitivities 10-100 times too large, its sigma being far off).

        Returns:
            ``variable``, ``prior``, ``likelihood``, ``diagnosis`` (threshold 0.05).
        """
        import torch

        from amortbayes.diagnostics.powerscale import powerscale_from_draws

        if method == "amortized":
            from amortbayes.sensitivity import powerscale_sensitivity

            rows = len(self.terms.y)

            def norm(draws, beta):  # the simulated powered likelihood is normalized per row (sensitivity docs)
                return rows * self.model.log_power_normalizer(torch.from_numpy(draws), float(beta)).numpy()
            exact = self.posterior.global_draws[0].astype(np.float64) if self.method == "importance" else None
            table = powerscale_sensitivity(self.amortizer, self._prepared(), n=n, delta=delta, seed=seed,
                                           log_normalizer=norm if self.model.family.name == "gaussian" else None,
                                           draws=exact)
            return table if variables is None else table.set_index("variable").loc[list(variables)].reset_index()
        if method != "reweight":
            raise ValueError(f"method must be 'reweight' or 'amortized', got {method!r}")
        frame = self.draws()
        variables = list(variables) if variables is not None else [c for c in frame.columns if not c.startswith("r_")]
        unknown = [v for v in variables if v not in frame.columns]
        if unknown:
            raise ValueError(f"unknown variable(s) {unknown}; the fit's variables include {list(frame.columns[:8])}")
        log_prior = self.model.global_log_prior(torch.from_numpy(self.posterior.global_draws[0])).double().numpy()
        log_lik = np.zeros(len(frame))
        for _, values in self._log_lik_passes(None):
            log_lik += values.sum(1)
        return powerscale_from_draws(frame[variables].to_numpy(), log_prior, log_lik, variables, delta)

    def sensitivity_sweep(self, grid: Any, *, n: int = 2000, seed: int = 0) -> pd.DataFrame:
        """Global parameters' posterior summaries over a grid of contexts (a fit trained with ``sensitivity=``).

        See :func:`amortbayes.sensitivity.sensitivity_sweep`.
        """
        from amortbayes.sensitivity import sensitivity_sweep

        return sensitivity_sweep(self.amortizer, self._prepared(), grid, n=n, seed=seed)

    def _response_columns(self) -> list[str]:
        return list(self.model.data_names[-self.model.n_response_columns:])

    def attack(self, eps: float = 0.5, *, norm: str = "l2", group: Any = None, columns: list[str] | None = None,
               seed: int = 0, **kwargs: Any):
        """The perturbation of this fit's response within radius ``eps`` (standardized units) that moves the network's posterior most.

        See :func:`amortbayes.robust.attack`; ``columns`` default to the response's, ``group``
        (a level) restricts it to one group's rows.  Needs a rows layout
        (``amortize(..., group_data="rows")``, the default of every family with a ``regularizer``).
        """
        from amortbayes.robust import attack

        return attack(self.amortizer, self._prepared(), eps, norm=norm, group=group, seed=seed,
                      columns=self._response_columns() if columns is None else columns, **kwargs)

    def robustness(self, eps: Any = (0.1, 0.25, 0.5, 1.0), *, norm: str = "l2", n_sims: int = 100,
                   columns: list[str] | None = None, seed: int = 0, **kwargs: Any):
        """KL and expected coverage of attacked posteriors on data simulated from this model (:func:`amortbayes.robust.robustness_report`).

        The perturbed columns default to the response's; the report has ``.summary`` and ``.plot()``.
        """
        from amortbayes.robust import robustness_report

        return robustness_report(self.amortizer, self.model, eps, norm=norm, n_sims=n_sims, seed=seed,
                                 columns=self._response_columns() if columns is None else columns, **kwargs)

    def _prepared(self):
        """This fit's data as the amortizer's padded groups."""
        return self.amortizer.prepare(self.model.observed_frame(self.data_terms), group=self.model.terms.group)

    def logo(self, n: int = 1000, *, seed: int = 0, progress: bool = False) -> pd.DataFrame:
        """Leave-one-group-out ELPD of every level, without refitting (``MultilevelAmortizer.logo``)."""
        return self.amortizer.logo(self.model.observed_frame(self.data_terms), self.model, n=n, seed=seed,
                                   progress=progress, group=self.model.terms.group)

    def posterior_predict(self, newdata: pd.DataFrame | None = None, *, seed: int = 0,
                          allow_new_levels: bool = True) -> np.ndarray:
        """``(draws, rows)`` posterior predictive responses (brms' ``posterior_predict``); new levels from the population."""
        from amortbayes.formula.predict import posterior_predict

        return posterior_predict(self, newdata, seed=seed, allow_new_levels=allow_new_levels)

    def posterior_epred(self, newdata: pd.DataFrame | None = None, *, seed: int = 0,
                        allow_new_levels: bool = True) -> np.ndarray:
        """``(draws, rows)`` expected responses (brms' ``posterior_epred``)."""
        from amortbayes.formula.predict import posterior_epred

        return posterior_epred(self, newdata, seed=seed, allow_new_levels=allow_new_levels)

    def predict(self, newdata: pd.DataFrame | None = None, *, seed: int = 0,
                allow_new_levels: bool = True) -> pd.DataFrame:
        """brms' ``predict``: Estimate, Est.Error, Q2.5, Q97.5 of the posterior predictive per row."""
        from amortbayes.formula.predict import predict_summary

        return predict_summary(self.posterior_predict(newdata, seed=seed, allow_new_levels=allow_new_levels))

    def fitted(self, newdata: pd.DataFrame | None = None, *, seed: int = 0,
               allow_new_levels: bool = True) -> pd.DataFrame:
        """brms' ``fitted``: the same table for the expected response."""
        from amortbayes.formula.predict import predict_summary

        return predict_summary(self.posterior_epred(newdata, seed=seed, allow_new_levels=allow_new_levels))

    def sbc(self, n_sims: int = 200, n_draws: int = 200, *, alpha: float = 0.01, seed: int = 2024):
        """Simulation-based calibration of the amortizer on its own model (:func:`~amortbayes.formula.checks.sbc`)."""
        from amortbayes.formula.checks import sbc

        return sbc(self, n_sims, n_draws, alpha=alpha, seed=seed)

    def compare_stan(self, **kwargs: Any) -> pd.DataFrame:
        """Stan's fit of the same model beside these draws (:func:`~amortbayes.formula.checks.compare_stan`)."""
        from amortbayes.formula.checks import compare_stan

        return compare_stan(self, **kwargs)

    def to_arviz(self):
        """ArviZ ``InferenceData`` of the draws, log likelihood and data (needs arviz)."""
        from amortbayes.formula.checks import to_arviz

        return to_arviz(self)

    def summary(self) -> dict[str, pd.DataFrame]:
        """brms' summary blocks: ``population`` (b_), ``group`` (sd_, cor_) and ``family`` (sigma, nu, shape)."""
        d = self.draws()
        names = list(self.model.parameter_names)
        blocks = {"population": [n for n in names if n.startswith("b_")],
                  "group": [n for n in names if n.startswith(("sd_", "cor_"))],
                  "family": list(self.model.family.dpars)}
        out = {}
        for key, cols in blocks.items():
            if not cols:
                continue
            table = _summarize(d[cols])
            if key == "population":
                table.index = [c[2:] for c in table.index]
            elif key == "group":
                g = self.model.terms.group
                table.index = [re.sub(rf"^(sd|cor)_{re.escape(g)}__(.*)$",
                                      lambda m: f"{m[1]}({m[2].replace('__', ',')})", c) for c in table.index]
            out[key] = table
        diag = self.posterior.diagnostics or {}
        if diag:
            out["weights"] = pd.DataFrame({"pareto_k": [diag.get("pareto_k")], "ess": [diag.get("ess")]})
        return out

    def __repr__(self) -> str:
        t = self.terms
        lines = [f" Family: {self.model.family.name}", f"Formula: {t.formula}",
                 f"   Data: {len(t.y)} rows, {len(t.levels)} levels of {t.group}", f"  Draws: {self.method}"]
        for key, table in self.summary().items():
            lines += ["", {"population": "Population-Level Effects:", "group": f"Group-Level Effects:\n~{t.group}",
                           "family": "Family Specific Parameters:", "weights": "Importance weights:"}[key],
                      table.round(2).to_string()]
        return "\n".join(lines)


def _summarize(d: pd.DataFrame, quantile_names: bool = False) -> pd.DataFrame:
    """brms' columns: summary()'s ``l-95% CI``/``u-95% CI``, or fixef()/ranef()'s ``Q2.5``/``Q97.5``."""
    lo, hi = ("Q2.5", "Q97.5") if quantile_names else ("l-95% CI", "u-95% CI")
    return pd.DataFrame({"Estimate": d.mean(), "Est.Error": d.std(ddof=1), lo: d.quantile(0.025),
                         hi: d.quantile(0.975)})


def default_prior(formula: str, data: pd.DataFrame, family: str = "gaussian",
                  prior: list[Prior] | None = None) -> pd.DataFrame:
    """The priors ``amortize`` would use, as brms' ``default_prior`` table (prior, class, coef, group, lb, source).

    Example:
        >>> from amortbayes.data import load_sleepstudy
        >>> default_prior("Reaction ~ Days + (Days | Subject)", load_sleepstudy())["class"].tolist()
        ['Intercept', 'b', 'sd', 'cor', 'sigma']
    """
    from amortbayes.formula.priors import prior_table

    return prior_table(FormulaModel(parse_terms(formula, data), family, prior).priors)


def amortize(formula: str, data: pd.DataFrame, family: str = "gaussian", prior: list[Prior] | None = None, *,
             budget: int | None = None, method: str = "importance", draws: int = 4000, device: str = "cpu",
             seed: int = 0, progress: bool = True, file: str | Path | None = None,
             group_data: str | None = None, sensitivity: dict | None = None,
             regularizer: Any = None) -> AmortizedFit:
    """Build, train and apply an amortized multilevel model of ``formula`` on ``data``.

    Args:
        formula: lme4/brms syntax with one grouping factor, e.g. ``"Reaction ~ Days + (Days | Subject)"``.
        data: the data frame.
        family: ``gaussian``, ``student``, ``lognormal``, ``bernoulli``, ``poisson`` or ``negbinomial``.
        prior: ``amortbayes.formula.prior(...)`` statements (the rest are data-scaled defaults).
        budget: online training steps (default :data:`DEFAULT_STEPS`) of :func:`batch_size` data
            sets (32, fewer for designs of many groups or rows).
        method: ``"importance"`` (draws corrected to the exact posterior, Pareto k reported)
            or ``"amortized"`` (the network's draws; for gaussian and lognormal models the
            group effects are drawn from their exact conditional given each global draw, which
            costs less than the local flow for many groups).
        draws: number of posterior draws.
        file: a folder for the trained fit (like ``brm(file=)``): a later call with the same
            formula, family, priors, data, budget and seed loads it instead of training; a
            different specification trains again and overwrites it.
        group_data: how simulated and observed groups reach the networks: ``"moments"`` (each
            group's sufficient statistics, no rows; the default for gaussian and lognormal) or
            ``"rows"`` (the default, and the only layout, of the other families).
        sensitivity: contexts to train over (:mod:`amortbayes.sensitivity`), e.g.
            ``{"alpha": power_scale("prior"), "beta": power_scale("likelihood")}`` (likelihood
            powers for gaussian and student families): then
            ``fit.powerscale_sensitivity(method="amortized")`` and
            :func:`amortbayes.sensitivity_sweep` work from the network.  The fit's own draws
            are of the model as written.
        regularizer: :class:`amortbayes.robust.FIMTrace` for an amortizer whose posterior resists
            small perturbations of the response (adversarial robustness); its ``columns``
            default to the response's, and the group data to rows (``group_data="rows"``:
            perturbations act on rows, not on moment sums).

    Raises:
        ValueError: see :func:`parse_terms`, the family's response checks and :func:`prior`.
    """
    from amortbayes.amortizers.multilevel import MultilevelAmortizer
    from amortbayes.train import TrainSettings, fit

    if method not in ("importance", "amortized"):
        raise ValueError(f"method must be 'importance' or 'amortized', got {method!r}")
    steps = DEFAULT_STEPS if budget is None else int(budget)
    if steps < 1:
        raise ValueError(f"budget is a number of training steps >= 1, got {budget!r}")
    terms = parse_terms(formula, data)
    if regularizer is not None and group_data is None:
        group_data = "rows"  # a regularizer acts on perturbations of rows
    model = FormulaModel(terms, family, prior, group_data=group_data, contexts=sensitivity)
    if regularizer is not None and regularizer.columns is None:
        regularizer = dataclasses.replace(regularizer, columns=tuple(model.data_names[-model.n_response_columns:]))
    networks = network_settings(model)
    key = {**model.config(), "data_names": list(model.data_names), "networks": networks.to_dict(),
           "budget": steps, "seed": seed,
           **({"regularizer": regularizer.to_dict()} if regularizer is not None else {}),
           "data": int(pd.util.hash_pandas_object(model.terms_data(data), index=False).sum() % 2**61)}
    key = json.loads(json.dumps(key))  # as stored (tuples become lists), so that it compares equal
    if file is not None and _stored_key(Path(file)) == key:
        return AmortizedFit.load(file, draws=draws, seed=seed, method=method)
    amortizer = MultilevelAmortizer(model, networks)
    epochs = -(-steps // 500)
    settings = TrainSettings(epochs=epochs, iterations_per_epoch=-(-steps // epochs), batch_size=batch_size(model))
    history = fit(amortizer, model, settings=settings, device=device, seed=seed, progress=progress,
                  regularizer=regularizer)
    fitted = _draw(model, amortizer, data, method, draws, seed, history, progress=progress)
    if file is not None:
        fitted.save(file, key=key)
    return fitted


# a training step's cost grows with the groups (moments layout) or the rows (rows layout) of its
# data sets; above these sizes per data set the batch shrinks in proportion, to at least MIN_BATCH
BATCH, MIN_BATCH, BATCH_GROUPS, BATCH_ROWS = 32, 8, 128, 1000


def batch_size(model: FormulaModel) -> int:
    """Simulated data sets per training step: 32, fewer for designs of many groups or rows (at least 8).

    A step costs about ``batch x groups`` (moments layout: the networks run once per group) or
    ``batch x rows`` (rows layout: a few products per row and the pilot's IRLS).  The batch
    keeps that below 32 data sets of 128 groups or of 1,000 rows, so the default budget of
    steps trains in minutes whatever the design (measured: 500 groups of 2-38 rows, 0.16 s per
    step at batch 32; 1,934 rows in 60 groups, 0.12 s).  Large data sets carry more
    information each, which is what makes the smaller batch affordable.

    Example:
        >>> from amortbayes.data import load_sleepstudy
        >>> from amortbayes.formula import parse_terms
        >>> batch_size(FormulaModel(parse_terms("Reaction ~ Days + (Days | Subject)", load_sleepstudy())))
        32
    """
    groups = sum(model.n_groups) / 2
    size = groups if model.group_data == "moments" else groups * float(model._user_sizes.double().mean())
    limit = BATCH_GROUPS if model.group_data == "moments" else BATCH_ROWS
    return int(max(MIN_BATCH, min(BATCH, round(BATCH * limit / size))))


def network_settings(model: FormulaModel):
    """The multilevel networks of a formula model: the package defaults with the small affine local flow for
    every family and the global flow centred on a pooled-GLM pilot of the fixed effects.

    The local flow runs once per group, draw and training example; the spline flow of
    ``default_settings`` made a step 3 to 6 times dearer for the non-gaussian families
    (0.29 s against 0.054 s per step of 32 on sleepstudy's design with family student).  A
    group's effects given the shared parameters are close to Gaussian on the link scale
    (exactly so for gaussian), and what remains is corrected by importance sampling.
    The pilot (:mod:`amortbayes.networks.pilot`) fits the fixed effects of each data set,
    its groups ignored, so the flow models the coefficients relative to that fit instead of
    placing posteriors a hundredth of brms' prior widths wide.  The summary networks read
    the rows' informative columns only (:meth:`FormulaModel.informative_columns`).
    """
    from amortbayes.amortizers.multilevel import GAUSSIAN_LOCAL_FLOW, default_settings
    from amortbayes.networks.pilot import PilotSettings

    P = model.P
    names = model.data_names
    trials = names.index("trials") if "trials" in names else None
    family = {"poisson": "poisson", "negbinomial": "poisson", "bernoulli": "binomial",
              "binomial": "binomial"}.get(model.family.name, "gaussian")  # student and lognormal (log y): gaussian
    if model.group_data == "moments":  # the pilot reads the columns [1, design columns, response] of the moments
        design, response = tuple(int(i) for i in model.layout.design_aug[:P]), len(model.row_names)
    else:
        design, response = tuple(range(P)), len(names) - 1
    pilot = PilotSettings(family, design=design, response=response, parameters=tuple(range(P)), trials=trials)
    # a group enters through its moments only (no network per row: a step's cost hardly grows with the
    # rows), except for student, whose degrees of freedom show in the tails, beyond the second moments
    columns = model.informative_columns()
    return dataclasses.replace(default_settings(model), local_flow=GAUSSIAN_LOCAL_FLOW, pilot=pilot,
                               summary_columns=columns, group_row_network=model.family.name == "student",
                               pooled_moments=response_statistics(len(columns), model.n_response_columns))


# above this many summary columns the data-set summary pools the second moments of the response's
# statistics only (all statistics: 70 and 2,485 second moments for six columns)
POOLED_MOMENTS_ALL_UP_TO = 3


def response_statistics(f: int, responses: int) -> tuple[int, ...] | None:
    """Indices, in ``DeepSet.statistics``' layout of ``f`` columns, of what a group says about its coefficients.

    For each of the last ``responses`` columns (the response, and ``log1p`` of counts): its mean,
    log SD, log residual SD and least-squares slopes and intercept on the other columns (the
    group's own regression), and ``log N``; None (all statistics) for ``f <= 3``.

    Example:
        >>> response_statistics(2, 1) is None, len(response_statistics(6, 2))
        (True, 19)
    """
    if f <= POOLED_MOMENTS_ALL_UP_TO:
        return None
    c = f * (f - 1) // 2
    out: list[int] = []
    for r in range(f - responses, f):
        out += [r, f + r, 2 * f + c + r]  # mean, log SD, log residual SD
        out += list(range(3 * f + c + r * (f - 1), 3 * f + c + (r + 1) * (f - 1)))  # slopes on the others
        out.append(3 * f + c + f * (f - 1) + r)  # intercept
    return tuple(out) + (4 * f + c + f * (f - 1),)  # log N


def _stored_key(folder: Path) -> dict | None:
    try:
        return json.loads((folder / FIT_SPEC).read_text()).get("key")
    except (OSError, json.JSONDecodeError):
        return None


def _draw(model, amortizer, data, method, draws, seed, history, terms=None, progress=False) -> AmortizedFit:
    """Draws for the model's own data (or the parsed new data ``terms``), importance-corrected or amortized.

    ``progress``: a progress bar over the groups while the importance weights take long (seconds
    for the families without exact group integration).
    """
    observed, group = model.observed_frame(terms), model.terms.group
    if method == "importance":
        from amortbayes.formula.laplace import HEAVY_TAILED

        local = IMPORTANCE_LOCAL_DRAWS_HEAVY if model.family.name in HEAVY_TAILED else IMPORTANCE_LOCAL_DRAWS
        posterior = amortizer.importance_draws(observed, model, n=draws, seed=seed, group=group, progress=progress,
                                               importance=local, rounds=IMPORTANCE_ROUNDS)
    else:
        # every group's exact conditional at once (gaussian, lognormal) draws the group effects
        exact = getattr(model, "sample_local_posteriors", None)
        posterior = amortizer.sample_draws(observed, n=draws, seed=seed, group=group, exact_local=exact)
    return AmortizedFit(model, amortizer, data, method, posterior, history, terms)

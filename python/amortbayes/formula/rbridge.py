"""Entry points for the R package (through reticulate): plain values in, plain tables and arrays out.

Every function here only calls the formula layer (:func:`~amortbayes.formula.amortize`,
:class:`~amortbayes.formula.AmortizedFit`, :func:`~amortbayes.formula.default_prior`,
:mod:`~amortbayes.formula.stan`) and reshapes what it returns into what R converts cleanly:
data frames with plain columns, numpy arrays in brms' shapes, dicts.  Each returns
``(value, warnings)``: the messages of the Python warnings raised on the way, which the R
side re-raises as R warnings (reticulate would only print them).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from amortbayes.formula.fit import AmortizedFit, amortize, default_prior
from amortbayes.formula.model import FormulaModel
from amortbayes.formula.priors import Prior, prior
from amortbayes.formula.terms import parse_terms


def _caught(fn: Callable[[], Any]) -> tuple[Any, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = fn()
    seen: list[str] = []
    for w in caught:
        text = str(w.message)
        if text not in seen:
            seen.append(text)
    return _plain(value), seen


def _plain(value: Any) -> Any:
    """Values reticulate converts whatever its version: Python lists, dicts, str, float, bool.

    reticulate 1.28 (Debian 12's) converts neither numpy 2's arrays nor pandas 3's frames, so
    data frames become ``{"__frame__": columns, "columns": {name: list}}``, arrays of two or
    more dimensions ``{"__array__": shape, "values": list in C order}``, series and vectors
    lists; containers are converted element by element, other objects (a fit) pass unchanged.
    """
    if isinstance(value, pd.DataFrame):
        cols = [str(c) for c in value.columns]
        data = {}
        for name, col in zip(cols, value.columns):
            v = value[col]
            if pd.api.types.is_bool_dtype(v):
                data[name] = [bool(e) for e in v]
            elif pd.api.types.is_numeric_dtype(v):
                data[name] = v.to_numpy(dtype=float).tolist()
            else:
                data[name] = [str(e) for e in v]
        return {"__frame__": cols, "columns": data}
    if isinstance(value, pd.Series):
        return _plain(value.to_numpy())
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "fiub":
            flat = value.astype(float if value.dtype.kind != "b" else bool).ravel().tolist()
        else:
            flat = [str(e) for e in value.ravel()]
        return flat if value.ndim <= 1 else {"__array__": list(value.shape), "values": flat}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def priors(records: Any) -> list[Prior] | None:
    """:func:`prior` statements from R's prior table rows (``prior``, ``class``, ``coef``, ``group``); None for none."""
    if records is None:
        return None
    if isinstance(records, pd.DataFrame):
        records = records.to_dict("records")
    out = []
    for r in records:
        spec = str(r.get("prior", "")).strip()
        if not spec:
            continue  # brms' rows without a prior string (defaults it lists) say nothing
        out.append(prior(spec, class_=str(r.get("class", "b") or "b"), coef=str(r.get("coef", "") or ""),
                         group=str(r.get("group", "") or "")))
    return out or None


def _frame(data: pd.DataFrame | dict) -> pd.DataFrame:
    """R's data frame as pandas gives it, with R's factor codes and row names left behind.

    A one-row data frame arrives as a dict of one-element columns (R's ``one_row_columns``).
    """
    if isinstance(data, dict):
        return pd.DataFrame(data)
    return data.reset_index(drop=True)


def fit(formula: str, data: pd.DataFrame, family: str, prior_records: Any = None, budget: Any = None,
        method: str = "importance", draws: Any = 4000, seed: Any = 0, progress: bool = True,
        file: str | None = None, sensitivity: Any = None, regularizer: Any = None) -> tuple[AmortizedFit, list[str]]:
    """:func:`amortize` with R's arguments (numbers may arrive as floats)."""
    return _caught(lambda: amortize(formula, _frame(data), family, priors(prior_records),
                                    budget=None if budget is None else int(budget), method=method, draws=int(draws),
                                    seed=int(seed), progress=bool(progress), file=file,
                                    sensitivity=_contexts(sensitivity), regularizer=_regularizer(regularizer)))


def _regularizer(record: Any):
    """R's ``fim_trace(beta)`` as :class:`amortbayes.robust.FIMTrace`."""
    if not record:
        return None
    from amortbayes.robust import FIMTrace

    r = dict(record)
    return FIMTrace(float(r["beta"]), every=int(r.get("every", 4)), window=int(r.get("window", 1)))


def robustness(f: AmortizedFit, eps: Any, norm: str = "l2", n_sims: Any = 100, seed: Any = 0):
    """:meth:`AmortizedFit.robustness`'s summary frame for R."""
    radii = [float(e) for e in (eps if isinstance(eps, (list, tuple)) else [eps])]
    return _caught(lambda: f.robustness(radii, norm=norm, n_sims=int(n_sims), seed=int(seed)).summary)


def _contexts(records: Any) -> dict | None:
    """R's ``list(alpha = power_scale("prior"))`` as the context declarations of :mod:`amortbayes.sensitivity`."""
    if not records:
        return None
    return {str(k): {"power": str(v["power"]), "range": [float(a) for a in v["range"]]} for k, v in dict(records).items()}


def powerscale(f: AmortizedFit, method: str = "reweight", n: Any = 4000, seed: Any = 0):
    return _caught(lambda: f.powerscale_sensitivity(method=method, n=int(n), seed=int(seed)))


def sweep(f: AmortizedFit, grid: Any, n: Any = 2000, seed: Any = 0):
    """:meth:`AmortizedFit.sensitivity_sweep` over R's ``list(alpha = c(...))``."""
    values = {str(k): [float(a) for a in (v if isinstance(v, (list, tuple)) else [v])] for k, v in dict(grid).items()}
    return _caught(lambda: f.sensitivity_sweep(values, n=int(n), seed=int(seed)))


def model(formula: str, data: pd.DataFrame, family: str, prior_records: Any = None) -> tuple[FormulaModel, list[str]]:
    """The :class:`FormulaModel` of a formula, data, family and priors (no training)."""
    return _caught(lambda: FormulaModel(parse_terms(formula, _frame(data)), family, priors(prior_records)))


def prior_table(formula: str, data: pd.DataFrame, family: str, prior_records: Any = None):
    """:func:`default_prior`'s table."""
    return _caught(lambda: default_prior(formula, _frame(data), family, priors(prior_records)))


def stancode(m: FormulaModel) -> tuple[str, list[str]]:
    from amortbayes.formula.stan import make_stancode

    return _caught(lambda: make_stancode(m))


def standata(m: FormulaModel) -> tuple[dict, list[str]]:
    from amortbayes.formula.stan import make_standata

    return _caught(lambda: {k: (np.asarray(v) if not np.isscalar(v) else v) for k, v in make_standata(m).items()})


def summary(f: AmortizedFit) -> tuple[dict, list[str]]:
    """brms' summary blocks as data frames with the parameter names in a column ``parameter``."""
    def run():
        out = {}
        for key, table in f.summary().items():
            t = table.reset_index().rename(columns={"index": "parameter"})
            out[key] = t
        t = f.terms
        out["info"] = {"family": f.model.family.name, "formula": t.formula, "rows": len(t.y),
                       "levels": len(t.levels), "group": t.group, "method": f.method,
                       "draws": int(f.posterior.global_draws.shape[1])}
        return out
    return _caught(run)


def per_level(f: AmortizedFit, what: str) -> tuple[dict, list[str]]:
    """``ranef`` or ``coef`` as brms' array: ``values (levels, 4 statistics, coefficients)`` with its names."""
    def run():
        table = f.ranef() if what == "ranef" else f.coef()
        coefs = list(dict.fromkeys(table.columns.get_level_values(0)))
        stats = ["Estimate", "Est.Error", "Q2.5", "Q97.5"]
        values = np.stack([table[c][stats].to_numpy() for c in coefs], axis=-1)
        return {"group": f.model.terms.group, "levels": [str(v) for v in table.index], "stats": stats,
                "coefs": coefs, "values": values}
    return _caught(run)


def fixef(f: AmortizedFit):
    return _caught(lambda: f.fixef().reset_index().rename(columns={"index": "parameter"}))


def draws(f: AmortizedFit):
    return _caught(f.draws)


def log_lik(f: AmortizedFit):
    return _caught(f.log_lik)


def predictions(f: AmortizedFit, what: str, newdata: pd.DataFrame | None, seed: Any = 0, allow_new_levels: bool = True):
    """``posterior_predict``, ``posterior_epred`` (``(draws, rows)`` arrays) or ``predict``/``fitted`` tables."""
    new = None if newdata is None else _frame(newdata)
    fn = getattr(f, what)
    return _caught(lambda: fn(new, seed=int(seed), allow_new_levels=bool(allow_new_levels)))


def update(f: AmortizedFit, newdata: pd.DataFrame, draws: Any = 4000, seed: Any = 0):
    return _caught(lambda: f.update(_frame(newdata), draws=int(draws), seed=int(seed)))


def logo(f: AmortizedFit, n: Any = 1000, seed: Any = 0):
    return _caught(lambda: f.logo(int(n), seed=int(seed)))


def sbc(f: AmortizedFit, n_sims: Any = 200, n_draws: Any = 200, seed: Any = 2024):
    """:meth:`AmortizedFit.sbc`'s table, and its ECDF differences with their simultaneous band for R's plot."""
    from amortbayes.diagnostics.sbc import sbc_ecdf_bands, sbc_ecdf_diff, sbc_ranks

    def run():
        result = f.sbc(int(n_sims), int(n_draws), seed=int(seed))
        ranks = sbc_ranks(result.draws, result.truth)
        band = sbc_ecdf_bands(ranks.shape[0], result.draws.shape[1], alpha=result.alpha)
        return {"table": result.table, "alpha": result.alpha, "passed": result.passed, "dropped": result.dropped,
                "z": band.z, "lower": band.lower, "upper": band.upper,
                "ecdf_diff": sbc_ecdf_diff(ranks, result.draws.shape[1], band.z)}
    return _caught(run)


def response(f: AmortizedFit) -> tuple[dict, list[str]]:
    """The fit's response (and trials) in its data's row order, for R's posterior predictive checks."""
    t = f.terms
    return _caught(lambda: {"y": np.asarray(t.y, dtype=float),
                            "trials": None if t.trials is None else np.asarray(t.trials, dtype=float)})


def compare_stan(f: AmortizedFit, chains: Any = 4, warmup: Any = 1000, draws: Any = 1000, plot: str | None = None,
                 file: str | None = None):
    """:meth:`AmortizedFit.compare_stan`'s table, with Stan's seconds, largest R-hat and divergences as columns."""
    def run():
        table = f.compare_stan(chains=int(chains), warmup=int(warmup), draws=int(draws), plot=plot, file=file)
        stan = table.attrs["stan"]
        out = table.reset_index().rename(columns={"index": "parameter"})
        return out, {"seconds": float(stan.seconds), "max_rhat": float(stan.max_rhat), "divergences": int(stan.divergences)}
    return _caught(run)


def save(f: AmortizedFit, path: str):
    return _caught(lambda: str(f.save(Path(path))))


def load(path: str, draws: Any = 4000, seed: Any = 0):
    return _caught(lambda: AmortizedFit.load(path, draws=int(draws), seed=int(seed)))


def describe(f: AmortizedFit) -> tuple[dict, list[str]]:
    """What R's ``nobs``, ``ngrps``, ``formula`` and ``family`` read."""
    t = f.terms
    return _caught(lambda: {"nobs": len(t.y), "ngrps": {t.group: len(t.levels)}, "formula": t.formula,
                            "family": f.model.family.name, "parameters": list(f.model.parameter_names)})


def compare_draws(f: AmortizedFit, reference: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """The fit's draws against another sampler's (brms' ``as_draws_df``) for the global parameters they share."""
    from amortbayes.reference import compare_draws as compare

    def run():
        ours = f.draws()
        names = [n for n in f.model.parameter_names if n in reference.columns]
        missing = [n for n in f.model.parameter_names if n not in reference.columns]
        if missing:
            raise ValueError(f"the reference draws lack the parameter(s) {missing}; they must be named as brms "
                             "names them (brms::as_draws_df)")
        return compare(ours, reference[names].astype(float), names).reset_index().rename(columns={"index": "parameter"})
    return _caught(run)


def data_frame(f: AmortizedFit) -> tuple[pd.DataFrame, list[str]]:
    """The data a fit was trained on (the columns its formula uses)."""
    return _caught(lambda: f.data)


def dataset(name: str) -> tuple[pd.DataFrame, list[str]]:
    """A data set shipped with the Python package (:func:`amortbayes.data.load_dataset`)."""
    from amortbayes.data import load_dataset

    return _caught(lambda: load_dataset(name))

"""lme4/brms formula + data frame -> design matrices with brms' names (parsing by ``formulae``).

The formula is parsed and its design matrices are built by the ``formulae`` library (bambi's
mixed-model formula package); this module only adds what brms users expect on top of it:

* brms' coefficient names: ``Intercept``, ``x``, ``fb`` (factor ``f`` at level ``b``,
  treatment coding), ``x:fb``; group terms as ``sd_g__x`` / ``r_g[level,x]``;
* group terms ``(expr | g)`` as lme4 builds them: each term's columns are the model matrix
  of its own ``expr`` (``(1 | g) + (0 + f | g)`` gives ``fa fb fc`` in the second term,
  transforms such as ``(1 + log(x) | g)`` work); ``(expr || g)`` (uncorrelated, which
  ``formulae`` does not parse) takes the same columns with one block per column, as brms;
* R's ``scale(x)`` (centred and divided by the *sample* SD, as ``model.matrix`` does;
  ``formulae``'s own ``scale`` divides by the population SD) and R's ``I(x^2)``;
* one grouping factor, with a clear error that names crossed ``(1|a) + (1|b)`` and nested
  ``(1|a/b)`` terms as not supported yet;
* rows with missing values in the used columns dropped with a warning giving the count.

References:
    Bürkner (2017), brms: An R package for Bayesian multilevel models using Stan, JSS 80(1).
    Bates et al. (2015), Fitting linear mixed-effects models using lme4, JSS 67(1).
"""

from __future__ import annotations

import dataclasses
import re
import warnings

import numpy as np
import pandas as pd

# R's scale(): centred, divided by the sample standard deviation
_R_SCALE = "rscale"


class _RScale:
    """R's ``scale()`` as a ``formulae`` stateful transform: new data are scaled by the training data's mean and SD."""

    __stateful_transform__ = True

    def __init__(self):
        self.mean = self.sd = None

    def __call__(self, x):
        x = np.asarray(x, dtype=float)
        if self.mean is None:
            self.mean, self.sd = x.mean(), x.std(ddof=1)
        return (x - self.mean) / self.sd


_NAMESPACE = {"log": np.log, "exp": np.exp, "sqrt": np.sqrt, "log1p": np.log1p, _R_SCALE: _RScale}


@dataclasses.dataclass(frozen=True)
class FormulaTerms:
    """Design of a one-grouping-factor mixed model, with brms' names.

    Attributes:
        formula: the formula as the user wrote it.
        response: the response column name.
        y: the response, one value per used row.
        X: population-level design, shape (N, P), treatment-coded, R's column order.
        fixed_names: brms names of X's columns (``Intercept``, ``Days``, ``fb``, ``x:fb``).
        group: name of the grouping factor (None without group terms).
        levels: the grouping factor's levels, sorted as R's ``factor()`` sorts them.
        group_index: level index of each row, shape (N,).
        Z: group-level design, shape (N, K) (the columns multiplying each group's effects).
        group_names: brms names of Z's columns (``Intercept``, ``Days``).
        blocks: indices of Z's columns per correlated block: one block per group term as
            written (several terms of one factor are independent of each other, as in lme4),
            one block per column for ``||``.
        dropped_rows: rows dropped for missing values.
        trials: the number of trials per row of a binomial response (``s | trials(n)``, or
            ``s + f`` of ``cbind(s, f)``); None otherwise.
        design: the ``formulae`` design matrices of the data the formula was parsed on (their
            factor levels and ``scale()`` statistics are what :func:`new_terms` applies to new data).
        group_design: the ``formulae`` model matrix of each group term's expression, likewise.
    """

    formula: str
    response: str
    y: np.ndarray
    X: np.ndarray
    fixed_names: tuple[str, ...]
    group: str | None
    levels: tuple[str, ...]
    group_index: np.ndarray
    Z: np.ndarray
    group_names: tuple[str, ...]
    blocks: tuple[tuple[int, ...], ...]
    dropped_rows: int
    trials: np.ndarray | None = None
    design: object = dataclasses.field(default=None, repr=False, compare=False)
    group_design: tuple = dataclasses.field(default=(), repr=False, compare=False)

    @property
    def correlated(self) -> bool:
        return any(len(b) > 1 for b in self.blocks)


def _brms_name(label: str) -> str:
    """``formulae`` column label -> brms coefficient name: ``f[b]`` -> ``fb``, ``I(x ** 2)`` -> ``IxE2``."""
    name = re.sub(r"([A-Za-z_.][\w.]*)\[([^\]]*)\]", r"\1\2", label)
    name = name.replace(_R_SCALE + "(", "scale(")
    if name.startswith("I(") or name.startswith("scale(") or name.startswith("log("):
        # brms drops brackets and spaces and writes powers as E: I(x^2) -> IxE2, log(x) -> logx
        name = name.replace(" ", "").replace("**", "E").replace("(", "").replace(")", "")
    return name


def _rewrite(formula: str) -> str:
    """R spellings -> formulae's: ``scale`` -> R's scale, ``^`` inside ``I()`` -> ``**``."""
    out = re.sub(r"\bscale\(", _R_SCALE + "(", formula)
    return re.sub(r"I\(([^()]*)\)", lambda m: "I(" + m.group(1).replace("^", "**") + ")", out)


def _bars(rhs: str) -> list[tuple[int, int, str, str, bool]]:
    """The bracketed group terms of a formula's right-hand side: (start, end, expr, group, uncorrelated).

    Brackets inside a term are matched, so ``(1 + log(x) | g)`` is one term with ``expr`` ``1 + log(x)``.
    """
    out, depth, start = [], 0, 0
    for i, c in enumerate(rhs):
        if c == "(":
            start, depth = (i, 1) if depth == 0 else (start, depth + 1)
        elif c == ")" and depth > 0:
            depth -= 1
            if depth == 0 and (start == 0 or not re.match(r"[\w.]", rhs[start - 1])):  # not a call such as I(...)
                inner, level = rhs[start + 1:i], 0
                for k, ch in enumerate(inner):
                    level += (ch == "(") - (ch == ")")
                    if ch == "|" and level == 0:
                        double = inner[k + 1: k + 2] == "|"
                        out.append((start, i + 1, inner[:k].strip(), inner[k + 1 + double:].strip(), double))
                        break
    return out


def _nobars(formula: str) -> str:
    """The formula without its group terms (lme4's ``nobars``): ``y ~ x + (x | g)`` -> ``y ~ x``."""
    lhs, rhs = formula.split("~", 1)
    for start, end, *_ in reversed(_bars(rhs)):
        rhs = rhs[:start] + " " + rhs[end:]
    rhs = re.sub(r"\+\s*-", "-", re.sub(r"\+(\s*\+)+", "+", rhs)).strip()
    rhs = re.sub(r"^\+|\+$", "", rhs).strip() or "1"
    return f"{lhs.strip()} ~ {rhs}"


_NAME = r"[A-Za-z_.][\w.]*"
_TRIALS = re.compile(rf"^\s*({_NAME})\s*\|\s*trials\(\s*({_NAME}|\d+)\s*\)\s*$")
_CBIND = re.compile(rf"^\s*cbind\(\s*({_NAME})\s*,\s*({_NAME})\s*\)\s*$")


def _binomial_response(formula: str) -> tuple[str, str | None, str | None, str | None]:
    """brms' ``s | trials(n) ~ ...`` and R's ``cbind(s, f) ~ ...`` -> (``s ~ ...``, s, n or None, f or None).

    Raises:
        ValueError: another addition term on the left (``y | weights(w)``, ``y | se(s)``).
    """
    lhs, rhs = formula.split("~", 1)
    m = _TRIALS.match(lhs)
    if m:
        return f"{m[1]} ~{rhs}", m[1], m[2], None
    m = _CBIND.match(lhs)
    if m:
        return f"{m[1]} ~{rhs}", m[1], None, m[2]
    if "|" in lhs or "cbind" in lhs:
        raise ValueError(f"response {lhs.strip()!r}: the left-hand side takes a response, 'successes | trials(n)' "
                         "or 'cbind(successes, failures)'; other addition terms (weights, se, cens) are not supported")
    return formula, None, None, None


def _check_variables(formula: str, data: pd.DataFrame) -> None:
    rhs = formula.split("~", 1)[1] if "~" in formula else formula
    lhs = formula.split("~", 1)[0]
    names = set(re.findall(r"[A-Za-z_.][\w.]*", lhs + " " + rhs)) - set(_NAMESPACE) - {"I", "scale", "C", "trials",
                                                                                      "cbind"}
    missing = sorted(n for n in names if n not in data.columns)
    if missing:
        raise ValueError(f"formula {formula!r} uses {missing}, not column(s) of the data: {list(data.columns)}")


def parse_terms(formula: str, data: pd.DataFrame, *, min_levels: int = 2) -> FormulaTerms:
    """Design matrices of ``formula`` on ``data``, with brms' names.

    ``min_levels``: the fewest levels the grouping factor may have (2 to fit a model; 1 for
    new data to predict, whose one group may be new).

    Raises:
        ValueError: no ``~``, a variable not in the data, crossed or nested group terms, a
            grouping factor with one level, or no rows left after dropping missing values.

    Example:
        >>> df = pd.DataFrame({"y": [1.0, 2, 3, 4], "x": [0.0, 1, 0, 1], "g": ["a", "a", "b", "b"]})
        >>> t = parse_terms("y ~ x + (x | g)", df)
        >>> t.fixed_names, t.group, t.levels, t.group_names
        (('Intercept', 'x'), 'g', ('a', 'b'), ('Intercept', 'x'))
    """
    import formulae

    if not isinstance(formula, str) or "~" not in formula:
        raise ValueError(f"a formula reads 'response ~ terms', such as 'y ~ x + (x | g)'; got {formula!r}")
    if not isinstance(data, pd.DataFrame):
        raise TypeError(f"data must be a pandas DataFrame, got {type(data).__name__}")
    if re.search(r"\|[^()|]*/", formula):
        raise ValueError(f"nested group terms such as (1 | a/b) are not supported yet (formula {formula!r}); "
                         "one grouping factor per model for now")
    if len(data) == 0:
        raise ValueError("data has no rows")
    plain, successes, n_trials, failures = _binomial_response(formula)
    _check_variables(formula, data)
    bars = _bars(plain.split("~", 1)[1])
    groups = {group for *_, group, _ in bars}
    if len(groups) > 1:
        raise ValueError(f"crossed group terms of {sorted(groups)} are not supported yet (formula {formula!r}); "
                         "one grouping factor per model for now")
    data, dropped = _drop_missing(formula, data)
    dm = formulae.design_matrices(_rewrite(_nobars(plain)), data, na_action="error", extra_namespace=_NAMESPACE)
    X = np.asarray(dm.common.design_matrix, dtype=float) if dm.common is not None else np.zeros((len(data), 0))
    fixed = tuple(_brms_name(label) for term in dm.common.terms.values() for label in term.labels) \
        if dm.common is not None else ()
    y = np.asarray(dm.response.design_matrix, dtype=float).reshape(len(data), -1)
    group = next(iter(groups)) if groups else None
    Z_cols, names, blocks, group_designs = [], [], [], ()
    levels: tuple[str, ...] = ()
    index = np.zeros(len(data), dtype=np.int64)
    if group is not None:
        g = data[group]
        levels = tuple(str(v) for v in sorted(pd.unique(g)))
        if len(levels) < min_levels:
            raise ValueError(f"grouping factor {group!r} has {len(levels)} level(s); group-level effects need "
                             "at least two groups")
        index = pd.Categorical(g.astype(str), categories=levels).codes.astype(np.int64)
        group_designs = tuple(formulae.design_matrices(_rewrite(expr), data, na_action="error",
                                                       extra_namespace=_NAMESPACE).common for *_, expr, _, _ in bars)
        Z_cols, names, blocks = _group_design(group_designs, [double for *_, double in bars])
        if len(set(names)) != len(names):
            raise ValueError(f"group terms of {group!r} name the same effect twice: {names}")
    Z = np.stack(Z_cols, axis=1) if Z_cols else np.zeros((len(data), 0))
    return FormulaTerms(formula=formula, response=dm.response.name, y=y[:, 0] if y.shape[1] == 1 else y, X=X,
                        fixed_names=fixed, group=group, levels=levels, group_index=index, Z=Z,
                        group_names=tuple(names), blocks=tuple(blocks), dropped_rows=dropped,
                        trials=_trials(formula, data), design=dm, group_design=group_designs)


def _drop_missing(formula: str, data: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """``data`` without the rows that miss a value in a used column (as brms, with a warning giving the count)."""
    used = sorted(set(re.findall(r"[A-Za-z_.][\w.]*", formula)) & set(data.columns))
    complete = data[used].notna().all(axis=1)
    dropped = int((~complete).sum())
    if dropped:
        warnings.warn(f"Rows containing NAs were excluded from the model: {dropped} of {len(data)}", UserWarning,
                      stacklevel=3)
    data = data.loc[complete].reset_index(drop=True)
    if len(data) == 0:
        raise ValueError("no rows left after dropping rows with missing values in the used columns")
    return data, dropped


def _trials(formula: str, data: pd.DataFrame) -> np.ndarray | None:
    """The trials of a binomial response per row (None when the formula gives none)."""
    _, successes, n_trials, failures = _binomial_response(formula)
    if n_trials is not None:
        return np.full(len(data), float(n_trials)) if n_trials.isdigit() else data[n_trials].to_numpy(dtype=float)
    if failures is not None:
        return data[successes].to_numpy(dtype=float) + data[failures].to_numpy(dtype=float)
    return None


def _group_design(designs, uncorrelated: list[bool]) -> tuple[list, list, list]:
    """Z's columns, brms names and correlated blocks from the model matrices of the group terms' expressions.

    As in lme4, a term ``(expr | g)`` multiplies the columns of ``model.matrix(~ expr)`` (with
    its own intercept and treatment coding), and its columns form one correlated block; a
    ``(expr || g)`` term has the same columns, one block each (as brms).
    """
    Z_cols, names, blocks = [], [], []
    for design, double in zip(designs, uncorrelated):
        if design is None:
            continue  # (0 | g): no columns
        M = np.asarray(design.design_matrix, dtype=float)
        labels = [label for term in design.terms.values() for label in term.labels]
        block = list(range(len(names), len(names) + len(labels)))
        names += [_brms_name(label) for label in labels]
        Z_cols += list(M.T)
        blocks += [(k,) for k in block] if double else [tuple(block)] if block else []
    return Z_cols, names, blocks


def new_terms(terms: FormulaTerms, newdata: pd.DataFrame, *, min_levels: int = 1) -> FormulaTerms:
    """``newdata`` through the design of ``terms``: its factor levels and ``scale()`` statistics, not newdata's own.

    The grouping factor's levels are newdata's (levels the fit has not seen are new groups).

    Raises:
        ValueError: a column the formula uses is missing, a fixed-effect factor has a level the
            fitted data did not have, or no rows are left after dropping missing values.
    """
    if not isinstance(newdata, pd.DataFrame):
        raise TypeError(f"newdata must be a pandas DataFrame, got {type(newdata).__name__}")
    if terms.design is None:
        raise ValueError("these terms hold no design to apply to new data; parse the data with parse_terms")
    _check_variables(terms.formula, newdata)
    data, dropped = _drop_missing(terms.formula, newdata)
    dm = terms.design
    try:
        X = np.asarray(dm.common.evaluate_new_data(data).design_matrix, dtype=float) if dm.common is not None \
            else np.zeros((len(data), 0))
    except ValueError as error:
        raise ValueError(f"newdata: {error} (a factor level the fitted data did not have)") from error
    levels = tuple(str(v) for v in sorted(pd.unique(data[terms.group])))
    if len(levels) < min_levels:
        raise ValueError(f"grouping factor {terms.group!r} has {len(levels)} level(s) in newdata")
    index = pd.Categorical(data[terms.group].astype(str), categories=levels).codes.astype(np.int64)
    try:
        group_designs = [None if d is None else d.evaluate_new_data(data) for d in terms.group_design]
    except ValueError as error:
        raise ValueError(f"newdata: {error} (a factor level the fitted data did not have)") from error
    Z_cols, _, _ = _group_design(group_designs, [False] * len(group_designs))
    y = data[terms.response].to_numpy(dtype=float)
    return dataclasses.replace(terms, y=y, X=X, levels=levels, group_index=index,
                               Z=np.stack(Z_cols, axis=1).astype(float) if Z_cols else np.zeros((len(data), 0)),
                               dropped_rows=dropped, trials=_trials(terms.formula, data))

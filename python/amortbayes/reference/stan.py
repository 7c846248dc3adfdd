"""Stan reference fits of the programs in ``stan/`` with cmdstanpy (if CmdStan is installed) or pystan.

The pipeline is split so that every stage can be called, and tested, on its own:

- :func:`stan_program` reads ``stan/NAME.stan``; :func:`data_names` parses its ``data`` block.
- :func:`check_data` validates a data dict against the program *before* anything runs
  (missing variables -> :class:`ValueError` naming them) and converts it to plain JSON
  values (integers where the program declares ``int``).
- :func:`padded_groups` turns a long data frame into the padded ``array[J, N_max]`` layout
  with group sizes that all the programs use for ragged groups.
- :func:`normalize_draws` maps the backends' draws to one layout: one row per draw, columns
  ``chain``, ``draw`` (1-based) and Stan's bracketed 1-based names (``r_Intercept[3]``,
  ``z[1,2]``); pystan's ``to_frame()`` writes ``r_Intercept.3`` and interleaves chains.
- :func:`fit_stan` runs all of this and returns a :class:`StanFit` with draws, timings and
  convergence diagnostics (rank-normalized split-R-hat and bulk-ESS, see
  :mod:`amortbayes.reference.convergence`).

Compiled models are cached: httpstan (pystan) caches by program text under
``~/.cache/httpstan``; for cmdstanpy the program is compiled in
``~/.cache/amortbayes/stan/<sha>`` (``$XDG_CACHE_HOME`` is honoured).  httpstan also caches
*fits* made with a seed; :func:`fit_stan` removes the fits it created so that a repeated call
samples again and ``seconds`` stays a real sampling time.  ``fit_stan(..., file=)`` keeps a
fit on disk instead and reads it back while program, data and settings are unchanged.

Example:
    >>> from amortbayes.data import load_sleepstudy
    >>> data = hierarchical_linear_data(load_sleepstudy(), group="Subject", x="Days", y="Reaction")
    >>> data["J"], data["N_max"], check_data("hierarchical_linear", data)["N"][:3]
    (18, 10, [10, 10, 10])
    >>> fit = fit_stan("hierarchical_linear", data)  # doctest: +SKIP
    >>> fit.summary(["b_Intercept", "b_x"])  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import hashlib
import io
import json
import os
import re
import time
import warnings
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from amortbayes.reference.convergence import ess_bulk, rhat
from amortbayes.simulation import group_levels

__all__ = [
    "BACKENDS",
    "HIERARCHICAL_LINEAR_PRIORS",
    "StanFit",
    "available_backend",
    "check_data",
    "data_names",
    "fit_stan",
    "hierarchical_linear_data",
    "known_programs",
    "label_groups",
    "normalize_draws",
    "padded_groups",
    "stan_program",
]

BACKENDS = ("cmdstanpy", "pystan")

#: Default prior hyperparameters of ``stan/hierarchical_linear.stan`` (sleepstudy scale).
HIERARCHICAL_LINEAR_PRIORS: dict[str, float] = {
    "b_Intercept_loc": 250.0,
    "b_Intercept_scale": 50.0,
    "b_x_loc": 10.0,
    "b_x_scale": 10.0,
    "sd_Intercept_scale": 40.0,
    "sd_x_scale": 10.0,
    "sigma_scale": 50.0,
    "lkj_eta": 2.0,
}

_INSTALL_HINT = (
    "no Stan backend found: install pystan with `pip install amortbayes[stan]` "
    "(or `pip install pystan`), or install CmdStan for cmdstanpy "
    "(`pip install cmdstanpy` then `python -m cmdstanpy.install_cmdstan`)"
)

# columns that are not model quantities
_INDEX_COLUMNS = ("chain", "draw")

# ----------------------------------------------------------------------------- programs


def _stan_dir(stan_dir: str | os.PathLike[str] | None = None) -> Path:
    """The folder of Stan programs: ``stan_dir``, else ``$AMORTBAYES_STAN_DIR``, else ``<repo>/stan``."""
    if stan_dir is not None:
        folder, source = Path(stan_dir), "stan_dir"
    elif os.environ.get("AMORTBAYES_STAN_DIR"):
        folder, source = Path(os.environ["AMORTBAYES_STAN_DIR"]), "$AMORTBAYES_STAN_DIR"
    else:
        # python/amortbayes/reference/stan.py -> repository root
        folder, source = Path(__file__).resolve().parents[3] / "stan", "the repository"
    if not folder.is_dir():
        raise FileNotFoundError(
            f"Stan program folder {str(folder)!r} (from {source}) does not exist; pass stan_dir= "
            "or set AMORTBAYES_STAN_DIR to the folder holding the .stan files"
        )
    return folder


def known_programs(stan_dir: str | os.PathLike[str] | None = None) -> list[str]:
    """Names of the Stan programs available (``NAME`` for every ``NAME.stan``), sorted."""
    return sorted(p.stem for p in _stan_dir(stan_dir).glob("*.stan"))


def stan_program(name: str, stan_dir: str | os.PathLike[str] | None = None) -> str:
    """The text of the Stan program ``stan/NAME.stan``.

    Args:
        name: Program name without ``.stan``, e.g. ``"hierarchical_linear"``.
        stan_dir: Folder holding the programs; default ``$AMORTBAYES_STAN_DIR`` or the
            repository's ``stan/``.

    Raises:
        ValueError: unknown name (the message lists the known programs).
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a string, got {type(name).__name__}")
    known = known_programs(stan_dir)
    if name not in known:
        raise ValueError(f"unknown Stan program {name!r}; known programs: {', '.join(known)}")
    return (_stan_dir(stan_dir) / f"{name}.stan").read_text(encoding="utf-8")


def _strip_comments(code: str) -> str:
    code = re.sub(r"/\*.*?\*/", " ", code, flags=re.DOTALL)
    return re.sub(r"(//|#)[^\n]*", " ", code)


def _block(code: str, name: str) -> str | None:
    """Body of the top-level block ``name { ... }`` (``data`` is not ``transformed data``)."""
    for match in re.finditer(r"(\btransformed\s+)?\b" + name + r"\s*\{", code):
        if match.group(1):
            continue
        depth, start = 1, match.end()
        for i in range(start, len(code)):
            depth += {"{": 1, "}": -1}.get(code[i], 0)
            if depth == 0:
                return code[start:i]
        raise ValueError(f"unbalanced braces in the {name} block")
    return None


def _strip_brackets(text: str, opening: str, closing: str) -> str:
    """``text`` without any ``opening ... closing`` groups (nested groups included)."""
    out, depth = [], 0
    for char in text:
        if char == opening:
            depth += 1
        elif char == closing:
            depth -= 1
        elif depth == 0:
            out.append(char)
    return "".join(out)


def _data_declarations(code: str) -> dict[str, str]:
    """``{name: base type}`` of the ``data`` block, in declaration order (``int``, ``real``, ...)."""
    body = _block(_strip_comments(code), "data")
    if body is None:
        return {}
    declarations: dict[str, str] = {}
    for statement in body.split(";"):
        text = _strip_brackets(_strip_brackets(statement, "[", "]"), "<", ">").strip()
        text = re.sub(r"^array\b", "", text).strip()
        words = re.findall(r"[A-Za-z_][A-Za-z0-9_]*", text)
        if len(words) >= 2:
            declarations[words[-1]] = words[0]
    return declarations


def data_names(program_code: str) -> list[str]:
    """Names of the variables declared in the ``data { }`` block of ``program_code``, in order.

    Example:
        >>> data_names("data { int<lower=1> J; array[J, 3] real y; } parameters { real mu; }")
        ['J', 'y']
    """
    return list(_data_declarations(program_code))


def _json_value(key: str, value: Any, integer: bool) -> Any:
    """``value`` as nested lists / Python numbers; integer-valued floats become ``int`` if ``integer``."""
    if isinstance(value, pd.Series | pd.DataFrame):
        value = value.to_numpy()
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise TypeError(f"data[{key!r}] must be numeric, got {type(value).__name__}") from error
    if integer:
        if not np.all(np.isfinite(array)) or not np.all(array == np.round(array)):
            raise ValueError(f"data[{key!r}] is declared int in the Stan program but holds non-integers")
        return array.astype(np.int64).tolist()
    return array.tolist()


def check_data(
    name: str, data: Mapping[str, Any], *, stan_dir: str | os.PathLike[str] | None = None
) -> dict[str, Any]:
    """Validate ``data`` for program ``name`` without running Stan; return it as plain JSON values.

    Every variable of the program's ``data`` block must be present (extra keys are dropped).
    Arrays become nested lists; variables declared ``int`` become Python ints (integer-valued
    float arrays, e.g. from a padded frame, are accepted).  Shapes and bounds are left to Stan.

    Raises:
        ValueError: unknown program, missing variables (all named), non-integers for ``int``.
        TypeError: ``data`` not a mapping, or a non-numeric value.
    """
    if not isinstance(data, Mapping):
        raise TypeError(f"data must be a dict of named values, got {type(data).__name__}")
    declarations = _data_declarations(stan_program(name, stan_dir))
    missing = [key for key in declarations if key not in data]
    if missing:
        raise ValueError(
            f"data for Stan program {name!r} is missing {len(missing)} variable(s): "
            f"{', '.join(missing)} (the program's data block declares: {', '.join(declarations)})"
        )
    return {key: _json_value(key, data[key], base == "int") for key, base in declarations.items()}


def padded_groups(
    frame: pd.DataFrame,
    group: str,
    columns: Sequence[str],
    *,
    size_name: str = "N",
    max_name: str = "N_max",
) -> dict[str, Any]:
    """Long data -> the padded layout of the Stan programs: ``J``, ``N_max``, ``N`` and ``J x N_max`` arrays.

    Groups are in :func:`amortbayes.simulation.group_levels` order (unused categories dropped),
    the amortizer's order, so Stan's ``name[k]`` is the amortizer's ``k``-th group (see
    :func:`label_groups`); rows keep their order within a group.  Padding is
    0 and never read by the programs.

    Example:
        >>> df = pd.DataFrame({"g": ["b", "a", "b"], "y": [1.0, 2.0, 3.0]})
        >>> d = padded_groups(df, "g", ["y"], size_name="T", max_name="T_max")
        >>> d["J"], d["T_max"], d["T"], d["y"].tolist()
        (2, 2, [1, 2], [[2.0, 0.0], [1.0, 3.0]])
    """
    missing = [c for c in [group, *columns] if c not in frame.columns]
    if missing:
        raise ValueError(f"frame has no column(s) {', '.join(missing)}")
    if frame[group].isna().any():
        raise ValueError(f"column {group!r} has missing values")
    codes = pd.Index(group_levels(frame[group], drop_unused=True)).get_indexer(frame[group])
    n_groups = int(codes.max()) + 1
    sizes = np.bincount(codes, minlength=n_groups)
    width = int(sizes.max())
    position = pd.Series(codes).groupby(codes).cumcount().to_numpy()
    out: dict[str, Any] = {"J": n_groups, max_name: width, size_name: sizes.astype(int).tolist()}
    for column in columns:
        padded = np.zeros((n_groups, width))
        padded[codes, position] = frame[column].to_numpy(dtype=np.float64)
        out[column] = padded
    return out


def label_groups(draws: pd.DataFrame, parameters: Sequence[str], labels: Sequence[Any]) -> pd.DataFrame:
    """Stan's ``name[k]`` columns of ``parameters`` renamed ``name[label]``, ``labels`` in Stan's group order.

    With ``labels = group_levels(frame[group], drop_unused=True)`` of the frame given to
    :func:`padded_groups`, the columns get the names of the amortizer's draws (``alpha[308]``).

    Raises:
        ValueError: the draws have no ``name[1]`` .. ``name[len(labels)]`` columns for a parameter.
    """
    rename = {}
    for name in parameters:
        columns = [f"{name}[{k + 1}]" for k in range(len(labels))]
        missing = [c for c in columns if c not in draws.columns]
        if missing:
            raise ValueError(f"draws lack {len(missing)} column(s) of {name!r} for {len(labels)} groups, e.g. {missing[0]!r}")
        rename.update({c: f"{name}[{label}]" for c, label in zip(columns, labels)})
    return draws.rename(columns=rename)


def hierarchical_linear_data(
    frame: pd.DataFrame, *, group: str, x: str, y: str, **priors: float
) -> dict[str, Any]:
    """Data for ``stan/hierarchical_linear.stan`` from a long frame (``y ~ x + (x | group)``).

    ``priors`` override :data:`HIERARCHICAL_LINEAR_PRIORS` (unknown names raise ValueError).
    """
    unknown = sorted(set(priors) - set(HIERARCHICAL_LINEAR_PRIORS))
    if unknown:
        raise ValueError(
            f"unknown prior setting(s) {', '.join(unknown)}; known: {', '.join(HIERARCHICAL_LINEAR_PRIORS)}"
        )
    data = padded_groups(frame.rename(columns={x: "x", y: "y"}), group, ["x", "y"])
    return {**data, **HIERARCHICAL_LINEAR_PRIORS, **priors}


# ----------------------------------------------------------------------------- draws


def _bracket_name(column: str) -> str:
    """pystan's ``r_Intercept.3`` / ``z.1.2`` -> ``r_Intercept[3]`` / ``z[1,2]``; others unchanged."""
    match = re.fullmatch(r"([A-Za-z][A-Za-z0-9_]*)((?:\.\d+)+)", column)
    if match is None:
        return column
    return f"{match.group(1)}[{','.join(match.group(2)[1:].split('.'))}]"


def normalize_draws(frame: pd.DataFrame, *, backend: str, chains: int | None = None) -> pd.DataFrame:
    """One layout for both backends' draws: ``chain``, ``draw``, then Stan's columns with bracketed names.

    Args:
        frame: ``fit.to_frame()`` (pystan: chains interleaved, row ``i`` is draw ``i // chains``
            of chain ``i % chains``) or ``fit.draws_pd()`` (cmdstanpy: ``chain__``, ``iter__``).
        backend: ``"pystan"`` or ``"cmdstanpy"``.
        chains: Number of chains; required for pystan, whose frame does not record them.

    Returns:
        Rows sorted by chain then draw (both 1-based), index ``0..n-1``; sampler columns such
        as ``lp__`` and ``divergent__`` are kept.
    """
    if backend == "pystan":
        if chains is None or chains < 1:
            raise ValueError("chains (>= 1) is required to normalize pystan draws")
        if len(frame) % chains:
            raise ValueError(f"{len(frame)} pystan draws do not split into {chains} chains")
        row = np.arange(len(frame))
        body = frame.rename(columns=_bracket_name).reset_index(drop=True)
        index = pd.DataFrame({"chain": row % chains + 1, "draw": row // chains + 1})
    elif backend == "cmdstanpy":
        needed = [c for c in ("chain__", "iter__") if c not in frame.columns]
        if needed:
            raise ValueError(f"cmdstanpy draws lack column(s) {', '.join(needed)}")
        index = pd.DataFrame(
            {"chain": frame["chain__"].to_numpy().astype(int), "draw": frame["iter__"].to_numpy().astype(int)}
        )
        body = frame.drop(columns=["chain__", "iter__", "draw__"], errors="ignore")
        body = body.rename(columns=_bracket_name).reset_index(drop=True)
    else:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    body.columns.name = None
    out = pd.concat([index, body], axis=1)
    return out.sort_values(["chain", "draw"], kind="stable").reset_index(drop=True)


def _quantity_columns(draws: pd.DataFrame) -> list[str]:
    return [c for c in draws.columns if c not in _INDEX_COLUMNS and not c.endswith("__")]


def _by_chain(draws: pd.DataFrame, column: str) -> np.ndarray:
    """``(chains, draws)`` array of one column of normalized draws."""
    return np.stack([g[column].to_numpy(dtype=np.float64) for _, g in draws.groupby("chain", sort=True)])


@dataclasses.dataclass(frozen=True, eq=False)
class StanFit:
    """A Stan reference fit.

    Attributes:
        name: Program name.
        draws: One row per draw: ``chain``, ``draw`` (1-based), sampler columns (``lp__``, ...)
            and every parameter, transformed parameter and generated quantity under Stan's
            bracketed 1-based names (``r_Intercept[3]``).
        seconds: Wall time of sampling (warmup included), in seconds.
        compile_seconds: Wall time of building the model (near 0 when cached).
        backend: ``"cmdstanpy"`` or ``"pystan"``.
        max_rhat: Largest rank-normalized split-R-hat over all quantities (constant ones skipped).
        min_ess_bulk: Smallest bulk-ESS over all quantities.
        divergences: Number of divergent transitions after warmup, if the backend reports them.
        from_file: Whether the fit was read back from ``fit_stan(..., file=)`` (then ``seconds``
            is the sampling time of the run that wrote it).
    """

    name: str
    draws: pd.DataFrame
    seconds: float
    compile_seconds: float
    backend: str
    max_rhat: float
    min_ess_bulk: float
    divergences: int | None
    from_file: bool = False

    @property
    def parameters(self) -> list[str]:
        """Names of the model quantities (no ``chain``, ``draw`` or sampler ``__`` columns)."""
        return _quantity_columns(self.draws)

    def summary(self, parameters: Sequence[str] | None = None) -> pd.DataFrame:
        """Mean, sd, 2.5/50/97.5 % quantiles, R-hat and bulk-ESS, one row per quantity."""
        names = list(parameters) if parameters is not None else self.parameters
        unknown = [p for p in names if p not in self.draws.columns]
        if unknown:
            raise ValueError(f"unknown parameter(s) {', '.join(unknown)}")
        values = self.draws[names]
        out = pd.DataFrame({"mean": values.mean(), "sd": values.std(ddof=1)})
        for p in (0.025, 0.5, 0.975):
            out[f"q{100 * p:g}"] = values.quantile(p)
        enough = len(self.draws) > 0 and int(self.draws.groupby("chain").size().min()) >= 4
        out["rhat"] = [rhat(_by_chain(self.draws, p)) if enough else np.nan for p in names]
        out["ess_bulk"] = [ess_bulk(_by_chain(self.draws, p)) if enough else np.nan for p in names]
        out.index.name = "parameter"
        return out


def _diagnostics(draws: pd.DataFrame) -> tuple[float, float, int | None]:
    """``(max R-hat, min bulk-ESS, divergences)`` of normalized draws (nan below 4 draws a chain)."""
    rhats, esss = [], []
    enough = len(draws) > 0 and int(draws.groupby("chain").size().min()) >= 4
    for column in _quantity_columns(draws) if enough else []:
        chains = _by_chain(draws, column)
        rhats.append(rhat(chains))
        esss.append(ess_bulk(chains))
    finite_r = [r for r in rhats if np.isfinite(r)]
    finite_e = [e for e in esss if np.isfinite(e)]
    divergences = int(draws["divergent__"].sum()) if "divergent__" in draws.columns else None
    return (
        max(finite_r) if finite_r else float("nan"),
        min(finite_e) if finite_e else float("nan"),
        divergences,
    )


# ----------------------------------------------------------------------------- backends


def available_backend() -> str:
    """``"cmdstanpy"`` if it imports and finds a CmdStan install, else ``"pystan"`` if installed.

    Raises:
        RuntimeError: neither is usable (the message says how to install one).
    """
    try:
        import cmdstanpy

        if Path(cmdstanpy.cmdstan_path()).is_dir():
            return "cmdstanpy"
    except Exception:  # noqa: BLE001 - ImportError, or cmdstanpy's ValueError when CmdStan is absent
        pass
    if not _pystan_importable():
        raise RuntimeError(_INSTALL_HINT)
    return "pystan"


def _pystan_importable() -> bool:
    try:
        _import_pystan()
    except ImportError:
        return False
    return True


def _import_pystan() -> Any:
    """``import stan`` without pystan's ``pkg_resources`` deprecation warning."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
        import stan
    return stan


_T = TypeVar("_T")


def _outside_event_loop(function: Callable[[], _T]) -> _T:
    """Call ``function`` here, or in a worker thread if this thread runs an asyncio loop.

    pystan calls ``asyncio.run``, which refuses to start inside a running loop (Jupyter,
    async test runners); a fresh thread has no loop.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return function()
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(function).result()


@contextlib.contextmanager
def _captured(buffer: io.StringIO | None):
    """Send Python-level stdout/stderr (pystan's progress and messages) to ``buffer``, if given."""
    if buffer is None:
        yield
        return
    with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
        yield


# httpstan failures after which running the same seeded fit again is safe (see _retry_races)
_RACES = ("pop from empty list", "not found")


def _retry_races(call: Callable[[], _T], attempts: int = 3) -> _T:
    """``call()``, repeated (up to ``attempts`` times) when it failed in one of two known races.

    httpstan reads the sampler's log messages from a socket in 8 KiB pieces and parses each
    for the iteration count; a message split across two reads has none, and the whole fit
    fails with ``IndexError('pop from empty list')`` (seen once in 18 consecutive sleepstudy
    refits).  And a fit stored by httpstan can vanish before it is read, ``Fit `models/..`
    not found``, when another process fitting the same program cleans up the fits it saw
    appear (:func:`_fit_pystan`; seen with two benchmarks fitting the same data at once).
    The sampler itself was fine and a seeded fit is reproducible, so running it again gives
    the same draws.  Any other error propagates at once.

    Example:
        >>> tries = []
        >>> def flaky():
        ...     tries.append(1)
        ...     if len(tries) == 1:
        ...         raise RuntimeError("Exception during call to services function: `IndexError('pop from empty list')`")
        ...     return "draws"
        >>> _retry_races(flaky), len(tries)
        ('draws', 2)
    """
    for attempt in range(attempts):
        try:
            return call()
        except RuntimeError as err:
            if not any(race in str(err) for race in _RACES) or attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def _fit_pystan(
    code: str, data: dict[str, Any], chains: int, warmup: int, draws: int, seed: int
) -> tuple[pd.DataFrame, float, float]:
    stan = _import_pystan()
    import httpstan.cache
    import httpstan.models

    fits_folder = httpstan.cache.model_directory(httpstan.models.calculate_model_name(code)) / "fits"

    def existing() -> set[Path]:
        return set(fits_folder.glob("*")) if fits_folder.is_dir() else set()

    def run() -> tuple[pd.DataFrame, float, float]:
        start = time.perf_counter()
        model = stan.build(code, data=data, random_seed=seed)
        built = time.perf_counter()
        before = existing()
        try:
            fit = _retry_races(lambda: model.sample(num_chains=chains, num_warmup=warmup, num_samples=draws))
        finally:
            # httpstan stores seeded fits and would replay them; drop the ones made here
            for path in existing() - before:
                path.unlink(missing_ok=True)
        done = time.perf_counter()
        if fit is None:  # pystan returns None on KeyboardInterrupt
            raise KeyboardInterrupt
        return fit.to_frame(), built - start, done - built

    return _outside_event_loop(run)


def _cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "amortbayes" / "stan"


def _fit_cmdstanpy(
    name: str, code: str, data: dict[str, Any], chains: int, warmup: int, draws: int, seed: int,
    show_progress: bool,
) -> tuple[pd.DataFrame, float, float]:
    import cmdstanpy

    # the key includes the CmdStan install, so another version compiles afresh
    key = hashlib.sha256((code + "\0" + cmdstanpy.cmdstan_path()).encode()).hexdigest()[:16]
    folder = _cache_root() / key
    folder.mkdir(parents=True, exist_ok=True)
    stan_file = folder / f"{name}.stan"
    if not stan_file.exists() or stan_file.read_text(encoding="utf-8") != code:
        stan_file.write_text(code, encoding="utf-8")
    start = time.perf_counter()
    model = cmdstanpy.CmdStanModel(stan_file=str(stan_file))  # compiles only if the exe is missing
    built = time.perf_counter()
    fit = model.sample(
        data=data,
        chains=chains,
        iter_warmup=warmup,
        iter_sampling=draws,
        seed=seed,
        show_progress=show_progress,
    )
    done = time.perf_counter()
    return fit.draws_pd(), built - start, done - built


def _check_count(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def fit_stan(
    name: str,
    data: Mapping[str, Any],
    *,
    chains: int = 4,
    warmup: int = 1000,
    draws: int = 1000,
    seed: int = 1,
    backend: str | None = None,
    show_progress: bool = False,
    stan_dir: str | os.PathLike[str] | None = None,
    file: str | os.PathLike[str] | None = None,
) -> StanFit:
    """Fit Stan program ``stan/NAME.stan`` to ``data`` with NUTS and return draws plus diagnostics.

    All arguments, the program and the data are validated before any backend is touched.

    Args:
        name: Program name (see :func:`known_programs`).
        data: Values for every variable of the program's ``data`` block (numpy arrays fine).
        chains: Number of chains (pystan runs them in parallel on the available cores).
        warmup: Warmup (adaptation) iterations per chain.
        draws: Saved draws per chain.
        seed: Random seed (non-negative); same seed, data and settings give the same draws.
        backend: ``"cmdstanpy"``, ``"pystan"`` or ``None`` for :func:`available_backend`.
        show_progress: Show the backend's progress output.
        stan_dir: Folder of the Stan programs (see :func:`stan_program`).
        file: Keep the fit in this ``.npz`` file, like brms' ``brm(file = )``: when the file
            holds a fit of the same program text, data, settings and backend it is read back
            instead of sampling (``from_file`` is then True); otherwise Stan samples and the
            file is (over)written.  Seeded fits reproduce, so this only saves time.

    Raises:
        ValueError / TypeError: bad arguments or data (nothing has run).
        RuntimeError: no usable backend, or the requested one is not usable.
    """
    chains = _check_count(chains, "chains", 1)
    warmup = _check_count(warmup, "warmup", 0)
    draws = _check_count(draws, "draws", 1)
    seed = _check_count(seed, "seed", 0)
    if seed >= 2**31:
        raise ValueError(f"seed must be < 2**31, got {seed}")
    if backend is not None and backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)} or None, got {backend!r}")
    code = stan_program(name, stan_dir)
    json_data = check_data(name, data, stan_dir=stan_dir)

    if backend is None:
        backend = available_backend()
    elif backend == "cmdstanpy" and available_backend() != "cmdstanpy":
        raise RuntimeError("backend='cmdstanpy' needs cmdstanpy and a CmdStan install; use backend='pystan'")
    elif backend == "pystan" and not _pystan_importable():
        raise RuntimeError(_INSTALL_HINT)

    if file is not None:
        key = _fit_key(code, json_data, backend, chains, warmup, draws, seed)
        stored = _read_fit(Path(file), key)
        if stored is not None:
            return stored
    if backend == "pystan":
        buffer = None if show_progress else io.StringIO()
        try:
            with _captured(buffer):
                raw, compile_seconds, seconds = _fit_pystan(code, json_data, chains, warmup, draws, seed)
        except RuntimeError as error:
            # e.g. "Initialization failed.": the reasons are among the messages we kept quiet
            output = buffer.getvalue() if buffer is not None else ""
            start = output.find("Messages received during sampling")
            if start >= 0:
                raise RuntimeError(f"{error}\n{output[start:][-4000:].strip()}") from error
            raise
    else:
        raw, compile_seconds, seconds = _fit_cmdstanpy(
            name, code, json_data, chains, warmup, draws, seed, show_progress
        )
    frame = normalize_draws(raw, backend=backend, chains=chains)
    max_rhat, min_ess, divergences = _diagnostics(frame)
    fit = StanFit(
        name=name,
        draws=frame,
        seconds=seconds,
        compile_seconds=compile_seconds,
        backend=backend,
        max_rhat=max_rhat,
        min_ess_bulk=min_ess,
        divergences=divergences,
    )
    if file is not None:
        _write_fit(Path(file), key, fit)
    return fit


def _fit_key(code: str, json_data: Mapping[str, Any], backend: str, *settings: int) -> str:
    """Digest of everything that determines a seeded fit's draws."""
    text = json.dumps({"code": code, "data": json_data, "backend": backend, "settings": settings}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _write_fit(path: Path, key: str, fit: StanFit) -> None:
    """``fit`` into one ``.npz`` (no pickles): the draws' values and names plus a JSON header."""
    header = {field.name: getattr(fit, field.name) for field in dataclasses.fields(fit)
              if field.name not in ("draws", "from_file")}
    header.update(key=key, integer_columns=[c for c in fit.draws.columns
                                            if pd.api.types.is_integer_dtype(fit.draws[c])])
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    with open(partial, "wb") as handle:  # np.savez would append .npz to a path without it
        np.savez(handle, values=fit.draws.to_numpy(dtype=np.float64),
                 columns=np.array(fit.draws.columns, dtype=str), header=np.array(json.dumps(header, default=_plain)))
    os.replace(partial, path)  # a fit interrupted while writing never leaves half a file


def _plain(value: Any) -> Any:
    """numpy scalars (``np.int64`` divergences) for JSON."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot store {type(value).__name__} in a fit's header")


def _read_fit(path: Path, key: str) -> StanFit | None:
    """The fit stored in ``path`` if it was made with ``key``; None when absent, stale or unreadable."""
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as stored:
            header = json.loads(str(stored["header"]))
            values, columns = stored["values"], [str(c) for c in stored["columns"]]
        if header.pop("key") != key:
            return None
        frame = pd.DataFrame(values, columns=columns)
        integers = header.pop("integer_columns")
        frame[integers] = frame[integers].astype(np.int64)
        return StanFit(draws=frame, from_file=True, **header)
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as error:
        warnings.warn(f"could not read the Stan fit in {path} ({error!r}); sampling again", stacklevel=3)
        return None

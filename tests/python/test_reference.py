"""Stan reference fits: diagnostics, comparison, data checks and draw parsing; one real (slow) fit."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from amortbayes.data import load_sleepstudy
from amortbayes.reference import (
    HIERARCHICAL_LINEAR_PRIORS,
    StanFit,
    available_backend,
    check_data,
    compare_draws,
    data_names,
    ess_bulk,
    fit_stan,
    hierarchical_linear_data,
    known_programs,
    normalize_draws,
    padded_groups,
    rhat,
    split_chains,
    stan_program,
)
from amortbayes.reference.stan import _diagnostics, _outside_event_loop, _retry_races

FIXTURES = Path(__file__).parent / "fixtures"
PROGRAMS = ["ar1_multilevel", "ddm_shared_bias", "ddm_subject_bias", "hierarchical_linear"]  # multilevel, with log_lik_group
FLAT_PROGRAMS = ["conjugate_gaussian_powered"]  # the sensitivity benchmark's power-scaled reference


def sleepstudy_data() -> dict:
    return hierarchical_linear_data(load_sleepstudy(), group="Subject", x="Days", y="Reaction")


# ----------------------------------------------------------------------------- convergence


def ar1_chains(rho: float, chains: int, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = rng.normal(size=(chains, n))
    x = np.empty_like(noise)
    x[:, 0] = noise[:, 0] / np.sqrt(1 - rho**2)
    for t in range(1, n):
        x[:, t] = rho * x[:, t - 1] + noise[:, t]
    return x


def test_rhat_and_ess_of_iid_draws():
    x = np.random.default_rng(0).normal(size=(4, 1000))
    assert abs(rhat(x) - 1.0) < 0.01
    assert 3400 < ess_bulk(x) < 4600


def test_rhat_flags_chains_with_different_means():
    x = np.random.default_rng(1).normal(size=(4, 1000)) + np.array([0.0, 1.0, 2.0, 3.0])[:, None]
    assert rhat(x) > 1.4
    assert ess_bulk(x) < 50
    one_off = np.random.default_rng(1).normal(size=(4, 1000)) + np.array([0.0, 0.0, 0.0, 3.0])[:, None]
    assert rhat(one_off) > 1.3


def test_rhat_flags_a_trend_within_chains_via_splitting():
    # every chain drifts the same way: the chain means agree, only split-R-hat sees it
    x = np.random.default_rng(2).normal(size=(4, 1000)) + np.linspace(0, 4, 1000)[None, :]
    assert rhat(x) > 1.2


def test_rhat_flags_different_scales_via_folding():
    # same location, different spread: bulk R-hat misses it, the folded (tail) one does not
    rng = np.random.default_rng(3)
    x = rng.normal(size=(4, 2000)) * np.array([1.0, 1.0, 1.0, 4.0])[:, None]
    assert rhat(x) > 1.05


def test_ess_of_ar1_chains_matches_theory():
    rho = 0.9
    x = ar1_chains(rho, chains=4, n=20000, seed=4)
    expected = x.size * (1 - rho) / (1 + rho)
    assert ess_bulk(x) == pytest.approx(expected, rel=0.15)
    assert abs(rhat(x) - 1.0) < 0.01


def test_split_chains_and_degenerate_input():
    x = np.arange(2 * 9.0).reshape(2, 9)
    split = split_chains(x)
    assert split.shape == (4, 4)
    np.testing.assert_array_equal(split[0], [0, 1, 2, 3])
    np.testing.assert_array_equal(split[2], [5, 6, 7, 8])  # middle draw 4 dropped
    assert np.isnan(rhat(np.ones((4, 100))))
    assert np.isnan(ess_bulk(np.ones((4, 100))))
    with pytest.raises(ValueError, match="at least 4 draws"):
        rhat(np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"shape \(chains, draws\)"):
        rhat(np.zeros((2, 3, 4)))


# ----------------------------------------------------------------------------- compare_draws


COMPARE_COLUMNS = [
    "mean_amortized", "mean_reference", "sd_amortized", "sd_reference",
    "mean_diff_in_sd", "sd_ratio", "overlap_50", "overlap_95",
]


def reference_draws() -> pd.DataFrame:
    rng = np.random.default_rng(5)
    return pd.DataFrame(
        {
            "chain": np.repeat([1, 2], 1000),
            "draw": np.tile(np.arange(1, 1001), 2),
            "lp__": rng.normal(size=2000),
            "mu": rng.normal(1.0, 2.0, size=2000),
            "r[1]": rng.gamma(2.0, size=2000),
        }
    )


def test_compare_identical_draws():
    ref = reference_draws()
    out = compare_draws(ref, ref)
    assert list(out.index) == ["mu", "r[1]"]  # chain, draw and lp__ are not parameters
    assert list(out.columns) == COMPARE_COLUMNS
    np.testing.assert_array_equal(out["mean_diff_in_sd"], [0.0, 0.0])
    np.testing.assert_array_equal(out["sd_ratio"], [1.0, 1.0])
    np.testing.assert_array_equal(out["overlap_50"], [1.0, 1.0])
    np.testing.assert_array_equal(out["overlap_95"], [1.0, 1.0])
    np.testing.assert_array_equal(out["mean_amortized"], out["mean_reference"])


def test_compare_shifted_draws():
    ref = reference_draws()
    r = ref["mu"].to_numpy()
    sd = r.std(ddof=1)
    amortized = pd.DataFrame({"mu": r + 0.5 * sd, "other": 0.0})
    row = compare_draws(amortized, ref).loc["mu"]
    assert row["mean_diff_in_sd"] == pytest.approx(0.5, rel=1e-12)
    assert row["sd_ratio"] == pytest.approx(1.0, rel=1e-12)
    for mass, column in ((0.5, "overlap_50"), (0.95, "overlap_95")):
        lo, hi = np.quantile(r, [(1 - mass) / 2, (1 + mass) / 2])
        width, shift = hi - lo, 0.5 * sd
        assert row[column] == pytest.approx((width - shift) / (width + shift), rel=1e-9)
    # shifted far beyond the interval: no overlap
    far = compare_draws(pd.DataFrame({"mu": r + 10 * sd}), ref)
    assert far.loc["mu", "overlap_95"] == 0.0
    assert far.loc["mu", "mean_diff_in_sd"] == pytest.approx(10.0, rel=1e-12)


def test_compare_widened_draws():
    ref = reference_draws()
    r = ref["mu"].to_numpy()
    amortized = pd.DataFrame({"mu": r.mean() + 2.0 * (r - r.mean())})
    row = compare_draws(amortized, ref).loc["mu"]
    assert row["sd_ratio"] == pytest.approx(2.0, rel=1e-12)
    assert row["mean_diff_in_sd"] == pytest.approx(0.0, abs=1e-12)
    # the reference interval sits inside one twice as wide: intersection / union = 1 / 2
    assert row["overlap_50"] == pytest.approx(0.5, rel=1e-9)
    assert row["overlap_95"] == pytest.approx(0.5, rel=1e-9)


def test_compare_errors():
    ref = reference_draws()
    with pytest.raises(ValueError, match="amortized draws have no column"):
        compare_draws(pd.DataFrame({"mu": [0.0, 1.0]}), ref, parameters=["mu", "r[1]"])
    with pytest.raises(ValueError, match="share no parameter"):
        compare_draws(pd.DataFrame({"nu": [0.0, 1.0]}), ref)
    with pytest.raises(ValueError, match="NaN or inf"):
        compare_draws(pd.DataFrame({"mu": [0.0, np.nan]}), ref)
    with pytest.raises(TypeError, match="DataFrame"):
        compare_draws(ref["mu"].to_numpy(), ref)


# ----------------------------------------------------------------------------- programs and data


def test_known_programs_and_data_blocks():
    assert known_programs() == sorted(PROGRAMS + FLAT_PROGRAMS)
    assert data_names(stan_program("conjugate_gaussian_powered")) == [
        "N", "y", "prior_mean", "prior_sd", "noise_sd", "alpha", "beta", "student", "nu"]
    assert data_names(stan_program("hierarchical_linear")) == [
        "J", "N_max", "N", "x", "y", *HIERARCHICAL_LINEAR_PRIORS,
    ]
    assert data_names(stan_program("ar1_multilevel")) == ["J", "T_max", "T", "y", "ylag", "u", "w"]
    for name in ("ddm_shared_bias", "ddm_subject_bias"):
        assert data_names(stan_program(name)) == ["J", "N_max", "N", "rt", "choice"]


def test_programs_use_modern_syntax():
    for name in PROGRAMS:
        code = stan_program(name)
        assert "<-" not in code and "increment_log_prob" not in code
        assert "log_lik_group" in code


def test_data_names_skips_comments_and_transformed_data():
    code = """
    // data { int hidden; }
    functions { real f(real x) { return x; } }
    data {
      int<lower=0> K;  /* real not_me; */
      array[K, 2] int<lower=0, upper=1> choice;
      vector<lower=-1, upper=fmin(1, 2)>[K] v;
      tuple(real, int) t;
    }
    transformed data { real extra = 1; }
    """
    assert data_names(code) == ["K", "choice", "v", "t"]


def test_unknown_program_lists_known_ones():
    with pytest.raises(ValueError, match="unknown Stan program 'nope'.*hierarchical_linear"):
        stan_program("nope")


def test_stan_dir_argument_and_environment(tmp_path, monkeypatch):
    (tmp_path / "tiny.stan").write_text("data { int N; } parameters { real mu; } model { mu ~ normal(0, 1); }")
    assert stan_program("tiny", stan_dir=tmp_path).startswith("data")
    monkeypatch.setenv("AMORTBAYES_STAN_DIR", str(tmp_path))
    assert known_programs() == ["tiny"]
    monkeypatch.setenv("AMORTBAYES_STAN_DIR", str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="AMORTBAYES_STAN_DIR"):
        known_programs()


def test_missing_data_is_reported_before_any_backend_runs(monkeypatch):
    # both backends made unimportable: the data error must come first, with the names
    monkeypatch.setitem(sys.modules, "stan", None)
    monkeypatch.setitem(sys.modules, "cmdstanpy", None)
    data = sleepstudy_data()
    del data["y"], data["lkj_eta"]
    message = r"missing 2 variable\(s\): y, lkj_eta"
    with pytest.raises(ValueError, match=message):
        check_data("hierarchical_linear", data)
    with pytest.raises(ValueError, match=message):
        fit_stan("hierarchical_linear", data)
    # complete data gets past validation and only then fails for lack of a backend
    with pytest.raises(RuntimeError, match=r"pip install amortbayes\[stan\]"):
        fit_stan("hierarchical_linear", sleepstudy_data())
    with pytest.raises(RuntimeError, match=r"pip install amortbayes\[stan\]"):
        available_backend()


def test_argument_validation():
    data = sleepstudy_data()
    with pytest.raises(ValueError, match="chains must be >= 1"):
        fit_stan("hierarchical_linear", data, chains=0)
    with pytest.raises(TypeError, match="draws must be an integer"):
        fit_stan("hierarchical_linear", data, draws=10.5)
    with pytest.raises(ValueError, match="backend must be one of"):
        fit_stan("hierarchical_linear", data, backend="jags")
    with pytest.raises(TypeError, match="dict of named values"):
        fit_stan("hierarchical_linear", [1, 2])


def test_check_data_converts_to_json_values():
    data = sleepstudy_data()
    data["N"] = np.asarray(data["N"], dtype=float)  # integer-valued floats are fine for int
    data["extra"] = "ignored"
    out = check_data("hierarchical_linear", data)
    assert "extra" not in out
    assert out["J"] == 18 and isinstance(out["J"], int)
    assert out["N"] == [10] * 18 and all(isinstance(n, int) for n in out["N"])
    assert len(out["y"]) == 18 and out["y"][0][0] == 249.56
    data["N"][0] = 9.5
    with pytest.raises(ValueError, match="declared int"):
        check_data("hierarchical_linear", data)


def test_padded_groups_ragged():
    frame = pd.DataFrame({"g": pd.Categorical(["b", "a", "b", "b"], categories=["z", "b", "a"]),
                          "rt": [0.5, 0.6, 0.7, 0.8], "choice": [1, 0, 0, 1]})
    out = padded_groups(frame, "g", ["rt", "choice"])
    assert (out["J"], out["N_max"], out["N"]) == (2, 3, [3, 1])  # unused category "z" dropped
    np.testing.assert_array_equal(out["rt"], [[0.5, 0.7, 0.8], [0.6, 0.0, 0.0]])
    assert check_data("ddm_shared_bias", out)["choice"] == [[1, 0, 1], [0, 0, 0]]


def test_sleepstudy_layout():
    data = sleepstudy_data()
    frame = load_sleepstudy()
    assert (data["J"], data["N_max"]) == (18, 10)
    first = frame[frame["Subject"] == "308"]
    np.testing.assert_array_equal(data["x"][0], first["Days"].to_numpy())
    np.testing.assert_array_equal(data["y"][0], first["Reaction"].to_numpy())
    with pytest.raises(ValueError, match="unknown prior setting"):
        hierarchical_linear_data(frame, group="Subject", x="Days", y="Reaction", sd_b=1.0)


# ----------------------------------------------------------------------------- draws parsing


def canned_pystan() -> pd.DataFrame:
    # fit.to_frame() of a real pystan 3.10 fit (2 chains x 3 draws, 2 sleepstudy subjects)
    return pd.read_csv(FIXTURES / "pystan_hierarchical_linear_to_frame.csv", index_col="draws")


def canned_cmdstanpy() -> pd.DataFrame:
    # the same draws laid out as cmdstanpy's fit.draws_pd()
    return pd.read_csv(FIXTURES / "cmdstanpy_hierarchical_linear_draws_pd.csv")


def test_normalize_pystan_draws():
    raw = canned_pystan()
    assert "r_Intercept.1" in raw.columns and "z.1.2" in raw.columns
    out = normalize_draws(raw, backend="pystan", chains=2)
    assert list(out.columns[:3]) == ["chain", "draw", "lp__"]
    for name in ("r_Intercept[1]", "r_x[2]", "z[1,2]", "L_Omega[2,1]", "log_lik_group[2]",
                 "b_Intercept", "cor_Intercept_x", "divergent__"):
        assert name in out.columns
    assert not any("." in c for c in out.columns)
    assert out["chain"].tolist() == [1, 1, 1, 2, 2, 2]
    assert out["draw"].tolist() == [1, 2, 3, 1, 2, 3]
    # pystan interleaves chains: its row 1 is draw 1 of chain 2, its row 4 draw 3 of chain 1
    np.testing.assert_array_equal(out.loc[3, "r_Intercept[2]"], raw.iloc[1]["r_Intercept.2"])
    np.testing.assert_array_equal(out.loc[2, "z[1,2]"], raw.iloc[4]["z.1.2"])
    # the transformed parameter is the Cholesky factor's entry, as the program says
    np.testing.assert_allclose(out["cor_Intercept_x"], out["L_Omega[2,1]"])
    with pytest.raises(ValueError, match="chains"):
        normalize_draws(raw, backend="pystan")
    with pytest.raises(ValueError, match="do not split into 4 chains"):
        normalize_draws(raw, backend="pystan", chains=4)


def test_normalize_cmdstanpy_draws_matches_pystan():
    raw = canned_cmdstanpy()
    assert "r_Intercept[1]" in raw.columns and "chain__" in raw.columns
    out = normalize_draws(raw, backend="cmdstanpy")
    assert "chain__" not in out.columns and "draw__" not in out.columns
    pd.testing.assert_frame_equal(out, normalize_draws(canned_pystan(), backend="pystan", chains=2))
    with pytest.raises(ValueError, match="backend must be one of"):
        normalize_draws(raw, backend="rstan")


def test_stanfit_from_canned_draws():
    draws = normalize_draws(canned_pystan(), backend="pystan", chains=2)
    max_rhat, min_ess, divergences = _diagnostics(draws)
    assert np.isnan(max_rhat) and np.isnan(min_ess)  # 3 draws a chain are too few
    assert divergences == 0
    fit = StanFit("hierarchical_linear", draws, 1.0, 0.0, "pystan", max_rhat, min_ess, divergences)
    assert "lp__" not in fit.parameters and "chain" not in fit.parameters
    summary = fit.summary(["b_Intercept", "sigma"])
    assert summary.loc["b_Intercept", "mean"] == pytest.approx(draws["b_Intercept"].mean())
    assert list(summary.columns) == ["mean", "sd", "q2.5", "q50", "q97.5", "rhat", "ess_bulk"]
    with pytest.raises(ValueError, match="unknown parameter"):
        fit.summary(["b_Slope"])
    # diagnostics on well-mixed synthetic chains
    rng = np.random.default_rng(6)
    synthetic = pd.DataFrame({"chain": np.repeat([1, 2, 3, 4], 500), "draw": np.tile(np.arange(1, 501), 4),
                              "mu": rng.normal(size=2000), "one": 1.0, "divergent__": 0.0})
    max_rhat, min_ess, _ = _diagnostics(synthetic)
    assert max_rhat < 1.01 and min_ess > 1000  # the constant column is skipped


def test_cmdstanpy_backend_with_a_stand_in_module(tmp_path, monkeypatch):
    # no CmdStan here: a stand-in cmdstanpy checks the calls, the compile cache and the parsing
    import types

    calls: dict = {}

    class FakeFit:
        def draws_pd(self) -> pd.DataFrame:
            return canned_cmdstanpy()

    class FakeModel:
        def __init__(self, stan_file: str):
            calls.setdefault("stan_files", []).append(stan_file)

        def sample(self, **kwargs) -> FakeFit:
            calls["sample"] = kwargs
            return FakeFit()

    (tmp_path / "cmdstan").mkdir()
    fake = types.SimpleNamespace(cmdstan_path=lambda: str(tmp_path / "cmdstan"), CmdStanModel=FakeModel)
    monkeypatch.setitem(sys.modules, "cmdstanpy", fake)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert available_backend() == "cmdstanpy"
    fit = fit_stan("hierarchical_linear", sleepstudy_data(), chains=2, warmup=10, draws=3, seed=7)
    assert fit.backend == "cmdstanpy"
    kwargs = calls["sample"]
    assert (kwargs["chains"], kwargs["iter_warmup"], kwargs["iter_sampling"], kwargs["seed"]) == (2, 10, 3, 7)
    assert kwargs["data"]["N"] == [10] * 18
    stan_file = Path(calls["stan_files"][0])
    assert stan_file.parent.parent == tmp_path / "cache" / "amortbayes" / "stan"
    assert stan_file.read_text() == stan_program("hierarchical_linear")
    fit_stan("hierarchical_linear", sleepstudy_data(), chains=2, warmup=10, draws=3)
    assert calls["stan_files"][1] == str(stan_file)  # same program -> same cache folder
    pd.testing.assert_frame_equal(fit.draws, normalize_draws(canned_pystan(), backend="pystan", chains=2))


def test_fit_file_is_read_back_until_program_data_or_settings_change(tmp_path, monkeypatch):
    import amortbayes.reference.stan as stan_module

    sampled = []

    def stand_in(name, code, data, chains, warmup, draws, seed, progress):
        sampled.append((data["y"][0][0], draws, seed))
        return canned_cmdstanpy(), 0.5, 2.0

    monkeypatch.setattr(stan_module, "_fit_cmdstanpy", stand_in)
    monkeypatch.setattr(stan_module, "available_backend", lambda: "cmdstanpy")
    path = tmp_path / "fits" / "sleep.npz"
    data = sleepstudy_data()
    first = fit_stan("hierarchical_linear", data, chains=2, warmup=10, draws=3, seed=7, file=path)
    assert len(sampled) == 1 and not first.from_file and path.exists()
    again = fit_stan("hierarchical_linear", data, chains=2, warmup=10, draws=3, seed=7, file=path)
    assert len(sampled) == 1 and again.from_file
    pd.testing.assert_frame_equal(again.draws, first.draws)  # chain and draw stay integers
    assert (again.seconds, again.backend, again.divergences) == (first.seconds, first.backend, first.divergences)
    assert np.isnan(again.max_rhat) and np.isnan(first.max_rhat)
    changed_y = {**data, "y": data["y"] + 1.0}
    for kwargs, what in ((dict(data=data, seed=8), "seed"), (dict(data=data, draws=4), "draws"),
                         (dict(data=changed_y), "data")):
        call = {"seed": 7, "draws": 3, **kwargs}
        fit = fit_stan("hierarchical_linear", chains=2, warmup=10, file=path, **call)
        assert not fit.from_file, what
        assert fit_stan("hierarchical_linear", chains=2, warmup=10, file=path, **call).from_file, what
    assert len(sampled) == 4
    path.write_bytes(b"not a fit")
    with pytest.warns(UserWarning, match="could not read the Stan fit"):
        assert not fit_stan("hierarchical_linear", data, chains=2, warmup=10, draws=3, seed=7, file=path).from_file
    assert len(sampled) == 5 and not list(path.parent.glob("*.partial"))
    with open(path, "wb") as handle:  # a readable file that is not one of ours
        np.savez(handle, values=np.zeros((1, 1)), columns=np.array(["x"]), header=np.array('{"seconds": 1}'))
    with pytest.warns(UserWarning, match="could not read the Stan fit"):
        assert not fit_stan("hierarchical_linear", data, chains=2, warmup=10, draws=3, seed=7, file=path).from_file
    assert fit_stan("hierarchical_linear", data, chains=2, warmup=10, draws=3, seed=7, file=path).from_file


def test_pystan_calls_work_inside_a_running_event_loop():
    def uses_asyncio_run() -> int:  # what pystan does internally
        async def answer() -> int:
            return 42
        return asyncio.run(answer())

    async def notebook_cell() -> int:
        return _outside_event_loop(uses_asyncio_run)

    assert asyncio.run(notebook_cell()) == 42
    assert _outside_event_loop(uses_asyncio_run) == 42


def test_only_httpstans_races_are_retried_and_not_forever():
    progress = RuntimeError("Exception during call to services function: `IndexError('pop from empty list')`")
    vanished = RuntimeError("Fit `models/753q7alj/fits/a23hsttk` not found.")  # another process's cleanup
    calls = []

    def always(err):
        def call():
            calls.append(1)
            raise err
        return call

    for race in (progress, vanished):
        with pytest.raises(RuntimeError, match=re.escape(str(race))):
            _retry_races(always(race), attempts=3)
        assert len(calls) == 3
        calls.clear()
    with pytest.raises(RuntimeError, match="divergent"):
        _retry_races(always(RuntimeError("divergent model")), attempts=3)
    assert len(calls) == 1


# ----------------------------------------------------------------------------- real Stan run


@pytest.mark.slow
def test_sleepstudy_fit_with_pystan():
    pytest.importorskip("stan")
    data = sleepstudy_data()
    fit = fit_stan("hierarchical_linear", data, backend="pystan", seed=1)
    assert fit.backend == "pystan"
    assert fit.draws.shape[0] == 4000
    assert fit.max_rhat < 1.01
    assert fit.min_ess_bulk > 400
    assert fit.divergences is not None and fit.divergences < 10
    summary = fit.summary()
    # lme4::lmer(Reaction ~ Days + (Days | Subject), sleepstudy): 251.405, 10.467
    for name, lme4 in (("b_Intercept", 251.405), ("b_x", 10.467)):
        mean, sd = summary.loc[name, ["mean", "sd"]]
        assert abs(mean - lme4) < 2 * sd, (name, mean, sd)
    assert summary.loc["b_Intercept", "sd"] == pytest.approx(7.0, rel=0.3)
    assert summary.loc["sigma", "mean"] == pytest.approx(25.9, rel=0.1)
    assert {f"r_Intercept[{j}]" for j in range(1, 19)} <= set(fit.parameters)
    assert {f"log_lik_group[{j}]" for j in range(1, 19)} <= set(fit.parameters)
    assert np.all(fit.draws[[f"log_lik_group[{j}]" for j in range(1, 19)]] < 0)
    # the compiled model is cached, the run is not: same seed -> same draws, sampled again;
    # and it also works from inside a running event loop (as in Jupyter)

    async def notebook_cell() -> StanFit:
        return fit_stan("hierarchical_linear", data, backend="pystan", seed=1)

    again = asyncio.run(notebook_cell())
    assert again.compile_seconds < 20
    assert again.seconds > 1
    pd.testing.assert_frame_equal(again.draws, fit.draws)


@pytest.mark.parametrize("ids", [["c", "a", "c", "b", "a"], [10, 2, 10, 7, 2]])
def test_amortizer_and_stan_number_groups_alike(ids):
    # a plain (non-categorical) grouping column in order of appearance: the amortizer's group j
    # must hold the same rows as Stan's group j + 1, and label_groups must name them alike
    from amortbayes.models import HierarchicalLinear
    from amortbayes.reference import label_groups
    from amortbayes.simulation import group_levels, prepare_multilevel

    frame = pd.DataFrame({"g": ids, "x": [0.0, 1.0, 2.0, 3.0, 4.0], "y": [5.0, 6.0, 7.0, 8.0, 9.0]})
    packed = prepare_multilevel(frame, HierarchicalLinear().info, group="g", warn_outside=False)
    stan = padded_groups(frame, "g", ["x", "y"])
    levels = group_levels(frame["g"], drop_unused=True)
    assert list(packed.group_labels[0]) == [str(v) for v in levels] == [str(v) for v in sorted(set(ids))]
    for j in range(stan["J"]):
        n = stan["N"][j]
        np.testing.assert_array_equal(packed.x[0, j, :n, 0].numpy(), stan["x"][j, :n])
        assert packed.mask[0, j].sum() == n
    draws = pd.DataFrame({f"r_x[{k}]": [float(k)] for k in (1, 2, 3)} | {"sigma": [1.0]})
    named = label_groups(draws, ["r_x"], levels)
    assert {c: named[c].item() for c in named.columns} == {
        f"r_x[{lab}]": float(k + 1) for k, lab in enumerate(levels)} | {"sigma": 1.0}
    with pytest.raises(ValueError, match="r_Intercept"):
        label_groups(draws, ["r_Intercept"], levels)


def test_group_levels_keeps_unused_categories_unless_asked():
    from amortbayes.simulation import group_levels

    g = pd.Series(pd.Categorical(["b", "a"], categories=["z", "b", "a"]))
    assert group_levels(g) == ["z", "b", "a"]
    assert group_levels(g, drop_unused=True) == ["b", "a"]

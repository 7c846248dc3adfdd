"""The benchmark scripts run end to end on a few training steps (no Stan) and print one JSON object.

Their numbers are meaningless at this budget; what is checked is that every script parses its
arguments, trains, evaluates and reports the keys the README quotes.  Stan comparisons are
left to the real runs (minutes of sampling).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_benchmark(script: str, *args: str, tmp_path: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "python"), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--threads", "1", *args],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


SCRIPTS = sorted(p.name for p in (ROOT / "benchmarks").glob("*.py") if not p.name.startswith("_"))
# every script's --help through its own __main__, in one interpreter (one torch import, not one per script):
# python -c HELP_ALL BENCHMARK_DIR SCRIPT...
HELP_ALL = """
import contextlib, io, json, runpy, sys
folder, scripts = sys.argv[1], sys.argv[2:]
out = {}
for script in scripts:
    sys.argv = [script, "--help"]
    buffer, code = io.StringIO(), None
    try:
        with contextlib.redirect_stdout(buffer):
            runpy.run_path(folder + "/" + script, run_name="__main__")
    except SystemExit as stop:
        code = stop.code
    out[script] = {"code": code, "help": buffer.getvalue()}
print(json.dumps(out))
"""


def test_every_benchmark_explains_itself(tmp_path):
    bench = ROOT / "benchmarks"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "python"), str(bench)])}
    done = subprocess.run([sys.executable, "-c", HELP_ALL, str(bench), *SCRIPTS], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    helps = json.loads(done.stdout.strip().splitlines()[-1])
    assert sorted(helps) == SCRIPTS
    for script, entry in helps.items():
        assert entry["code"] in (0, None), (script, entry)
        assert "--device" in entry["help"], script


def test_multilevel_benchmark_runs(tmp_path):
    out = run_benchmark("multilevel.py", "--no-stan", "--epochs", "1", "--iterations", "3", "--prior-sims", "1",
                        "--out", str(tmp_path / "out"), tmp_path=tmp_path)
    assert out["train_steps"] == 3
    assert out["j100_1000_draws_ms"] > 0 and out["logo_all_18_groups_ms"] > 0
    assert out["raw_vs_importance_over_prior"]["data_sets"] == 1


def test_ddm_benchmark_runs_and_reuses_its_training(tmp_path):
    args = ("--no-stan", "--epochs", "1", "--iterations", "2", "--proposals", "100", "--out", str(tmp_path / "out"))
    first = run_benchmark("ddm.py", *args, "--variants", "shared,subject", tmp_path=tmp_path)
    for bias in ("shared", "subject"):
        entry = first[f"ddm_{bias}_bias"]
        assert entry["train_simulations"] == 2 * 32
        assert entry["tau_draws_above_fastest_response"]["worst_participant"] == 0  # bounded support, any weights
        assert (tmp_path / "out" / f"amortizer_{bias}").exists()
    assert "logo_elpd_diff_se" in first
    again = run_benchmark("ddm.py", *args, "--variants", "shared", tmp_path=tmp_path)  # finished: no new training
    assert again["ddm_shared_bias"]["train_seconds"] == first["ddm_shared_bias"]["train_seconds"]


def test_ar1_benchmark_runs_and_reuses_its_training(tmp_path):
    args = ("--no-stan", "--epochs", "1", "--iterations", "3", "--proposals", "100", "--importance", "4",
            "--rounds", "2", "--out", str(tmp_path / "out"))
    first = run_benchmark("ar1.py", *args, tmp_path=tmp_path)
    assert first["train_simulations"] == 3 * 32
    assert first["logo_seconds_all_49_groups"] > 0 and first["amortized_fit_ms_4000_draws"] > 0
    assert 1 <= first["importance_sampled"]["rounds"] <= 2
    assert first["importance_sampled"]["proposals"] == 100 * first["importance_sampled"]["rounds"]
    again = run_benchmark("ar1.py", *args, "--reuse", tmp_path=tmp_path)
    assert again["train_seconds"] == first["train_seconds"] and again["final_val_loss"] == first["final_val_loss"]


def test_sbi_tasks_benchmark_trains_evaluates_and_reuses(tmp_path):
    out_file = tmp_path / "sbi.json"
    args = ("--no-sbi", "--tasks", "gaussian_mixture", "gaussian_linear", "--budgets", "200", "--observations", "2",
            "--draws", "300", "--out", str(out_file))
    first = run_benchmark("sbi_tasks.py", *args, tmp_path=tmp_path)
    assert first["methods"] == ["amortbayes"]
    for task in ("gaussian_mixture", "gaussian_linear"):
        entry = first["tasks"][task]["200"]["amortbayes"]
        assert len(entry["c2st"]) == 2 and all(0.0 <= c <= 1.0 for c in entry["c2st"])
        assert 1 <= entry["kept_epoch"] <= entry["epochs"] and entry["train_seconds"] > 0
    assert json.loads(out_file.read_text())["tasks"] == first["tasks"]
    again = run_benchmark("sbi_tasks.py", *args, "--reuse", tmp_path=tmp_path)  # nothing left to train
    assert again["tasks"] == first["tasks"]


def test_joint_benchmark_runs(tmp_path):
    out = run_benchmark("joint.py", "--epochs", "1", "--iterations", "3", "--data-sets", "2", "--loo-data-sets", "1",
                        "--draws", "200", "--out", str(tmp_path / "out"), tmp_path=tmp_path)
    assert out["train_steps"] == 3 and out["bayes_factor"]["data_sets"] == 2
    for name in ("unit", "wide"):
        assert {"log_ml_median_abs_error", "surrogate_log_density_mae_per_observation", "joint_sbc_passed",
                "seconds_per_data_set_evidence"} <= set(out[name])


def test_joint_ddm_benchmark_runs(tmp_path):
    from amortbayes.reference.rtdists import rtdists_available

    if not rtdists_available():
        pytest.skip("R's rtdists is not installed (scripts/setup-r.sh)")
    out = run_benchmark("joint_ddm.py", "--epochs", "1", "--iterations", "2", "--regions-sets", "2", "--participants", "1",
                        "--draws", "200", "--reference-draws", "10", "--sbc-sims", "20", "--out", str(tmp_path / "out"),
                        tmp_path=tmp_path)
    assert out["train_steps"] == 2 and len(out["speed_acc"]["participants"]) == 1
    row = out["speed_acc"]["participants"][0]
    assert row["trials"] == 96 and {"log_bf_full_vs_simple", "log_ml_full_numerical_likelihood"} <= set(row)
    assert "surrogate_log_density_mae_per_trial_by_region" in out["full"]


def test_sensitivity_benchmark_runs(tmp_path):
    out = run_benchmark("sensitivity.py", "--no-stan", "--epochs", "1", "--iterations", "3", "--data-sets", "2", "--c2st-sets", "2",
                        "--sweep-points", "5", "--out", str(tmp_path / "out"), tmp_path=tmp_path)
    assert out["train_steps"] == 3 and out["grid"]["data_sets"] == 2
    assert {"context_cost_ratio", "student_t_context_vs_separate_c2st", "powerscale_network_vs_reweighting",
            "sweep_seconds"} <= set(out)
    assert out["stan_refits_seconds"] is None and "no-stan" in out["stan_error"]
    check = run_benchmark("sensitivity_grid_check.py", "--folder", str(tmp_path / "out"), "--data-sets", "1",
                          "--held-out", "2", tmp_path=tmp_path)
    assert check["grid_base_data"]["cases"] == 25 and check["plain"]["cases"] == 2


def test_sensitivity_formula_benchmark_runs(tmp_path):
    out = run_benchmark("sensitivity_formula.py", "--budget", "30", "--draws", "300", "--out", str(tmp_path / "out"),
                        tmp_path=tmp_path)
    for case in ("sleepstudy", "cbpp"):
        assert out[case]["parameters"] >= 3 and "per_parameter_network_vs_reweighting" in out[case]
    assert out["sleepstudy"]["contexts"] == ["alpha", "beta"]


def test_ensemble_benchmark_runs(tmp_path):
    out = run_benchmark("ensemble.py", "--members", "2", "--epochs", "1", "--iterations", "5", "--sleep-budget", "10",
                        "--data-sets", "10",
                        "--out", str(tmp_path / "out"), tmp_path=tmp_path)
    assert out["conjugate"]["noise_sd_5"]["data_sets"] == 10 and "observed_percentile" in out["sleepstudy"]


def test_robust_benchmark_runs(tmp_path):
    out = run_benchmark("robust.py", "--epochs", "1", "--iterations", "3", "--sims", "3", "--eval-draws", "30",
                        "--timing-steps", "2", "--attack-steps", "3", "--betas", "0.1", "--models", "linear", "--out", str(tmp_path / "out"),
                        tmp_path=tmp_path)
    linear = out["linear"]
    assert [r["beta"] for r in linear["tradeoff"]] == [0.0, 0.1]
    assert {"kl_factor", "nll_rise", "coverage_error"} <= set(linear["tradeoff"][1])
    assert [r["eps"] for r in linear["report_plain"]] == [0.0, 0.1, 0.25, 0.5, 1.0, 2.0]
    assert linear["step_seconds"]["ratio"] > 0 and linear["exact_posterior_worst_kl"] > 0

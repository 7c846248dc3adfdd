"""The amortbayes command: help, model list, a tiny demo end to end, sampling from a saved amortizer."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd

from amortbayes.cli import main


def test_help_lists_the_commands():
    out = subprocess.run([sys.executable, "-m", "amortbayes.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for command in ("demo", "models", "sample"):
        assert command in out.stdout


def test_models_lists_builtins(capsys):
    assert main(["models"]) == 0
    text = capsys.readouterr().out
    assert "conjugate_gaussian" in text and "two_moons" in text and "hierarchical_linear" in text


def test_tiny_demo_writes_amortizer_and_plots_then_samples(tmp_path, capsys):
    out = tmp_path / "demo"
    code = main(["demo", "--out", str(out), "--epochs", "1", "--iterations", "5", "--batch-size", "16",
                 "--sbc-sims", "50", "--draws", "200", "--quiet"])
    assert code == 0
    text = capsys.readouterr().out
    assert "posterior for the shipped observation" in text and "simulation-based calibration" in text
    for name in ("loss", "sbc_ecdf", "sbc_histogram", "recovery", "coverage", "posterior"):
        assert (out / f"{name}.png").stat().st_size > 1000
    data = tmp_path / "data.csv"
    pd.DataFrame({"y1": [0.1, 0.2, 0.3], "y2": [1.0, 1.1, 0.9]}).to_csv(data, index=False)
    draws_csv = tmp_path / "draws.csv"
    assert main(["sample", str(out / "amortizer"), str(data), "--draws", "50", "--output", str(draws_csv)]) == 0
    assert list(pd.read_csv(draws_csv).columns) == ["mu[1]", "mu[2]"]


def test_cli_errors_are_messages_not_tracebacks(tmp_path, capsys):
    assert main(["demo", "--model", "nope", "--out", str(tmp_path)]) == 2
    assert "unknown model 'nope'" in capsys.readouterr().err

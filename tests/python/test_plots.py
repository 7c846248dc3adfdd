"""Every plot returns a Figure, writes a non-empty PNG, and shows what the diagnostic says."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure

from amortbayes import plots

torch.set_num_threads(1)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
POST_SD = (1.0 / 6.0) ** 0.5


def conjugate(scale: float = 1.0, n_sims: int = 120, n_draws: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """Truth (S, 2) and draws (S, L, 2) of theta ~ N(0,1), 5 obs x ~ N(theta, 1)."""
    rng = np.random.default_rng(0)
    theta = rng.normal(size=(n_sims, 2))
    mean = (theta[:, None, :] + rng.normal(size=(n_sims, 5, 2))).sum(axis=1) / 6.0
    draws = mean[:, None, :] + scale * POST_SD * rng.normal(size=(n_sims, n_draws, 2))
    return draws, theta


def assert_png(fig: object, path: Path) -> None:
    assert isinstance(fig, Figure)
    assert path.is_file() and path.stat().st_size > 1000
    assert path.read_bytes()[:8] == PNG_MAGIC


def test_plot_sbc_ecdf(tmp_path: Path) -> None:
    draws, truth = conjugate()
    fig = plots.plot_sbc_ecdf(draws, truth, parameter_names=["mu", "tau"], path=tmp_path / "ecdf.png")
    assert_png(fig, tmp_path / "ecdf.png")
    assert [ax.get_title() for ax in fig.axes] == ["mu", "tau"]
    # An over-confident posterior fails SBC: the panel title turns red.
    bad = plots.plot_sbc_ecdf(*conjugate(scale=0.4))
    assert all(ax.title.get_color() == "red" and "fails" in ax.get_title() for ax in bad.axes)


def test_plot_sbc_histogram(tmp_path: Path) -> None:
    draws, truth = conjugate()
    fig = plots.plot_sbc_histogram(draws, truth, bins=10, path=tmp_path / "hist.png")
    assert_png(fig, tmp_path / "hist.png")
    assert len(fig.axes) == 2
    with pytest.raises(ValueError, match="bins must be a positive integer"):
        plots.plot_sbc_histogram(draws, truth, bins=0)


def test_plot_recovery(tmp_path: Path) -> None:
    draws, truth = conjugate()
    fig = plots.plot_recovery(draws, truth, path=tmp_path / "recovery.png")
    assert_png(fig, tmp_path / "recovery.png")
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert any(t.startswith("$R^2$ = 0.8") for t in texts)  # theory: 1 - 1/6 = 0.83


def test_plot_z_score_contraction(tmp_path: Path) -> None:
    draws, truth = conjugate()
    fig = plots.plot_z_score_contraction(draws, truth, prior_sd=1.0, path=tmp_path / "z.png")
    assert_png(fig, tmp_path / "z.png")
    assert len(fig.axes) == 2


def test_plot_coverage(tmp_path: Path) -> None:
    draws, truth = conjugate()
    fig = plots.plot_coverage(draws, truth, parameter_names=["a", "b"], path=tmp_path / "coverage.png")
    assert_png(fig, tmp_path / "coverage.png")
    assert [ax.get_title() for ax in fig.axes] == ["a", "b"]


def test_plot_loss(tmp_path: Path) -> None:
    history = pd.DataFrame({"epoch": [1, 2, 3, 4], "train_loss": [3.0, 2.1, 1.7, 1.6], "val_loss": [3.2, 2.3, 1.9, 1.9]})
    fig = plots.plot_loss(history, path=tmp_path / "loss.png")
    assert_png(fig, tmp_path / "loss.png")
    assert len(fig.axes[0].lines) == 2
    train_only = plots.plot_loss(history.drop(columns="val_loss"))
    assert len(train_only.axes[0].lines) == 1
    with pytest.raises(ValueError, match=r"history is missing column\(s\) \['train_loss'\]"):
        plots.plot_loss(history.drop(columns="train_loss"))
    with pytest.raises(TypeError, match="history must be a pandas DataFrame"):
        plots.plot_loss(history.to_numpy())


def test_plot_posterior_pairs(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    draws = pd.DataFrame(rng.normal(size=(400, 3)), columns=["alpha", "beta", "sigma"])
    reference = rng.normal(size=(3000, 3))
    fig = plots.plot_posterior_pairs(draws, reference=reference, path=tmp_path / "pairs.png")
    assert_png(fig, tmp_path / "pairs.png")
    assert len(fig.axes) == 6  # diagonal + lower triangle
    assert fig.axes[-1].get_xlabel() == "sigma"  # names taken from the data frame
    single = plots.plot_posterior_pairs(rng.normal(size=200), parameter_names=["mu"])
    assert len(single.axes) == 1
    with pytest.raises(ValueError, match="draws has 3 parameters but reference has 2"):
        plots.plot_posterior_pairs(draws, reference=reference[:, :2])


def test_plot_group_intervals(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    cols = [f"{n}[{g}]" for n in ("r_Intercept", "r_x") for g in ("308", "309", "310")]
    draws = pd.DataFrame(rng.normal(size=(500, 6)), columns=["sigma"] + cols[1:]).assign(**{cols[0]: 0.0})
    draws = draws[["sigma"] + cols]
    pooling = {"r_x": (np.array([0.1, 0.2, 0.3]), np.array([0.12, 0.2, 0.31]))}
    fig = plots.plot_group_intervals(draws, draws[cols] + 0.2, path=tmp_path / "groups.png", pooling=pooling,
                                     labels=("amortized", "Stan"))
    assert_png(fig, tmp_path / "groups.png")
    assert [ax.get_title() for ax in fig.axes] == ["r_Intercept", "r_x  (pooling factor amortized / Stan)"]
    assert [t.get_text() for t in fig.axes[1].get_yticklabels()] == ["308", "309", "310"]
    assert "0.10 / 0.12" in [t.get_text() for t in fig.axes[1].texts]
    with pytest.raises(ValueError, match="reference draws lack the columns"):
        plots.plot_group_intervals(draws, draws[cols[:3]])
    with pytest.raises(ValueError, match="no group-level columns"):
        plots.plot_group_intervals(draws[["sigma"]])


def test_plot_logo(tmp_path: Path) -> None:
    a = pd.DataFrame({"group": ["1", "2", "3", "4"], "elpd": [-10.0, -40.0, -35.0, -22.0],
                      "q10": [-10.5, -41.0, -35.5, -22.4], "q90": [-9.8, -39.5, -34.9, -21.9]})
    b = a.assign(elpd=a["elpd"] - [1.0, 2.0, 0.0, 1.0])
    fig = plots.plot_logo(a, b, path=tmp_path / "logo.png", labels=("subject", "shared"))
    assert_png(fig, tmp_path / "logo.png")
    # differences 1, 2, 0, 1: sum 4, SE sqrt(4 * var) = sqrt(4 * 2/3)
    assert fig.axes[0].get_title() == f"elpd_diff (subject - shared) = 4.0 ± {np.sqrt(8 / 3):.1f}"
    assert len(fig.axes[0].collections) == 2  # one set of 80 % intervals per model
    assert plots.plot_logo(a[["group", "elpd"]]).axes[0].get_title() == "elpd_logo = -107.0"
    with pytest.raises(ValueError, match="same groups"):
        plots.plot_logo(a, b.iloc[::-1])
    with pytest.raises(TypeError, match="columns group, elpd"):
        plots.plot_logo(a.drop(columns="elpd"))


def test_plot_validates_like_the_diagnostics() -> None:
    draws, truth = conjugate()
    with pytest.raises(ValueError, match="parameter_names has 1 name"):
        plots.plot_recovery(draws, truth, parameter_names=["a"])
    with pytest.raises(ValueError, match="draws has 120 data sets .* truth has 100 rows"):
        plots.plot_sbc_ecdf(draws, truth[:100])

"""Formula fits on designs of thousands of rows: training designs, batch sizes, and accuracy on the full data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("formulae")

from amortbayes.data import load_contraception, load_exam, load_sleepstudy  # noqa: E402
from amortbayes.formula import amortize, parse_terms  # noqa: E402
from amortbayes.formula.fit import batch_size  # noqa: E402
from amortbayes.formula.model import FormulaModel  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures"


def _many_groups(groups: int, rows: tuple[int, int], seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = rng.integers(rows[0], rows[1] + 1, groups)
    g = np.repeat(np.arange(groups), n)
    x = rng.normal(size=len(g))
    return pd.DataFrame({"y": x + rng.normal(size=len(g)), "x": x, "b": rng.integers(0, 2, len(g)),
                         "g": [f"g{j}" for j in g]})


def test_batches_shrink_with_the_groups_or_rows_of_a_data_set():
    assert batch_size(FormulaModel(parse_terms("normexam ~ standLRT + (standLRT | school)", load_exam()))) == 32
    wide = FormulaModel(parse_terms("y ~ x + (x | g)", _many_groups(500, (2, 38))))
    assert wide.group_data == "moments" and wide.n_groups == (250, 750) and batch_size(wide) == 8
    rows = FormulaModel(parse_terms("use ~ age + urban + (urban | district)", load_contraception()), "bernoulli")
    assert rows.group_data == "rows" and batch_size(rows) == 17  # 1,934 rows in 60 districts


def test_simulated_data_sets_are_made_of_whole_user_groups():
    model = FormulaModel(parse_terms("use ~ age + urban + (urban | district)", load_contraception()), "bernoulli")
    import torch

    batch = model.simulate(16, torch.Generator().manual_seed(0))
    sizes = batch["mask"].sum(-1)[batch["group_mask"] > 0]
    assert set(sizes.int().tolist()) <= set(model._user_sizes.tolist())  # N_j as observed, 2 to 118 women
    moments = FormulaModel(parse_terms("normexam ~ standLRT + (standLRT | school)", load_exam()))
    b = moments.simulate(16, torch.Generator().manual_seed(1))
    assert b["x"].shape[2] == 1  # one row of moment sums per school
    n = b["x"][..., 0, 0][b["group_mask"] > 0]
    assert set(n.int().tolist()) <= set(moments._user_sizes.tolist())


@pytest.mark.slow
def test_the_full_school_design_is_fitted_as_stan_fits_it():
    # 4,059 pupils in 65 schools, trained on data sets of 32-97 whole schools: the posterior of the
    # full observed data set against Stan's (tests/python/fixtures/stan_exam_globals.csv, 4 x 1,000)
    stan = pd.read_csv(FIXTURES / "stan_exam_globals.csv", index_col=0)
    fit = amortize("normexam ~ standLRT + (standLRT | school)", load_exam(), budget=4000, progress=False)
    assert fit.posterior.diagnostics["pareto_k"] < 0.7
    d = fit.draws()[stan.index]
    diff = ((d.mean() - stan["mean"]) / stan["sd"]).abs()
    fixed = ["b_Intercept", "b_standLRT", "sigma"]
    assert diff[fixed].max() < 0.1, diff
    assert diff.drop(fixed).max() < 0.25, diff
    ratio = d.std() / stan["sd"]
    assert ratio.between(0.85, 1.15).all(), ratio


@pytest.mark.slow
def test_moments_and_rows_layouts_trained_alike_give_the_same_posterior():
    df = load_sleepstudy()
    fits = {layout: amortize("Reaction ~ Days + (Days | Subject)", df, budget=3000, progress=False, seed=3,
                             group_data=layout) for layout in ("moments", "rows")}
    assert fits["moments"].model.group_data == "moments" and fits["rows"].model.group_data == "rows"
    a, b = fits["moments"].draws(), fits["rows"].draws()
    names = list(fits["rows"].model.parameter_names)
    sd = b[names].std()
    # both importance-corrected to the exact posterior: the same within Monte Carlo error
    assert ((a[names].mean() - b[names].mean()) / sd).abs().max() < 0.1
    assert ((a[names].std() / sd) - 1).abs().max() < 0.1
    for f in fits.values():
        assert f.posterior.diagnostics["pareto_k"] < 0.7


def test_the_pooled_statistics_of_many_columns_are_the_groups_own_regressions():
    import torch

    from amortbayes.formula.fit import response_statistics
    from amortbayes.networks.summary import DeepSet

    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 500, 3, generator=g)
    y = 1.5 + 2 * x[..., 0] + 3 * x[..., 1] + 0.1 * torch.randn(1, 500, generator=g)
    stats = DeepSet(4, 4).statistics(torch.cat([x, y[..., None]], -1), torch.ones(1, 500))[0]
    picked = stats[list(response_statistics(4, 1))]
    # mean and log SD of y, log residual SD, slopes on x1..x3, intercept, log N
    np.testing.assert_allclose(picked[2:].numpy(), [np.log(0.1), 2.0, 3.0, 0.0, 1.5, np.log(500)], atol=0.05)
    assert response_statistics(3, 1) is None  # few columns: all statistics

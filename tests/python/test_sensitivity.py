"""Sensitivity contexts: declared spaces, power-scaled simulation, context-conditioned amortizers, priorsense's diagnostic."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from amortbayes import TrainSettings, fit, load, save
from amortbayes.amortizers import PosteriorAmortizer
from amortbayes.diagnostics.powerscale import cjs_distance, powerscale_diagnosis, powerscale_from_draws
from amortbayes.models import ConjugateGaussian, simulated_data_sets
from amortbayes.sensitivity import ContextSpace, choice, power_scale, powerscale_sensitivity, sensitivity_sweep

SPACE = {"alpha": power_scale("prior"), "beta": power_scale("likelihood"), "likelihood": choice("normal", "student_t")}


@pytest.fixture(scope="module")
def briefly_trained():
    model = ConjugateGaussian(dim=1, contexts=SPACE)
    amortizer = PosteriorAmortizer(model)
    fit(amortizer, model, settings=TrainSettings(epochs=2, iterations_per_epoch=50), progress=False, seed=0)
    return model, amortizer


def test_context_space_samples_in_range_encodes_and_checks_users_values():
    space = ContextSpace(SPACE)
    c = space.sample(5000, torch.Generator().manual_seed(0))
    assert 0.5 <= float(c["alpha"].min()) and float(c["alpha"].max()) <= 2.0
    assert abs(float(torch.log(c["alpha"]).mean())) < 0.03  # log-uniform around 1
    assert set(c["likelihood"].tolist()) == {0.0, 1.0}
    enc = space.encode(space.resolve({"alpha": 2.0, "likelihood": "student_t"}))
    assert torch.allclose(enc, torch.tensor([[np.log(2.0), 0.0, 0.0, 1.0]], dtype=torch.float32))
    with pytest.raises(ValueError, match="unknown context 'gamma'; known contexts: alpha, beta, likelihood"):
        space.resolve({"gamma": 1.0})
    with pytest.raises(ValueError, match=r"context alpha = 3 is outside the trained range \[0.5, 2\]"):
        space.resolve({"alpha": 3.0})
    with pytest.raises(ValueError, match="not one of the trained options"):
        space.resolve({"likelihood": "cauchy"})
    with pytest.raises(ValueError, match="must hold 1"):
        ContextSpace({"alpha": power_scale("prior", 1.5, 2.0)})


def test_power_scaled_prior_and_likelihood_are_simulated_exactly():
    model = ConjugateGaussian(dim=1, prior_sd=2.0, noise_sd=0.5, contexts=SPACE)
    g = torch.Generator().manual_seed(1)
    n = 200_000
    theta = model.sample_prior(n, g, context={"alpha": torch.full((n,), 0.5)})
    assert float(theta.std()) == pytest.approx(2.0 / np.sqrt(0.5), rel=0.01)
    for beta in (0.5, 2.0):
        ctx = {"beta": torch.tensor([beta]), "likelihood": torch.tensor([0.0])}
        x = model.simulate_data(torch.zeros(1, 1), n, g, context=ctx)[0, :, 0].numpy()
        assert x.std() == pytest.approx(0.5 / np.sqrt(beta), rel=0.01)
        # Student-t likelihood to the power beta: t with nu' = beta (nu + 1) - 1 and scale sigma sqrt(nu / nu')
        ctx["likelihood"] = torch.tensor([1.0])
        x = model.simulate_data(torch.zeros(1, 1), n, g, context=ctx)[0, :, 0].numpy()
        nu = beta * 4 - 1
        ref = stats.t(nu, scale=0.5 * np.sqrt(3 / nu))
        assert stats.kstest(x[:20000], ref.cdf).pvalue > 0.001
    with pytest.raises(ValueError, match="no proper density"):
        ConjugateGaussian(dim=1, student_df=1.0, contexts={"beta": power_scale("likelihood", 0.4, 2)})


def test_context_amortizer_trains_samples_saves_and_loads(briefly_trained, tmp_path):
    model, amortizer = briefly_trained
    assert model.simulate(4, torch.Generator().manual_seed(0))["context"].shape == (4, 4)
    x = np.random.default_rng(0).normal(size=(12, 1))
    d = amortizer.sample_array(x, 50, seed=3, context={"alpha": 0.7, "likelihood": "student_t"})
    loaded = load(save(amortizer, tmp_path / "ctx"))
    assert loaded.info.contexts == amortizer.info.contexts
    assert np.allclose(loaded.sample_array(x, 50, seed=3, context={"alpha": 0.7, "likelihood": "student_t"}), d)
    # the same base draws under every context of a sweep: a context repeated gives the same draws
    draws = amortizer.sample_contexts(x, [{"alpha": 0.8}, {"alpha": 1.2}, {"alpha": 0.8}], 100, seed=0)
    assert np.array_equal(draws[0], draws[2]) and not np.allclose(draws[0], draws[1])
    table = sensitivity_sweep(amortizer, x, {"alpha": [0.5, 1.0, 2.0], "likelihood": ["normal", "student_t"]}, n=200)
    assert len(table) == 6 and {"alpha", "likelihood", "variable", "mean", "sd", "q5", "q50", "q95"} <= set(table)
    with pytest.raises(ValueError, match=r"outside the trained range \[0.5, 2\]"):
        amortizer.sample_array(x, 10, context={"beta": 4.0})
    plain = PosteriorAmortizer(ConjugateGaussian(dim=1))
    with pytest.raises(ValueError, match="trained without contexts"):
        plain.sample_array(x, 10, context={"alpha": 1.0})


def test_cjs_distance_and_reweighted_sensitivity_equal_arviz_psens():
    az = pytest.importorskip("arviz")
    xr = pytest.importorskip("xarray")
    rng = np.random.default_rng(2)
    model = ConjugateGaussian(dim=1, prior_mean=1.0, prior_sd=0.5)
    for n in (3, 30):
        x = rng.normal(2.5, 1.0, size=(n, 1))
        mu, sd = model.posterior(x)
        draws = rng.normal(mu[0, 0], sd[0, 0], size=(4000, 1))
        lp, ll = model.log_prior(draws).numpy(), model.log_likelihood_rows(x, draws)
        ours = powerscale_from_draws(draws, lp, ll, ["mu"])
        idata = az.from_dict(posterior={"mu": draws[None, :, 0]}, log_likelihood={"y": ll[None]})
        idata.add_groups({"log_prior": xr.Dataset({"mu": xr.DataArray(lp[None], dims=("chain", "draw"))})})
        assert float(ours["prior"][0]) == pytest.approx(float(az.psens(idata, component="prior")["mu"]), rel=1e-6)
        assert float(ours["likelihood"][0]) == pytest.approx(float(az.psens(idata, component="likelihood")["mu"]),
                                                              rel=1e-6)
    assert float(cjs_distance(draws, np.ones(len(draws)))[0]) < 1e-6
    assert powerscale_diagnosis([0.2], [0.01])["diagnosis"][0] == "potential strong prior / weak likelihood"


def test_power_scaling_sensitivity_grows_with_the_prior_weight_and_conflict():
    """The reweighting diagnostic against known behaviour: an informative prior far from the data is flagged."""
    rng = np.random.default_rng(3)
    weak = ConjugateGaussian(dim=1, prior_sd=10.0)
    strong = ConjugateGaussian(dim=1, prior_mean=-2.0, prior_sd=0.3)
    x = rng.normal(1.0, 1.0, size=(20, 1))
    out = {}
    for name, model in (("weak", weak), ("strong", strong)):
        mu, sd = model.posterior(x)
        draws = rng.normal(mu[0, 0], sd[0, 0], size=(4000, 1))
        out[name] = powerscale_from_draws(draws, model.log_prior(draws).numpy(), model.log_likelihood_rows(x, draws))
    assert out["weak"]["diagnosis"][0] == "-" and out["weak"]["prior"][0] < 0.05
    assert out["strong"]["diagnosis"][0] == "potential prior-data conflict"


@pytest.mark.slow
def test_context_amortizer_matches_power_scaled_closed_forms_and_reweighting():
    """alpha, beta across [0.5, 2] against the closed form, and priorsense's diagnostic against reweighting.

    The issue's bar is every cell within 0.1 posterior SD (means) and 10 % (SDs).  Measured
    (benchmarks/sensitivity.py, 24,000 steps): median 0.038 SD and 2.4 %, 83 % of cells within
    both, the worst (alpha = beta = 2, data far from the prior mean) 0.35 SD: not met
    everywhere.  This test holds the level reached at 12,000 steps: medians inside the bar and
    three quarters of the cells within both.
    """
    model = ConjugateGaussian(dim=1, contexts={"alpha": power_scale("prior"), "beta": power_scale("likelihood")})
    amortizer = PosteriorAmortizer(model)
    fit(amortizer, model, settings=TrainSettings(epochs=30, iterations_per_epoch=400, learning_rate=5e-4),
        progress=False, seed=0)
    base = ConjugateGaussian(dim=1)
    grid = [{"alpha": a, "beta": b} for a in (0.5, 1.0, 2.0) for b in (0.5, 1.0, 2.0)]
    mean_err, sd_err, flags = [], [], 0
    for k, (_, x) in enumerate(simulated_data_sets(base, 8, seed=5)):
        draws = amortizer.sample_contexts(x, grid, 4000, seed=k)[..., 0]
        for c, d in zip(grid, draws):
            mu, sd = base.posterior(x, **c)
            mean_err.append(abs(d.mean() - mu[0, 0]) / sd[0, 0])
            sd_err.append(abs(d.std() / sd[0, 0] - 1))
        mu, sd = base.posterior(x)
        exact = np.random.default_rng(k).normal(mu[0, 0], sd[0, 0], size=(8000, 1))
        ref = powerscale_from_draws(exact, base.log_prior(exact).numpy(), base.log_likelihood_rows(x, exact))
        net = powerscale_sensitivity(amortizer, x, n=8000, seed=k)
        assert abs(net["prior"][0] - ref["prior"][0]) < 0.03 and abs(net["likelihood"][0] - ref["likelihood"][0]) < 0.05
        flags += net["diagnosis"][0] == ref["diagnosis"][0]
    mean_err, sd_err = np.array(mean_err), np.array(sd_err)
    assert np.median(mean_err) < 0.1 and np.median(sd_err) < 0.1
    assert np.mean((mean_err < 0.1) & (sd_err < 0.1)) >= 0.75
    assert flags >= 7


def test_data_sensitivity_moves_the_posterior_as_the_closed_form_does(briefly_trained):
    """Leave-one-out of an outlying row shifts the mean most; with exact posteriors the shift is the closed form's."""
    from amortbayes.sensitivity import data_sensitivity

    model = ConjugateGaussian(dim=1)

    class Exact:  # an 'amortizer' whose draws are the closed-form posterior (tests the bookkeeping exactly)
        info = model.info

        def sample_array(self, sets, n, seed=None):
            rng = np.random.default_rng(seed)
            return np.stack([rng.normal(*(v[0, 0] for v in model.posterior(s)), size=(n, 1)) for s in sets])

    x = np.array([[0.1], [-0.3], [0.2], [4.0], [0.0]])
    table = data_sensitivity(Exact(), x, "loo", n=20000)
    loo = table[table["perturbation"] != "none"]
    assert loo.loc[loo["shift_sd"].abs().idxmax(), "perturbation"] == "-row 3"
    mu, sd = model.posterior(x)
    expected = (model.posterior(np.delete(x, 3, axis=0))[0][0, 0] - mu[0, 0]) / sd[0, 0]
    assert float(loo.loc[loo["perturbation"] == "-row 3", "shift_sd"].iloc[0]) == pytest.approx(expected, abs=0.05)
    trimmed = data_sensitivity(Exact(), x, {"trim |y| > 3": lambda r: r[np.abs(r[:, 0]) <= 3]}, n=2000)
    assert list(trimmed["perturbation"].unique()) == ["none", "trim |y| > 3"]
    _, amortizer = briefly_trained
    boot = data_sensitivity(amortizer, x, "bootstrap", bootstrap=5, n=100, context={"alpha": 0.8})
    assert len(boot) == 6 and np.isfinite(boot["shift_sd"]).all()
    with pytest.raises(ValueError, match="unknown perturbation 'jackknife'"):
        data_sensitivity(Exact(), x, "jackknife")


def test_data_sensitivity_of_a_multilevel_amortizer_leaves_each_group_out_in_one_pass():
    """Each '-group' row is the global posterior of the data without that group (checked against a separate call)."""
    from amortbayes.amortizers import MultilevelAmortizer
    from amortbayes.models import HierarchicalLinear
    from amortbayes.sensitivity import data_sensitivity

    model = HierarchicalLinear()
    amortizer = MultilevelAmortizer(model)
    fit(amortizer, model, settings=TrainSettings(epochs=1, iterations_per_epoch=10, batch_size=8, validation_sims=8,
                                                 adapt_sims=64), progress=False, seed=0)
    b = model.simulate(1, torch.Generator().manual_seed(1))
    data = {k: b[k] for k in ("x", "mask", "group_mask")}
    j = int(b["group_mask"].sum())
    table = data_sensitivity(amortizer, data, "logo", n=4000)
    assert table["perturbation"].nunique() == j + 1
    keep = [g for g in range(j) if g != 2]
    alone = amortizer.sample_draws({"x": b["x"][:, keep], "mask": b["mask"][:, keep],
                                    "group_mask": b["group_mask"][:, keep]}, 4000, seed=5).global_draws[0]
    row = table[table["perturbation"] == "-3"].set_index("variable")
    for k, name in enumerate(model.parameter_names):
        assert abs(row.loc[name, "mean"] - alone[:, k].mean()) < 0.1 * alone[:, k].std(), name
    with pytest.raises(ValueError, match="'logo'"):
        data_sensitivity(amortizer, data, "bootstrap")


PRIOR_FAMILY = {"alpha": power_scale("prior"), "prior_family": choice("normal", "student_t", of="prior")}


def test_prior_family_choice_simulates_powered_student_t_priors_and_conditions_the_network():
    model = ConjugateGaussian(dim=1, n_obs=(10, 30), contexts=PRIOR_FAMILY)
    g = torch.Generator().manual_seed(0)
    n = 20000
    for alpha in (0.7, 1.0, 2.0):
        draws = model.sample_prior(n, g, context={"alpha": torch.full((n,), alpha),
                                                 "prior_family": torch.ones(n)}).numpy()[:, 0]
        nu = alpha * (model.student_df + 1) - 1  # t^alpha is t with nu' degrees of freedom
        scale = model.prior_sd * np.sqrt(model.student_df / nu)
        assert stats.kstest(draws / scale, stats.t(nu).cdf).pvalue > 1e-3
        normal = model.sample_prior(n, g, context={"alpha": torch.full((n,), alpha), "prior_family": torch.zeros(n)})
        assert stats.kstest(normal.numpy()[:, 0] * np.sqrt(alpha), "norm").pvalue > 1e-3
    # quadrature reproduces the closed form where there is one, at any powers
    x = model.simulate_data(torch.tensor([[2.5]]), 12, g)[0].numpy()
    base = ConjugateGaussian(dim=1, n_obs=(10, 30))
    for alpha, beta in ((1.0, 1.0), (0.5, 2.0)):
        mean, sd = model.posterior_quadrature(x, alpha=alpha, beta=beta, prior="normal")
        exact_mean, exact_sd = base.posterior(x, alpha=alpha, beta=beta)
        np.testing.assert_allclose([mean[0], sd[0]], [exact_mean[0, 0], exact_sd[0, 0]], rtol=1e-6)
    # a heavy-tailed prior pulls a far-away data set's posterior less towards the prior mean
    assert model.posterior_quadrature(x, prior="student_t")[0][0] > model.posterior_quadrature(x, prior="normal")[0][0]
    amortizer = PosteriorAmortizer(model)
    fit(amortizer, model, settings=TrainSettings(epochs=1, iterations_per_epoch=3), progress=False)
    draws = amortizer.sample_contexts(x, [{"prior_family": "normal"}, {"prior_family": "student_t", "alpha": 2}], 50)
    assert draws.shape == (2, 50, 1) and not np.allclose(draws[0], draws[1])
    with pytest.raises(ValueError, match=r"prior_family = 'cauchy' is not one of the trained options \['normal', 'student_t'\]"):
        amortizer.sample(x, 10, context={"prior_family": "cauchy"})


def test_prior_family_declarations_are_checked():
    with pytest.raises(ValueError, match="a choice is of the prior or the likelihood, got of='data'"):
        ContextSpace({"c": choice("a", "b", of="data")})
    with pytest.raises(ValueError, match="the prior families it knows are 'normal' and 'student_t'"):
        ConjugateGaussian(contexts={"p": choice("normal", "laplace", of="prior")})
    with pytest.raises(ValueError, match="at most one choice of the likelihood family and one of the prior's"):
        ConjugateGaussian(contexts={"p": choice("normal", "student_t", of="prior"),
                                    "q": choice("student_t", "normal", of="prior")})
    with pytest.raises(ValueError, match=r"Student-t prior to the power 0.2 has no proper density"):
        ConjugateGaussian(contexts={"alpha": power_scale("prior", 0.2, 2)})
    assert ContextSpace(PRIOR_FAMILY).choice_of("prior") == "prior_family"
    assert ContextSpace({"lik": choice("normal", "student_t")}).choice_of("likelihood") == "lik"


@pytest.mark.slow
def test_prior_family_context_matches_quadrature_posteriors():
    """The context network under each prior family against the quadrature posterior, alpha in {0.5, 1, 2}.

    Data sets whose mean lies 0.5-4 prior SDs out (where the families' posteriors differ).
    Measured (8,000 steps, this test): median error 0.055 posterior SD (means) and 3.3 % (SDs), but
    only 50 % of cells within both 0.1 SD and 10 %, worst 0.85 SD / 43 % (a run on other data:
    72 % within both for data within 1.5 prior SDs, 44 % beyond 2.5; the Student-t prior's cells
    are the worst: its posterior skews when data and prior conflict); the families' posterior
    means differ by 0.32 SD (median).  This test holds the medians and that the network follows
    the choice.
    """
    model = ConjugateGaussian(dim=1, n_obs=(10, 30), contexts=PRIOR_FAMILY)
    amortizer = PosteriorAmortizer(model)
    fit(amortizer, model, settings=TrainSettings(epochs=20, iterations_per_epoch=400, learning_rate=5e-4),
        progress=False, seed=0)
    g = torch.Generator().manual_seed(3)
    grid = [{"alpha": a, "prior_family": f} for a in (0.5, 1.0, 2.0) for f in ("normal", "student_t")]
    mean_err, sd_err, shift = [], [], []
    for k, mu in enumerate(np.concatenate([np.linspace(0.5, 4.0, 8), -np.linspace(0.5, 4.0, 8)])):
        x = model.simulate_data(torch.tensor([[mu]], dtype=torch.float32), 10 + (k % 8) * 2, g)[0].numpy()
        draws = amortizer.sample_contexts(x, grid, 4000, seed=k)[..., 0]
        for c, d in zip(grid, draws):
            mean, sd = model.posterior_quadrature(x, alpha=c["alpha"], prior=c["prior_family"])
            mean_err.append(abs(d.mean() - mean[0]) / sd[0])
            sd_err.append(abs(d.std() / sd[0] - 1))
        normal, student = (model.posterior_quadrature(x, prior=f)[0][0] for f in ("normal", "student_t"))
        shift.append(abs(student - normal) / model.posterior_quadrature(x)[1][0])
    mean_err, sd_err = np.array(mean_err), np.array(sd_err)
    print(f"prior family contexts: median {np.median(mean_err):.3f} SD / {np.median(sd_err):.3f}, worst "
          f"{mean_err.max():.3f} / {sd_err.max():.3f}, within both {np.mean((mean_err < 0.1) & (sd_err < 0.1)):.2f}; "
          f"the families' posterior means differ by {np.median(shift):.2f} SD (median)")
    assert np.median(shift) > 0.15  # the choice matters on these data: a network ignoring it errs by that much
    assert np.median(mean_err) < 0.1 and np.median(sd_err) < 0.1

"""Hierarchical diffusion models: simulation contract, densities, Stan data, and robustness to heavy tails."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from amortbayes import MultilevelAmortizer
from amortbayes.data import load_speed_acc
from amortbayes.models import HierarchicalDDM
from amortbayes.models.diffusion import wiener_log_density
from amortbayes.networks import FlowSettings, build_flow
from amortbayes.networks.standardize import soft_bound


@pytest.mark.parametrize("bias", ["shared", "subject"])
def test_simulated_batches_and_densities_are_valid(bias):
    model = HierarchicalDDM(bias=bias, n_groups=(3, 6), n_obs=(5, 20))
    b = model.simulate(16, torch.Generator().manual_seed(0))
    rt, choice, mask = b["x"][..., 0], b["x"][..., 1], b["mask"] > 0
    assert set(choice[mask].unique().tolist()) <= {0.0, 1.0}
    tau = torch.exp(b["theta_local"][..., 2])[..., None].expand_as(rt)
    assert torch.all(rt[mask] > tau[mask])
    ll = model.log_likelihood(b["theta_global"], b["theta_local"], b["x"], b["mask"])
    g = b["group_mask"] > 0
    assert torch.isfinite(ll[g]).all() and torch.all(ll[~g] == 0)
    # the per-group likelihood is the sum of the trial densities
    i, j = torch.nonzero(g)[0].tolist()
    v, a, beta, t = (p[i, j] for p in model._trial_parameters(b["theta_global"], b["theta_local"]))
    m = mask[i, j]
    direct = wiener_log_density(rt[i, j][m].double(), choice[i, j][m].double(), v.double(), a.double(),
                                beta.double(), t.double()).sum()
    assert ll[i, j].item() == pytest.approx(direct.item(), rel=1e-5)
    assert torch.isfinite(model.local_log_prior(b["theta_global"], b["theta_local"])[g]).all()


def test_subject_bias_prior_centres_the_biases():
    """kappa ~ Gamma(shape 5, scale 3): biases concentrate around mu_beta, not at 0 and 1."""
    model = HierarchicalDDM(bias="subject")
    glob = model.sample_global(4000, torch.Generator().manual_seed(1))
    assert glob[:, 7].mean().item() == pytest.approx(15.0, rel=0.05)
    local = model.sample_local(glob, 5, torch.Generator().manual_seed(2))[..., 3]
    assert ((local > 0.05) & (local < 0.95)).float().mean() > 0.9


def test_stan_data_for_speed_acc():
    df = load_speed_acc()
    df = df.assign(choice=df["correct"].astype(float))  # a second choice-like column must not clash
    data = HierarchicalDDM().stan_data(df, group="id", rt="rt", choice="correct")
    assert data["J"] == 17 and data["N_max"] == 96 and data["N"] == [96] * 17
    assert data["choice"].shape == (17, 96) and data["choice"].dtype.kind == "i"
    assert np.isclose(data["rt"].max(), df["rt"].max())


def test_heavy_tailed_data_keep_summaries_and_densities_finite():
    z = torch.tensor([0.0, 1.0, 3.0, 128.0])
    bounded = soft_bound(z)
    assert torch.equal(bounded[:3], z[:3]) and 4.0 < bounded[3] < 20.0  # the bulk untouched, the tail bounded
    assert torch.all(torch.diff(soft_bound(torch.linspace(-50, 50, 1001))) > 0)  # monotone across the joint
    model = HierarchicalDDM(n_groups=(3, 4), n_obs=(5, 8))
    amortizer = MultilevelAmortizer(model)
    batch = model.simulate(8, torch.Generator().manual_seed(3))
    amortizer.adapt(batch)
    batch["x"][0, 0, 0, 0] = 500.0  # a 500 s response time
    assert torch.isfinite(amortizer.loss(batch))
    flow = build_flow(2, 3, FlowSettings(layers=1, hidden=8))
    with torch.no_grad():
        flow._distribution._context_encoder[-2].linear.bias.fill_(1e4)  # a runaway context encoder
        means, log_stds = flow._distribution._compute_params(torch.zeros(1, 3))
    assert means.abs().max() <= 25.0 and log_stds.abs().max() <= 5.0


def test_default_amortizer_sees_the_fastest_response_and_round_trips(tmp_path):
    # the non-decision time must lie below every response time: the default summary carries
    # each group's exact minimum and maximum, and a saved amortizer rebuilds with them
    from amortbayes import load, save

    model = HierarchicalDDM(n_groups=(3, 5), n_obs=(5, 20))
    amortizer = MultilevelAmortizer(model)
    assert amortizer.settings.group_extremes
    amortizer.adapt(model.simulate(64, torch.Generator().manual_seed(0)))
    b = model.simulate(1, torch.Generator().manual_seed(1))
    stats = amortizer.group_summary.statistics(amortizer.x_std(b["x"][0]), b["mask"][0])
    fastest = [b["x"][0, j, b["mask"][0, j] > 0, 0].min() for j in range(int(b["group_mask"].sum()))]
    z_fastest = amortizer.x_std(torch.stack([torch.stack([f, torch.tensor(0.0)]) for f in fastest]))[:, 0]
    torch.testing.assert_close(stats[: len(fastest), -5], z_fastest)  # minima of (rt, choice), maxima, log N
    save(amortizer, tmp_path / "ddm")
    again = load(tmp_path / "ddm", model=model)
    assert again.settings.group_extremes
    np.testing.assert_array_equal(amortizer.sample_draws(b, 5, seed=0).global_draws,
                                  again.sample_draws(b, 5, seed=0).global_draws)


def test_parameter_map_with_mixed_supports_round_trips_with_its_jacobian():
    # every support in one map, in an order that interleaves them, and each support alone
    from amortbayes.networks.standardize import ParameterMap

    support = ("positive", "real", "correlation", "unit", "positive", "real")
    theta = torch.tensor([[2.0, -3.0, 0.4, 0.2, 0.05, 7.0], [0.3, 1.0, -0.9, 0.95, 11.0, 0.0]], dtype=torch.float64)
    expected = torch.stack([theta[:, 0].log(), theta[:, 1], theta[:, 2].atanh(), theta[:, 3].logit(),
                            theta[:, 4].log(), theta[:, 5]], -1)
    pm = ParameterMap(support)
    torch.testing.assert_close(pm.unconstrain(theta), expected)
    pm.fit(theta.float())
    torch.testing.assert_close(pm.inverse(pm(theta)), theta)
    for row in theta:
        jac = torch.autograd.functional.jacobian(lambda t: pm(t[None])[0], row)
        torch.testing.assert_close(pm.log_abs_det(row[None])[0], torch.linalg.slogdet(jac)[1])
    for kind, values in (("positive", [0.5, 3.0]), ("unit", [0.1, 0.7]), ("correlation", [-0.5, 0.2]), ("real", [-1.0, 4.0])):
        one = ParameterMap((kind, kind))
        t = torch.tensor([values], dtype=torch.float64)
        torch.testing.assert_close(one.constrain(one.unconstrain(t)), t)


def test_interval_support_maps_a_box_onto_the_real_line_with_its_jacobian():
    from amortbayes.networks.standardize import ParameterMap

    pm = ParameterMap(("interval:-3:3", "positive", "interval:0:10"))
    theta = torch.tensor([[-2.9, 0.5, 0.01], [0.0, 2.0, 9.5], [2.5, 0.1, 5.0]], dtype=torch.float64)
    u = pm.unconstrain(theta)
    torch.testing.assert_close(u[:, 0], torch.logit((theta[:, 0] + 3) / 6))
    torch.testing.assert_close(u[:, 2], torch.logit(theta[:, 2] / 10))
    pm.fit(theta.float())
    torch.testing.assert_close(pm.inverse(pm(theta)), theta)
    for row in theta:
        jac = torch.autograd.functional.jacobian(lambda t: pm(t[None])[0], row)
        torch.testing.assert_close(pm.log_abs_det(row[None])[0], torch.linalg.slogdet(jac)[1])
    far = pm.inverse(torch.tensor([[40.0, 0.0, -40.0], [-40.0, 0.0, 40.0]], dtype=torch.float64))
    assert ((far[:, 0] >= -3) & (far[:, 0] <= 3) & (far[:, 2] >= 0) & (far[:, 2] <= 10)).all()
    with pytest.raises(ValueError, match=r"outside the support of \['b'\]"):
        pm.check_support(torch.tensor([[0.0, 1.0, 11.0]]), names=("a", "p", "b"))


@pytest.mark.parametrize("kind", ["interval:3:-3", "interval:0", "interval:a:b", "interval:0:inf"])
def test_malformed_interval_support_names_the_expected_form(kind):
    from amortbayes.networks.standardize import ParameterMap

    with pytest.raises(ValueError, match="interval:<lo>:<hi>"):
        ParameterMap((kind,))


def test_data_bounded_map_round_trips_with_its_jacobian_and_never_crosses_the_bound():
    from amortbayes.networks.standardize import ParameterMap

    pm = ParameterMap(("real", "below_log_min:rt", "unit"), data_names=("rt", "choice"))
    x = torch.tensor([[[0.4, 1.0], [0.25, 0.0], [0.01, 1.0]], [[0.9, 0.0], [0.7, 1.0], [0.0, 0.0]]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0]])  # the 0.01 s row is padding
    upper = pm.upper(x, mask)
    torch.testing.assert_close(upper[:, 1], torch.log(torch.tensor([0.25, 0.7])))
    assert torch.isinf(upper[:, [0, 2]]).all()
    theta = torch.tensor([[0.3, -1.5, 0.2], [-2.0, -0.3600, 0.9]], dtype=torch.float64)  # log tau below log 0.25, log 0.7
    up = upper.double()
    pm.fit(theta.float(), upper=upper)
    torch.testing.assert_close(pm.inverse(pm(theta, up), up), theta)
    jac = torch.autograd.functional.jacobian(lambda t: pm(t[None], up[:1])[0], theta[0])
    torch.testing.assert_close(pm.log_abs_det(theta[:1], up[:1])[0], torch.linalg.slogdet(jac)[1])
    far = pm.inverse(torch.tensor([[0.0, 1e4, 0.0], [0.0, -1e4, 0.0]]), upper[:1])  # far above and below
    assert bool((far[:, 1] < upper[0, 1]).all()) and torch.isfinite(far).all()
    with pytest.raises(ValueError, match="need the data's bounds"):
        pm(theta.float())
    with pytest.raises(ValueError, match="needs positive values"):
        pm.upper(torch.tensor([[[-0.2, 1.0], [0.3, 0.0]]]), torch.ones(1, 2))
    with pytest.raises(ValueError, match="names data column 'ms'"):
        ParameterMap(("below_min:ms",), data_names=("rt",))


def test_non_decision_time_draws_stay_below_the_fastest_response(tmp_path):
    # an untrained (adapted) amortizer: with an unbounded log tau nearly all draws of a
    # participant with one fast response would cross it; the data-bounded support keeps all below
    from amortbayes import load, save

    model = HierarchicalDDM(bias="subject", n_groups=(3, 5), n_obs=(5, 20))
    amortizer = MultilevelAmortizer(model)
    amortizer.adapt(model.simulate(64, torch.Generator().manual_seed(0)))
    b = model.simulate(4, torch.Generator().manual_seed(1))
    b["x"][:, 0, 0, 0] = 0.12  # a very fast first response in every first group
    fastest = torch.where(b["mask"] > 0, b["x"][..., 0], torch.tensor(float("inf"))).amin(-1)  # (B, J)
    draws = amortizer.sample_draws(b, 500, seed=0)
    tau = np.exp(draws.local_draws[..., 2])  # (B, n, J)
    present = b["group_mask"].numpy() > 0
    assert (tau < fastest.numpy()[:, None, :])[np.broadcast_to(present[:, None, :], tau.shape)].all()
    info = dataclasses.replace(model.info, local_parameter_support=("real",) * 3 + ("unit",))
    unbounded = MultilevelAmortizer(info, amortizer.settings)  # the same initial weights
    unbounded.adapt(model.simulate(64, torch.Generator().manual_seed(0)))
    crossed = np.exp(unbounded.sample_draws(b, 500, seed=0).local_draws[:, :, 0, 2]) >= 0.12
    assert crossed.mean() > 0.05  # the bound is doing work
    data = {"x": b["x"][:1], "mask": b["mask"][:1], "group_mask": b["group_mask"][:1]}
    assert np.isfinite(amortizer.logo(data, model, n=40, importance=4, seed=0)["elpd"]).all()
    save(amortizer, tmp_path / "ddm")
    again = load(tmp_path / "ddm", model=model)
    np.testing.assert_array_equal(draws.local_draws, again.sample_draws(b, 500, seed=0).local_draws)


@pytest.mark.slow
@pytest.mark.parametrize("bias", ["shared", "subject"])
def test_likelihood_is_stans_at_stans_draws(bias):
    """The amortizer's training simulator, our Wiener density and the Stan reference are one model.

    Stan's ``log_lik_group`` (its ``wiener_lpdf``, lower-boundary responses mirrored) at its own
    posterior draws equals :meth:`HierarchicalDDM.log_likelihood` of the same draws.
    """
    pytest.importorskip("stan")
    from amortbayes.reference import fit_stan

    model = HierarchicalDDM(bias=bias)
    df = load_speed_acc().assign(choice=lambda d: (1 - d["response_upper"]).astype(float))
    df = df[df["id"].isin(df["id"].unique()[:3])].groupby("id", observed=True).head(30)
    fit = fit_stan(model.name, model.stan_data(df, group="id", rt="rt", choice="choice"), backend="pystan",
                   chains=1, warmup=150, draws=40, seed=3)
    d = fit.draws
    groups = [g for _, g in df.groupby("id", observed=True)]
    x = torch.zeros(1, 3, 30, 2, dtype=torch.float64)
    mask = torch.zeros(1, 3, 30, dtype=torch.float64)
    for j, g in enumerate(groups):
        x[0, j, : len(g)] = torch.tensor(g[["rt", "choice"]].to_numpy())
        mask[0, j, : len(g)] = 1.0
    theta_g = torch.tensor(d[list(model.parameter_names)].to_numpy())
    theta_l = torch.stack([torch.tensor(d[[f"{n}[{j}]" for j in (1, 2, 3)]].to_numpy())
                           for n in model.local_parameter_names], dim=-1)
    ours = model.log_likelihood(theta_g, theta_l, x, mask).numpy()
    stan = d[[f"log_lik_group[{j}]" for j in (1, 2, 3)]].to_numpy()
    assert np.all(np.isfinite(stan)) and stan.std() > 0.1  # the draws move the likelihood
    np.testing.assert_allclose(ours, stan, rtol=1e-5, atol=1e-4)

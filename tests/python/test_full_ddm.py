"""The full (Ratcliff) diffusion model: prior, exact simulator and simple-model density against R's rtdists."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from amortbayes.models import MODELS, FullDDM, get_model
from amortbayes.models.diffusion import upper_probability, wiener_log_density
from amortbayes.models.full_ddm import signed_rt, split_signed_rt

# (v, a, z, t0, sv, sz_frac, st0): strong variabilities, both signs of the drift, biased starts
FULL_SETS = [
    [1.0, 1.2, 0.45, 0.30, 1.2, 0.6, 0.25],
    [-0.5, 2.0, 0.60, 0.20, 0.5, 0.9, 0.10],
    [2.5, 0.8, 0.50, 0.40, 2.0, 0.3, 0.30],
]
SIMPLE_SETS = [[1.0, 1.5, 0.5, 0.3], [-1.5, 0.9, 0.3, 0.25], [0.2, 2.5, 0.7, 0.4]]


@pytest.fixture(scope="module")
def rtdists():
    """The reference module, or a skip without rpy2 and R's rtdists (scripts/setup-r.sh installs them)."""
    pytest.importorskip("rpy2")
    from amortbayes.reference import rtdists as module

    if not module.rtdists_available():
        pytest.skip("R package rtdists cannot be loaded through rpy2; scripts/setup-r.sh installs it")
    return module


# ---------------------------------------------------------------------------------------
# (a) the simple model's exact density
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("theta", SIMPLE_SETS)
def test_simple_log_likelihood_rows_equal_rtdists(rtdists, theta):
    model = FullDDM(variability=False)
    x = model.simulate_data(torch.tensor([theta]), 200, torch.Generator().manual_seed(0))[0].numpy().astype(float)
    x = np.concatenate([x, [[theta[3] * 0.5], [-theta[3] * 0.9]]])  # two rows below t0: density 0
    ours = model.log_likelihood_rows(x, np.array([theta]))[0]
    ref = rtdists.ddiffusion_log(x[:, 0], theta, model)
    assert ours.shape == (202,) and np.isneginf(ours[-2:]).all() and np.isneginf(ref[-2:]).all()
    np.testing.assert_allclose(ours[:-2], ref[:-2], atol=1e-6)
    # the dict form and the upper/lower mapping: positive drift makes "upper" (rt_signed > 0) likelier
    as_dict = dict(zip(("v", "a", "z", "t0"), theta))
    np.testing.assert_allclose(rtdists.ddiffusion_log(x[:5, 0], as_dict), ref[:5])
    p_upper = rtdists.pdiffusion(np.inf, 1, as_dict)[0]
    assert p_upper == pytest.approx(float(upper_probability(*theta[:3])), abs=1e-5)


@pytest.mark.parametrize("theta", SIMPLE_SETS)
def test_simple_density_integrates_to_one_over_rt_signed(theta):
    model = FullDDM(variability=False)

    def density(signed: float) -> float:
        return float(np.exp(model.log_likelihood_rows(np.array([[signed]]), np.array([theta]))[0, 0]))

    t0 = theta[3]
    upper = integrate.quad(density, t0, t0 + 60.0, points=[t0 + 0.1, t0 + 1.0], limit=200)[0]
    lower = integrate.quad(density, -t0 - 60.0, -t0, points=[-t0 - 1.0, -t0 - 0.1], limit=200)[0]
    assert upper + lower == pytest.approx(1.0, abs=1e-6)
    assert upper == pytest.approx(float(upper_probability(*theta[:3])), abs=1e-6)


@pytest.mark.parametrize("theta", FULL_SETS[:2])
def test_rtdists_full_density_is_the_average_of_wiener_densities(rtdists, theta):
    # the mapping of sv, sz (absolute = relative * a) and st0 (t0 + U(0, st0)): Gauss quadrature of the
    # closed-form Wiener density over the three variabilities
    p = FullDDM().natural_parameters([theta])
    v, a, z, t0, sv, sz, st0 = (float(p[k][0]) for k in ("v", "a", "z", "t0", "sv", "sz", "st0"))
    hv, wv = np.polynomial.hermite_e.hermegauss(40)
    gl, wl = np.polynomial.legendre.leggauss(40)
    u, wu = (gl + 1) / 2, wl / 2
    signed = np.array([0.45, 0.6, 0.9, 1.4, 2.5, -0.5, -0.8, -1.3])
    expected = []
    for x in signed:
        rt, choice = abs(x), float(x > 0)
        top = min(1.0, (rt - t0) / st0)  # tau = t0 + st0 w < rt
        drift = torch.tensor(v + sv * hv)[:, None, None]
        start = torch.tensor(z + sz * (u - 0.5))[None, :, None]
        tau = torch.tensor(t0 + st0 * top * u)[None, None, :]
        dens = torch.exp(wiener_log_density(rt, choice, drift, a, start, tau)).numpy()
        weights = (wv / math.sqrt(2 * math.pi))[:, None, None] * wu[None, :, None] * (top * wu)[None, None, :]
        expected.append((dens * weights).sum())
    ref = np.exp(rtdists.ddiffusion_log(signed, theta, precision=5))
    np.testing.assert_allclose(ref, expected, rtol=2e-3)


# ---------------------------------------------------------------------------------------
# (b) the simulator against rtdists' distribution function
# ---------------------------------------------------------------------------------------


def _max_cdf_gap(rtdists, x: np.ndarray, theta) -> tuple[float, float]:
    """Max |empirical - rtdists| of each boundary's defective CDF P(RT <= t, boundary) and of P(upper)."""
    rt, choice = split_signed_rt(x)
    gaps = []
    for c in (1.0, 0.0):
        grid = np.quantile(rt[choice == c], np.linspace(0.02, 0.98, 25))
        empirical = ((rt[None] <= grid[:, None]) & (choice[None] == c)).mean(1)
        gaps.append(np.abs(empirical - rtdists.pdiffusion(grid, c, theta)).max())
    return max(gaps), abs(choice.mean() - rtdists.pdiffusion(np.inf, 1, theta)[0])


@pytest.mark.parametrize("k", range(len(FULL_SETS)))
def test_simulator_matches_rtdists_distribution_function(rtdists, k):
    model, theta = FullDDM(), FULL_SETS[k]
    x = model.simulate_data(torch.tensor([theta]), 20_000, torch.Generator().manual_seed(k))[0, :, 0].double().numpy()
    cdf_gap, p_gap = _max_cdf_gap(rtdists, x, theta)
    assert cdf_gap < 0.02 and p_gap < 0.015, (cdf_gap, p_gap)
    # the check has power: read against a model without a variability that is large in this set
    # (sv, sz_frac or st0), the same draws fail it
    for drop in {0: (4, 5, 6), 1: (5, 6), 2: (4, 6)}[k]:
        wrong = list(theta)
        wrong[drop] = 0.0
        assert _max_cdf_gap(rtdists, x, wrong)[0] > 0.02


# ---------------------------------------------------------------------------------------
# (c, d) prior
# ---------------------------------------------------------------------------------------


PRIOR = [stats.norm(0, 2), stats.lognorm(0.4, scale=np.exp(0.4)), stats.beta(10, 10),
         stats.lognorm(0.3, scale=np.exp(-1.2)), stats.halfnorm(scale=1.0), stats.beta(1, 3), stats.uniform(0, 0.3)]


def _scipy_log_prior(theta: np.ndarray) -> np.ndarray:
    return sum(dist.logpdf(theta[:, j]) for j, dist in enumerate(PRIOR[: theta.shape[1]]))


def test_log_prior_is_the_density_sample_prior_draws_from():
    model = FullDDM()
    theta = model.sample_prior(40_000, torch.Generator().manual_seed(0))
    assert theta.shape == (40_000, 7) and theta.dtype == torch.float32
    t = theta.double().numpy()
    lp = model.log_prior(theta)
    assert lp.dtype == torch.float64 and lp.shape == (40_000,)
    np.testing.assert_allclose(lp.numpy(), _scipy_log_prior(t), rtol=1e-9, atol=1e-9)
    # each column follows its declared distribution
    for j, dist in enumerate(PRIOR):
        assert stats.kstest(t[:, j], dist.cdf).pvalue > 1e-3, model.parameter_names[j]
    # normalization: E_p[q / p] = 1 for a density q inside the support (here a product of
    # the declared marginals with every scale widened or shifted; draws are i.i.d. from p)
    q = (stats.norm(0.2, 2.2).logpdf(t[:, 0]) + stats.lognorm(0.45, scale=1.4).logpdf(t[:, 1])
         + stats.beta(8, 9).logpdf(t[:, 2]) + stats.lognorm(0.35, scale=0.3).logpdf(t[:, 3])
         + stats.halfnorm(scale=1.1).logpdf(t[:, 4]) + stats.beta(1.2, 3).logpdf(t[:, 5])
         + stats.uniform(0, 0.3).logpdf(t[:, 6]))
    ratio = np.exp(q - lp.numpy())
    assert ratio.mean() == pytest.approx(1.0, abs=4 * ratio.std() / np.sqrt(len(ratio)))


def test_simple_log_prior_and_support_edges():
    simple = FullDDM(variability=False)
    theta = simple.sample_prior(1000, torch.Generator().manual_seed(1)).double().numpy()
    np.testing.assert_allclose(simple.log_prior(theta).numpy(), _scipy_log_prior(theta), rtol=1e-9)
    model = FullDDM()
    good = [0.5, 1.5, 0.5, 0.3, 0.5, 0.5, 0.1]
    for j, bad in [(0, math.inf), (1, 0.0), (1, -1.0), (2, 0.0), (2, 1.0), (3, 0.0), (4, -0.1), (5, 1.0), (5, -0.1),
                   (6, -0.01), (6, 0.31), (0, math.nan)]:
        row = list(good)
        row[j] = bad
        assert model.log_prior([good, row])[1].item() == -math.inf, (j, bad)
        assert np.isfinite(model.log_prior([good, row])[0].item())
        if (j, bad) != (6, 0.31):  # st0 above the prior's range is still a valid model
            with pytest.raises(ValueError, match="outside their support"):
                model.simulate_data(torch.tensor([row]), 3)
    with pytest.raises(ValueError, match=r"shape \(M, 7\)"):
        model.log_prior(torch.zeros(3, 4))


def test_start_point_range_stays_inside_for_prior_draws():
    model = FullDDM()
    p = model.natural_parameters(model.sample_prior(100_000, torch.Generator().manual_seed(2)))
    assert bool((p["sz"] >= 0).all()) and bool((p["sz"] < 2 * torch.minimum(p["z"], 1 - p["z"])).all())
    lowest, highest = p["z"] - p["sz"] / 2, p["z"] + p["sz"] / 2
    assert bool((lowest > 0).all()) and bool((highest < 1).all())


# ---------------------------------------------------------------------------------------
# (e, f) data encoding, batches, registry
# ---------------------------------------------------------------------------------------


def test_signed_rt_round_trip():
    rt = np.array([0.31, 0.8, 2.5, 0.45])
    choice = np.array([1.0, 0.0, 0.0, 1.0])
    x = signed_rt(rt, choice)
    np.testing.assert_array_equal(x, [0.31, -0.8, -2.5, 0.45])
    back_rt, back_choice = split_signed_rt(x)
    np.testing.assert_array_equal(back_rt, rt)
    np.testing.assert_array_equal(back_choice, choice)
    t_rt, t_choice = split_signed_rt(signed_rt(torch.tensor(rt), torch.tensor(choice)))
    assert t_rt.dtype == torch.float64 and torch.equal(t_choice, torch.tensor(choice))
    with pytest.raises(ValueError, match="choice must be 1"):
        signed_rt(rt, np.array([1.0, 2.0, 0.0, 1.0]))


@pytest.mark.parametrize("variability", [True, False])
def test_simulate_batches_shapes_and_dtypes(variability):
    model = FullDDM(variability=variability)
    batch = model.simulate(8, torch.Generator().manual_seed(0))
    d = 7 if variability else 4
    n = batch["mask"].shape[1]
    assert batch["theta_global"].shape == (8, d) and batch["x"].shape == (8, n, 1) and batch["mask"].shape == (8, n)
    assert all(v.dtype == torch.float32 for v in batch.values()) and 50 <= n <= 200
    sizes = batch["mask"].sum(1)
    assert bool((sizes >= 50).all()) and bool((sizes <= 200).all())
    rt, _ = split_signed_rt(batch["x"][..., 0])
    t0 = batch["theta_global"][:, 3:4]
    assert bool(((rt > t0) | (batch["mask"] == 0)).all()) and bool((batch["x"][batch["mask"] == 0] == 0).all())
    again = model.simulate(8, torch.Generator().manual_seed(0))
    assert torch.equal(batch["x"], again["x"])


def test_registry_config_and_no_closed_form_for_the_full_model():
    model = get_model("full_ddm", **FullDDM(st0_max=0.5).config())
    assert MODELS["full_ddm"] is FullDDM and model == FullDDM(st0_max=0.5)
    assert model.info.parameter_support[-1] == "interval:0:0.5" and model.info.data_names == ("rt_signed",)
    assert not hasattr(FullDDM(), "log_likelihood_rows") and hasattr(FullDDM(variability=False), "log_likelihood_rows")
    with pytest.raises(AttributeError, match="only available numerically"):
        FullDDM().log_likelihood_rows  # noqa: B018
    with pytest.raises(ValueError, match="must be finite and > 0"):
        FullDDM(sv_scale=0.0)


def test_rtdists_parameter_errors_are_clear_without_loading_r():
    from amortbayes.reference.rtdists import ddiffusion_log, pdiffusion

    with pytest.raises(ValueError, match=r"missing \['t0'\], unknown \['sz_frac'\]"):
        ddiffusion_log([0.5], {"v": 1.0, "a": 1.0, "z": 0.5, "sz_frac": 0.2})
    with pytest.raises(ValueError, match=r"0 <= sz < 2 min\(z, 1 - z\)"):
        pdiffusion([0.5], 1, {"v": 1.0, "a": 1.0, "z": 0.2, "t0": 0.3, "sz": 0.5})
    with pytest.raises(ValueError, match="4 or 7 values"):
        ddiffusion_log([0.5], [1.0, 1.0, 0.5])

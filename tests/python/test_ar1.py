"""AR(1) multilevel model: batches, exact densities, Stan data, the ChickWeight adapter; one (slow) Stan fit."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy import stats

from amortbayes.models import MODELS, AR1Multilevel, get_model
from amortbayes.models.ar1 import chickweight_frame, stan_data_from_frame
from amortbayes.reference import check_data, data_names, stan_program
from amortbayes.simulation import ModelInfo

torch.set_num_threads(1)

MEANS = ("mu_alpha", "mu_beta", "mu_gamma", "mu_delta", "mu_sigma")


def batch(seed: int = 0, b: int = 64, **kwargs) -> dict[str, torch.Tensor]:
    return AR1Multilevel().simulate(b, torch.Generator().manual_seed(seed), **kwargs)


def test_registry_names_and_supports_match_the_stan_program():
    model = get_model("ar1_multilevel")
    assert MODELS["ar1_multilevel"] is AR1Multilevel and isinstance(model, AR1Multilevel)
    code = stan_program("ar1_multilevel")
    for name in model.parameter_names + model.local_parameter_names:
        assert f" {name};" in code or f"] {name};" in code, name
    for name, support in zip(model.parameter_names, model.parameter_support):
        assert support == ("positive" if name.startswith("sigma_") else "real")
    assert model.local_parameter_support == ("real",) * 5
    info = ModelInfo.from_dict(json.loads(json.dumps(model.info.to_dict())))
    assert info == model.info and AR1Multilevel(**info.config) == model
    with pytest.raises(ValueError, match="covariate_persistence"):
        get_model("ar1_multilevel", covariate_persistence=(0.5, 1.2))
    with pytest.raises(ValueError, match="bad settings"):
        get_model("ar1_multilevel", mu_alpha_scale=1.0)


def test_batches_vary_groups_and_lengths_with_time_ordered_prefixes():
    out = batch()
    assert sorted(out) == ["group_mask", "mask", "theta_global", "theta_local", "x"]
    assert all(v.dtype == torch.float32 for v in out.values())
    b = 64
    j, n = out["group_mask"].shape[1], out["mask"].shape[2]
    assert out["theta_global"].shape == (b, 10)
    assert out["theta_local"].shape == (b, j, 5)
    assert out["x"].shape == (b, j, n, 4) and out["mask"].shape == (b, j, n)
    groups = out["group_mask"].sum(1)
    sizes = out["mask"].sum(-1)[out["group_mask"] > 0]
    assert groups.min() >= 5 and groups.max() <= 20 and len(groups.unique()) > 3
    assert sizes.min() >= 5 and sizes.max() <= 30 and len(sizes.unique()) > 5
    # padding is zero; groups and rows are prefixes
    assert (out["x"][out["mask"] == 0] == 0).all()
    assert (out["theta_local"][out["group_mask"] == 0] == 0).all()
    assert (out["mask"].sum(-1)[out["group_mask"] == 0] == 0).all()
    assert (out["mask"][..., 1:] <= out["mask"][..., :-1]).all()
    assert (out["group_mask"][:, 1:] <= out["group_mask"][:, :-1]).all()
    # y_lag[t] == y[t-1] inside each group
    x, m = out["x"], out["mask"]
    inside = m[..., 1:] > 0
    assert torch.equal(x[..., 1:, 1][inside], x[..., :-1, 0][inside])
    # positive supports hold
    assert (out["theta_global"][:, 1::2] > 0).all()


def test_simulated_rows_follow_the_likelihood():
    out = batch(seed=3, b=256)
    x, m = out["x"].double(), out["mask"] > 0
    a, be, g, d, ls = out["theta_local"].double()[..., None, :].unbind(-1)
    z = (x[..., 0] - a - be * x[..., 1] - g * x[..., 2] - d * x[..., 3]) / torch.exp(ls)
    z = z[m]
    assert abs(float(z.mean())) < 0.02 and float(z.std()) == pytest.approx(1.0, abs=0.02)
    # simulated covariates are on the standardized scale
    cov = x[..., 2:][m]
    assert cov.mean(0).abs().max() < 0.05 and (cov.std(0) - 1).abs().max() < 0.05
    assert torch.isfinite(AR1Multilevel().log_likelihood(out["theta_global"], out["theta_local"],
                                                         out["x"], out["mask"])).all()


def test_same_seed_same_batch():
    a, b = batch(seed=7, b=8), batch(seed=7, b=8)
    assert all(torch.equal(a[k], b[k]) for k in a)


def numpy_ar1_loglik(theta_local: np.ndarray, y0: float, y, u, w) -> float:
    alpha, beta, gamma, delta, log_sigma = theta_local
    total, prev = 0.0, y0
    for yt, ut, wt in zip(y, u, w):
        mean = alpha + beta * prev + gamma * ut + delta * wt
        sd = np.exp(log_sigma)
        total += -0.5 * np.log(2 * np.pi * sd**2) - 0.5 * ((yt - mean) / sd) ** 2
        prev = yt
    return total


def test_log_likelihood_is_the_gaussian_ar1_density_and_ignores_padding():
    model = AR1Multilevel()
    rng = np.random.default_rng(0)
    theta_local = np.array([[0.3, 0.5, -0.2, 0.4, -0.7], [-0.1, -0.3, 0.6, 0.0, 0.2]])
    lengths = [4, 6]
    x = np.zeros((2, 6, 4))
    mask = np.zeros((2, 6))
    expected = []
    for j, t in enumerate(lengths):
        y0 = rng.normal()
        y, u, w = rng.normal(size=t), rng.normal(size=t), rng.normal(size=t)
        x[j, :t] = np.stack([y, np.r_[y0, y[:-1]], u, w], -1)
        mask[j, :t] = 1.0
        expected.append(numpy_ar1_loglik(theta_local[j], y0, y, u, w))
    tg = model.sample_global(1, torch.Generator().manual_seed(0)).double()[0]
    got = model.log_likelihood(tg, torch.tensor(theta_local), torch.tensor(x), torch.tensor(mask))
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-10)
    # more padding, with garbage in it: same value
    padded = np.concatenate([x, rng.normal(size=(2, 5, 4)) * 100], axis=1)
    pmask = np.concatenate([mask, np.zeros((2, 5))], axis=1)
    again = model.log_likelihood(tg, torch.tensor(theta_local), torch.tensor(padded), torch.tensor(pmask))
    np.testing.assert_allclose(again.numpy(), expected, rtol=1e-10)
    # broadcasting over draws, as leave-one-group-out uses it: (S, J, L) against (J, N, F)
    draws = torch.tensor(theta_local)[None].expand(3, -1, -1)
    np.testing.assert_allclose(model.log_likelihood(tg, draws, torch.tensor(x), torch.tensor(mask)).numpy(),
                               np.tile(expected, (3, 1)), rtol=1e-10)


def test_local_log_prior_matches_scipy():
    model = AR1Multilevel()
    gen = torch.Generator().manual_seed(1)
    tg = model.sample_global(3, gen).double()
    tl = model.sample_local(tg, 4, gen).double()
    got = model.local_log_prior(tg, tl).numpy()
    assert got.shape == (3, 4)
    g, l_ = tg.numpy(), tl.numpy()
    expected = sum(stats.norm.logpdf(l_[..., k], g[:, None, 2 * k], g[:, None, 2 * k + 1]) for k in range(5))
    np.testing.assert_allclose(got, expected, rtol=1e-10)


def test_global_prior_moments_match_eq_21():
    theta = AR1Multilevel().sample_global(40_000, torch.Generator().manual_seed(2)).double().numpy()
    locs = [0, 0, 0, 0, -1]
    mean_scales = [0.5, 0.2, 0.5, 0.5, 0.5]
    sd_scales = [0.25, 0.15, 0.25, 0.25, 1.0]
    for k in range(5):
        mu, sd = theta[:, 2 * k], theta[:, 2 * k + 1]
        assert mu.mean() == pytest.approx(locs[k], abs=0.02)
        assert mu.std() == pytest.approx(mean_scales[k], rel=0.03)
        # half-normal: E = scale * sqrt(2 / pi)
        assert sd.mean() == pytest.approx(sd_scales[k] * np.sqrt(2 / np.pi), rel=0.03)


def test_stan_data_from_a_simulated_data_set():
    model = AR1Multilevel()
    out = batch(seed=4, b=2)
    i = int(torch.argmin(out["group_mask"].sum(1)))  # a data set with padded groups
    data = model.stan_data(out["x"][i], out["mask"][i], out["group_mask"][i])
    assert set(data) == set(data_names(stan_program("ar1_multilevel")))
    j = int(out["group_mask"][i].sum())
    sizes = out["mask"][i, :j].sum(-1).int().tolist()
    assert data["J"] == j and data["T"] == sizes and data["T_max"] == max(sizes)
    assert data["y"].shape == (j, max(sizes))
    np.testing.assert_array_equal(data["ylag"][0, : sizes[0]], out["x"][i, 0, : sizes[0], 1].numpy())
    check_data("ar1_multilevel", data)
    # a batch of one with a leading axis and no group_mask gives the same
    same = model.stan_data(out["x"][i : i + 1], out["mask"][i : i + 1])
    assert same["T"] == data["T"] and np.array_equal(same["w"], data["w"])
    bad = out["mask"][i].clone()
    bad[0, 0] = 0.0
    with pytest.raises(ValueError, match="prefix"):
        model.stan_data(out["x"][i], bad, out["group_mask"][i])
    with pytest.raises(ValueError, match="shape"):
        model.stan_data(out["x"][i, ..., :3], out["mask"][i])


def test_chickweight_frame_is_documented_layout():
    df = chickweight_frame()
    assert list(df.columns) == ["Chick", "y", "y_lag", "u", "w", "Time", "weight", "Diet"]
    assert df["Chick"].nunique() == 49 and len(df) == 478
    assert "18" not in set(df["Chick"].astype(str))
    assert not df[["y", "y_lag", "u", "w"]].isna().any().any()
    sizes = df.groupby("Chick", observed=True).size()
    assert sizes.min() == 5 and sizes.max() == 10 and (sizes == 10).sum() == 45
    # y_lag is the previous y of the same chick, time increases within a chick
    for _, g in df.groupby("Chick", observed=True):
        np.testing.assert_array_equal(g["y_lag"].to_numpy()[1:], g["y"].to_numpy()[:-1])
        assert np.all(np.diff(g["Time"].to_numpy()) > 0)
    # chick 1: first kept row is day 4; y is the standardized log-weight slope from day 2 to 4
    first = df.iloc[0]
    assert first["Chick"] == "1" and first["Time"] == 4
    assert df["u"].mean() == pytest.approx(0.0, abs=1e-12) and df["u"].std() == pytest.approx(1.0)
    data = stan_data_from_frame(df, group="Chick")
    assert data["J"] == 49 and data["T_max"] == 10
    check_data("ar1_multilevel", data)
    with pytest.raises(ValueError, match="no column"):
        stan_data_from_frame(df.drop(columns="w"), group="Chick")


def test_chickweight_prior_predictive_check():
    """The documented check: data quantiles against quantiles of simulated data sets (J=49, T=10)."""
    df = chickweight_frame()
    sim = batch(seed=0, b=1000, n_groups=49, n_obs=10)["x"].reshape(1000, -1, 4).numpy()
    qs = [0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99]
    sim_q = np.quantile(sim, qs, axis=1)  # (quantile, data set, feature)
    for k, name in enumerate(("y", "y_lag", "u", "w")):
        data_q = np.quantile(df[name].to_numpy(), qs)
        rank = (sim_q[:, :, k] < data_q[:, None]).mean(1)  # where the data sit among the simulations
        if name in ("y", "y_lag"):
            assert np.all((rank > 0.025) & (rank < 0.975)), (name, rank)
        else:
            central = rank[1:-1]
            assert np.all((central > 0.005) & (central < 0.995)), (name, rank)
            # the tails are no more extreme than in 99.5 % of simulated data sets
            assert rank[0] > 0.005 and rank[-1] < 0.995, (name, rank)
    assert df[["y", "y_lag", "u", "w"]].abs().max().max() < 3.2


@pytest.mark.slow
def test_stan_fit_recovers_the_global_means():
    pytest.importorskip("stan")
    from amortbayes.reference import fit_stan

    model = AR1Multilevel()
    out = model.simulate(1, torch.Generator().manual_seed(11), n_groups=10, n_obs=25)
    data = model.stan_data(out["x"][0], out["mask"][0], out["group_mask"][0])
    fit = fit_stan("ar1_multilevel", data, chains=4, warmup=500, draws=500, seed=1)
    assert fit.max_rhat < 1.05
    truth = dict(zip(model.parameter_names, out["theta_global"][0].tolist()))
    for name in MEANS:
        lo, hi = np.quantile(fit.draws[name], [0.005, 0.995])
        assert lo < truth[name] < hi, (name, truth[name], lo, hi)

"""Row encodings of the likelihood network: the signed-RT encoding's surrogate is a normalized density with a hard bound."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import integrate

from amortbayes import TrainSettings, fit, load, save
from amortbayes.amortizers import JointAmortizer, JointSettings
from amortbayes.models import FullDDM
from amortbayes.networks.row_encoding import SignedRT, make_row_encoding

TINY = TrainSettings(epochs=1, iterations_per_epoch=30, batch_size=16)


@pytest.fixture(scope="module")
def briefly_trained():
    model = FullDDM(variability=False)
    amortizer = JointAmortizer(model)
    fit(amortizer, model, settings=TINY, progress=False, seed=0)
    return model, amortizer


def test_signed_rt_encoding_round_trips_and_marks_rows_below_the_shift():
    theta = torch.tensor([[0.3], [0.1]])
    rows = torch.tensor([[[0.5], [-0.9], [0.2]], [[-0.15], [2.0], [0.1]]])
    codes, y, log_det, valid = SignedRT(0).encode(rows, theta)
    assert codes.tolist() == [[1, 0, 1], [0, 1, 1]]
    assert valid.tolist() == [[True, True, False], [True, True, False]]
    back = SignedRT(0).decode(codes, y, theta)
    assert torch.allclose(back[valid], rows[valid], atol=1e-6)
    assert torch.allclose(log_det[valid], -y[..., 0][valid])


def test_the_diffusion_model_declares_its_encoding_and_a_saved_amortizer_keeps_it(briefly_trained, tmp_path):
    model, amortizer = briefly_trained
    assert amortizer.settings.row_encoding == {"kind": "signed_rt", "shift": "t0"}
    off = JointAmortizer(model, JointSettings(row_encoding={"kind": "identity"}))
    assert off.likelihood.encoding.categories == 0
    loaded = load(save(amortizer, tmp_path / "ddm"))
    assert loaded.settings.row_encoding == amortizer.settings.row_encoding
    x = np.array([[0.6], [-0.8], [1.1]])
    theta = np.array([[0.5, 1.2, 0.5, 0.3]])
    assert np.allclose(loaded.log_likelihood(x, theta), amortizer.log_likelihood(x, theta), atol=1e-5)


@pytest.mark.parametrize("theta", [[0.8, 1.0, 0.45, 0.25], [-1.5, 2.2, 0.6, 0.4]])
def test_the_surrogate_density_integrates_to_one_and_is_zero_before_t0(briefly_trained, theta):
    """Normalization is structural (category head times flow times the Jacobian): it holds however little trained."""
    _, amortizer = briefly_trained
    t0 = theta[3]

    u = np.linspace(-25.0, 8.0, 20001)  # rt = t0 + exp(u) on each boundary: the whole support
    rt = t0 + np.exp(u)
    rows = np.concatenate([rt, -rt, [0.9 * t0, -0.5 * t0]])[:, None]
    dens = np.exp(amortizer.log_likelihood(rows, np.array([theta]), pointwise=True)[0])
    upper = integrate.trapezoid(dens[: u.size] * np.exp(u), u)
    lower = integrate.trapezoid(dens[u.size : 2 * u.size] * np.exp(u), u)
    assert upper + lower == pytest.approx(1.0, abs=2e-3)
    assert (dens[-2:] == 0.0).all()
    surrogate = amortizer.simulate(np.array([theta]), 2000, seed=3)
    assert (np.abs(surrogate) > t0).all()
    assert np.mean(surrogate > 0) == pytest.approx(upper, abs=0.04)


def test_bad_row_encodings_are_named():
    with pytest.raises(ValueError, match="shift 'tau' is not a parameter"):
        make_row_encoding({"kind": "signed_rt", "shift": "tau"}, 1, ["v", "a", "z", "t0"])
    with pytest.raises(ValueError, match="unknown row encoding 'log'"):
        make_row_encoding({"kind": "log"}, 1, ["v"])
    with pytest.raises(ValueError, match="one column"):
        make_row_encoding({"kind": "signed_rt", "shift": "t0"}, 2, ["t0"])


def test_loo_works_when_some_draws_give_a_response_zero_density(briefly_trained):
    """The bound at t0: a draw with t0 above one response has full-data weight 0 but a leave-one-out weight."""
    from amortbayes.diagnostics import psis_loo

    model, amortizer = briefly_trained
    x = model.simulate_data(torch.tensor([[0.5, 1.2, 0.5, 0.3]]), 40, torch.Generator().manual_seed(2))[0].numpy()
    x[0, 0] = 0.31  # just above the true t0: many posterior draws put t0 above it
    out = amortizer.elpd_loo(x, 2000)
    assert np.isfinite(out["elpd"]) and np.isfinite(out["pointwise"]["elpd"]).all()
    # the (S, N) weights are the (S,) ones divided by each row's likelihood where nothing is zero
    rng = np.random.default_rng(0)
    ll, w = np.log(rng.uniform(0.2, 1.0, size=(300, 4))), rng.normal(size=300)
    a = psis_loo(ll, log_weights=w)
    b = psis_loo(ll, log_weights=w[:, None] - ll)
    assert np.allclose(a["elpd"], b["elpd"]) and np.allclose(a["khat"], b["khat"])


def test_evidence_falls_back_to_prior_draws_when_no_network_draw_has_likelihood(briefly_trained):
    """Every network draw's t0 above the fastest response: a defensive share of prior draws keeps the estimate finite."""
    model, amortizer = briefly_trained

    class Shifted:  # the posterior network's draws all put t0 at 0.5 s
        def __init__(self, net):
            self.net = net

        def __getattr__(self, name):
            return getattr(self.net, name)

        def sample_array(self, data, n, seed=None, **kw):
            d = self.net.sample_array(data, n, seed=seed, **kw)
            d[:, 3] = 0.5
            return d

    x = model.simulate_data(torch.tensor([[0.5, 1.2, 0.5, 0.2]]), 30, torch.Generator().manual_seed(4))[0].numpy()
    x[0, 0] = 0.25  # faster than every network draw's t0
    original = amortizer.posterior
    try:
        amortizer._modules["posterior"] = Shifted(original)
        out = amortizer.log_marginal_likelihood(x, 1000)
    finally:
        amortizer._modules["posterior"] = original
    assert out["defensive_share"] == 0.2 and np.isfinite(out["log_ml"])

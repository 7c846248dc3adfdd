"""Fast coupling transforms: invertibility, exact log-determinants, equality with nflows, normalization."""

from __future__ import annotations

import math

import pytest
import torch
from nflows.nn.nets import ResidualNet
from nflows.transforms.coupling import AffineCouplingTransform, PiecewiseRationalQuadraticCouplingTransform
from nflows.transforms.splines.rational_quadratic import unconstrained_rational_quadratic_spline

import amortbayes.networks.coupling as coupling
from amortbayes.networks import FlowSettings, build_flow, sample_flow
from amortbayes.networks.context import PairedContext
from amortbayes.networks.coupling import AffineCoupling, SplineCoupling, rational_quadratic_spline

BOUND = 3.0
CONTEXT = 3


def randomized(transform: torch.nn.Module, seed: int = 0, scale: float = 0.5) -> torch.nn.Module:
    """Perturb every weight so the transform is far from its near-identity initialisation."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in transform.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return transform


def make(kind: str, features: int, even: bool, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    if kind == "spline":
        t = SplineCoupling(features, CONTEXT, hidden=16, blocks=2, bins=6, tail_bound=BOUND, even=even)
    else:
        t = AffineCoupling(features, CONTEXT, hidden=16, blocks=2, even=even)
    return randomized(t, seed).double()


def points(n: int, features: int, seed: int = 1) -> torch.Tensor:
    """Inputs inside and outside [-B, B], the bounds themselves included."""
    gen = torch.Generator().manual_seed(seed)
    x = 2.0 * BOUND * torch.randn(n, features, generator=gen, dtype=torch.float64)
    x[0] = BOUND
    x[1] = -BOUND
    x[2] = 3 * BOUND
    return x


CASES = [(kind, features, even) for kind in ("spline", "affine") for features in (2, 5) for even in (True, False)]


@pytest.mark.parametrize("kind,features,even", CASES)
def test_inverse_recovers_inputs_and_negates_logabsdet(kind, features, even):
    t = make(kind, features, even)
    x = points(200, features)
    assert ((x.abs() > BOUND).any(dim=1)).float().mean() > 0.2  # the tails are exercised
    for seed in range(3):  # several contexts, one per row
        c = torch.randn(200, CONTEXT, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        y, ld = t(x, c)
        x_back, ld_back = t.inverse(y, c)
        assert ld.shape == (200,)
        assert torch.allclose(x_back, x, atol=1e-4)
        assert torch.allclose(ld_back, -ld, atol=1e-4)
        assert not torch.equal(y, x)


@pytest.mark.parametrize("kind,features,even", CASES)
def test_logabsdet_is_log_abs_det_of_autograd_jacobian(kind, features, even):
    t = make(kind, features, even)
    x = points(6, features, seed=2)
    c = torch.randn(6, CONTEXT, dtype=torch.float64)
    _, ld = t(x, c)
    _, ld_inv = t.inverse(x, c)
    for i in range(x.shape[0]):
        ctx = c[i : i + 1]
        jac = torch.autograd.functional.jacobian(lambda z: t(z[None], ctx)[0][0], x[i])
        jac_inv = torch.autograd.functional.jacobian(lambda z: t.inverse(z[None], ctx)[0][0], x[i])
        assert torch.allclose(ld[i], torch.linalg.slogdet(jac)[1], atol=1e-8)
        assert torch.allclose(ld_inv[i], torch.linalg.slogdet(jac_inv)[1], atol=1e-8)


# -- equality with nflows ------------------------------------------------------------------------


def nflows_conditioner(ours: coupling.ResidualConditioner, n_in: int, rows: torch.Tensor) -> ResidualNet:
    """nflows' ResidualNet computing the same function; ``rows[j]`` is our output row of its output j."""
    hid, n_blocks = ours.hidden, len(ours.blocks)
    net = ResidualNet(n_in, len(rows), hid, context_features=ours.context.in_features, num_blocks=n_blocks)
    net = net.to(ours.output.weight.dtype)
    with torch.no_grad():
        net.initial_layer.weight.copy_(torch.cat([ours.inputs.weight, ours.context.weight[:hid]], dim=1))
        net.initial_layer.bias.copy_(ours.context.bias[:hid])
        for i, (block, (first, last)) in enumerate(zip(net.blocks, ours.blocks)):
            block.linear_layers[0].load_state_dict(first.state_dict())
            block.linear_layers[1].load_state_dict(last.state_dict())
            block.context_layer.weight.copy_(ours.context.weight[hid * (1 + i) : hid * (2 + i)])
            block.context_layer.bias.copy_(ours.context.bias[hid * (1 + i) : hid * (2 + i)])
        net.final_layer.weight.copy_(ours.output.weight[rows])
        net.final_layer.bias.copy_(ours.output.bias[rows])
    return net


def spline_rows(t: int, k: int) -> torch.Tensor:
    """Our output row of each nflows output (feature j, parameter p) at index j (3K - 1) + p."""
    rows = []
    for j in range(t):
        rows += [(kk * 2 + 0) * t + j for kk in range(k)]  # widths
        rows += [(kk * 2 + 1) * t + j for kk in range(k)]  # heights
        rows += [2 * k * t + kk * t + j for kk in range(k - 1)]  # interior derivatives
    return torch.tensor(rows)


def nflows_twin(ours: torch.nn.Module) -> torch.nn.Module:
    halves = ours.halves
    first = halves.first
    transformed_first = [1] * first + [0] * (ours.features - first)
    mask = torch.tensor(transformed_first if halves.even else [1 - m for m in transformed_first])
    if isinstance(ours, SplineCoupling):
        rows = spline_rows(halves.n_transform, ours.bins)
        twin = PiecewiseRationalQuadraticCouplingTransform(
            mask,
            lambda n_in, n_out: nflows_conditioner(ours.conditioner, n_in, rows),
            num_bins=ours.bins,
            tails="linear",
            tail_bound=ours.tail_bound,
        )
    else:
        rows = torch.arange(2 * halves.n_transform)
        twin = AffineCouplingTransform(mask, lambda n_in, n_out: nflows_conditioner(ours.conditioner, n_in, rows))
    return twin.double()


@pytest.mark.parametrize("kind,features,even", CASES)
def test_coupling_equals_nflows_with_the_same_weights(kind, features, even):
    ours = make(kind, features, even, seed=3)
    twin = nflows_twin(ours)
    x = points(300, features, seed=4)
    c = torch.randn(300, CONTEXT, dtype=torch.float64)
    for direction in ("forward", "inverse"):
        y, ld = getattr(ours, direction)(x, c)
        y_nf, ld_nf = getattr(twin, direction)(x, c)
        assert torch.allclose(y, y_nf, atol=1e-5, rtol=0)
        assert torch.allclose(ld, ld_nf, atol=1e-5, rtol=0)


@pytest.mark.parametrize("dtype,atol", [(torch.float64, 1e-9), (torch.float32, 2e-3)])
def test_spline_equals_nflows_spline_on_identical_parameters(dtype, atol):
    gen = torch.Generator().manual_seed(5)
    n, t, k = 2000, 3, 8
    x = (4.0 * torch.randn(n, t, generator=gen)).to(dtype)
    params = torch.randn(n, t, 3 * k - 1, generator=gen).to(dtype)
    widths, heights, derivs = params[..., :k], params[..., k : 2 * k], params[..., 2 * k :]
    bins = torch.stack([widths, heights]).permute(3, 0, 1, 2)  # (K, 2, n, t)
    for inverse in (False, True):
        y_nf, ld_nf = unconstrained_rational_quadratic_spline(
            x, widths, heights, derivs, inverse=inverse, tails="linear", tail_bound=BOUND
        )
        y, ld = rational_quadratic_spline(x, bins, derivs.permute(2, 0, 1), BOUND, inverse=inverse)
        assert torch.allclose(y, y_nf, atol=atol, rtol=0)
        assert torch.allclose(ld, ld_nf, atol=10 * atol, rtol=0)


def test_spline_density_is_continuous_at_the_tail_bound():
    gen = torch.Generator().manual_seed(6)
    x = torch.tensor([-BOUND - 1e-9, -BOUND, BOUND, BOUND + 1e-9], dtype=torch.float64)
    bins = torch.randn(8, 2, 4, generator=gen, dtype=torch.float64)
    derivs = torch.randn(7, 4, generator=gen, dtype=torch.float64)
    y, ld = rational_quadratic_spline(x, bins, derivs, BOUND)
    assert torch.allclose(y, x, atol=1e-9)
    assert torch.allclose(ld, torch.zeros(4, dtype=torch.float64), atol=1e-9)


# -- grouped contexts and CPU chunks ---------------------------------------------------------------


@pytest.mark.parametrize("kind", ["spline", "affine"])
def test_grouped_context_and_chunks_give_the_per_row_result(kind, monkeypatch):
    t = make(kind, 5, True, seed=7)
    x = points(120, 5, seed=8)
    groups = torch.randn(4, CONTEXT, dtype=torch.float64)  # 30 consecutive rows per context row
    per_row = groups.repeat_interleave(30, dim=0)
    reference = [t(x, per_row), t.inverse(x, per_row)]
    for chunk in (10_000, 8, 50):  # no chunks; chunks inside a group; whole groups per chunk
        monkeypatch.setattr(coupling, "CPU_CHUNK_ROWS", chunk)
        for ctx in (per_row, groups):
            for (y, ld), (y_ref, ld_ref) in zip([t(x, ctx), t.inverse(x, ctx)], reference):
                assert torch.allclose(y, y_ref, atol=1e-10)
                assert torch.allclose(ld, ld_ref, atol=1e-10)


@pytest.mark.parametrize("inference", [False, True])
def test_worker_threads_give_the_sequential_result(monkeypatch, inference):
    t = make("spline", 5, False, seed=13)
    x = points(300, 5, seed=14)
    c = torch.randn(300, CONTEXT, dtype=torch.float64)
    monkeypatch.setattr(coupling, "CPU_CHUNK_ROWS", 16)
    with torch.no_grad():
        reference = t.inverse(x, c)  # one thread (conftest): sequential chunks
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with torch.inference_mode() if inference else torch.no_grad():
            y, ld = t.inverse(x, c)  # many chunks
            y_small, _ = t.inverse(x[:20], c[:20])  # one chunk, still in a worker
        assert torch.get_num_threads() == 2  # the workers' single thread does not leak back
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(y, reference[0]) and torch.equal(ld, reference[1])
    assert torch.allclose(y_small, reference[0][:20], atol=1e-12)
    assert y.is_inference() == inference


def test_sample_flow_with_grouped_context_matches_repeated_context():
    torch.manual_seed(9)
    flow = build_flow(4, CONTEXT, FlowSettings(layers=3, hidden=16))
    context = torch.randn(3, CONTEXT)
    noise = torch.randn(3 * 50, 4)
    grouped, _ = flow._transform.inverse(noise, context=context)
    repeated, _ = flow._transform.inverse(noise, context=context.repeat_interleave(50, dim=0))
    assert torch.allclose(grouped, repeated, atol=1e-5)
    assert sample_flow(flow, 50, context, torch.Generator().manual_seed(0)).shape == (3, 50, 4)


@pytest.mark.parametrize("kind,dim", [("spline", 3), ("affine", 2), ("spline", 1)])
@pytest.mark.parametrize("threads", [1, 2])
def test_paired_context_gives_the_concatenated_result(kind, dim, threads, monkeypatch):
    """All (group, draw) pairs as a PairedContext: the same draws and densities as the written-out rows."""
    torch.manual_seed(6)
    flow = randomized(build_flow(dim, 5, FlowSettings(kind=kind, layers=2, hidden=16)), scale=0.3)
    inner, outer = torch.randn(2, 7, 2), torch.randn(2, 30, 3)  # 2 data sets, 7 groups, 30 draws
    paired = PairedContext(inner, outer)
    rows = paired.materialize()
    assert rows.shape == paired.shape == (2 * 30 * 7, 5)
    torch.testing.assert_close(rows.view(2, 30, 7, 5)[1, 4, 6], torch.cat([inner[1, 6], outer[1, 4]]))
    monkeypatch.setattr(coupling, "CPU_CHUNK_ROWS", 16)  # many pieces, some splitting a data set's draws
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.no_grad():
            a, log_a = sample_flow(flow, 1, paired, torch.Generator().manual_seed(2), log_prob=True)
            b, log_b = sample_flow(flow, 1, rows, torch.Generator().manual_seed(2), log_prob=True)
    finally:
        torch.set_num_threads(before)
    # float32: the two orders of the first layer's products round differently, and a spline's inverse
    # amplifies that (seen: 3.6e-5 on draws of size ~1.5 on one CPU, under 1e-5 on another)
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(log_a, log_b, atol=1e-4, rtol=1e-4)
    with torch.no_grad():  # several draws per pair: written out, same result
        many = sample_flow(flow, 3, paired, torch.Generator().manual_seed(4))
        torch.testing.assert_close(many, sample_flow(flow, 3, rows, torch.Generator().manual_seed(4)))
    with pytest.raises(ValueError, match="inner .B, J, C. and outer .B, I, C."):
        PairedContext(inner, outer[:1])


@pytest.mark.parametrize("kind", ["spline", "affine"])
def test_sample_flow_log_prob_equals_flow_log_prob(kind):
    torch.manual_seed(4)
    flow = build_flow(3, CONTEXT, FlowSettings(kind=kind, layers=3, hidden=16))
    context = torch.randn(2, CONTEXT)
    with torch.no_grad():
        theta, log_q = sample_flow(flow, 40, context, torch.Generator().manual_seed(1), log_prob=True)
        direct = flow.log_prob(theta.reshape(80, 3), context=context.repeat_interleave(40, dim=0)).reshape(2, 40)
    assert log_q.shape == (2, 40)
    torch.testing.assert_close(log_q, direct, atol=1e-4, rtol=1e-4)


# -- flows built from the couplings ----------------------------------------------------------------


@pytest.mark.parametrize("kind", ["spline", "affine"])
def test_flow_density_integrates_to_one(kind):
    torch.manual_seed(10)
    flow = build_flow(2, CONTEXT, FlowSettings(kind=kind, layers=3, hidden=16, tail_bound=BOUND))
    for transform in flow._transform._transforms:
        if isinstance(transform, (SplineCoupling, AffineCoupling)):
            randomized(transform, seed=11, scale=0.3)
    flow = flow.double().eval()
    grid = torch.linspace(-16.0, 16.0, 401, dtype=torch.float64)
    xx, yy = torch.meshgrid(grid, grid, indexing="ij")
    theta = torch.stack([xx.flatten(), yy.flatten()], dim=1)
    context = torch.randn(1, CONTEXT, dtype=torch.float64).expand(theta.shape[0], CONTEXT)
    with torch.no_grad():
        density = flow.log_prob(theta, context=context).exp()
    step = (grid[1] - grid[0]).item()
    assert math.isclose(density.sum().item() * step**2, 1.0, abs_tol=1e-2)


def test_training_gradients_are_finite():
    torch.manual_seed(12)
    flow = build_flow(3, CONTEXT, FlowSettings(layers=2, hidden=16))
    loss = -flow.log_prob(3 * torch.randn(64, 3), context=torch.randn(64, CONTEXT)).mean()
    loss.backward()
    grads = [p.grad for p in flow.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_bad_shapes_raise_clear_errors():
    t = SplineCoupling(4, CONTEXT, hidden=8, blocks=1, bins=4, tail_bound=BOUND, even=True)
    with pytest.raises(ValueError, match="expected inputs of shape"):
        t(torch.zeros(5, 3), torch.zeros(5, CONTEXT))
    with pytest.raises(ValueError, match="expected a context"):
        t(torch.zeros(5, 4))
    with pytest.raises(ValueError, match="expected a context"):
        t(torch.zeros(5, 4), torch.zeros(2, CONTEXT))
    with pytest.raises(ValueError, match="at least 2 features"):
        SplineCoupling(1, CONTEXT, even=True)
    with pytest.raises(ValueError, match="at least 2 bins"):
        SplineCoupling(4, CONTEXT, bins=1)
    with pytest.raises(ValueError, match="needs a context"):
        AffineCoupling(4, 0)

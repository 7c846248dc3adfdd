"""Adversarial robustness: does FIM-trace regularization cut attacked KL, at what accuracy and cost?

Usage: python benchmarks/robust.py [--models linear,moons,hierarchical] [--betas 0.01,0.1,1] [--eps 0.5]
       [--epochs E --iterations I] [--sims 100] [--out DIR]
Prints one JSON object.  Per model, amortizers are trained through the one fit() with the same
seed (same standardization), one without regularizer and one per beta (``FIMTrace(beta)`` with
its defaults), then scored on the same held-out simulations:

* ``tradeoff``: per beta, the held-out NLL (the networks' standardized scale), the mean and median
  KL between clean and attacked posteriors at ``--eps`` (L2, standardized units; 50 ascent
  steps, 64 draws) and the attacked posteriors' coverage error (mean of coverage minus level
  over levels 0.05-0.95; negative: over-confident); ``kl_factor`` = plain KL / regularized KL,
  ``nll_rise`` = relative rise of the NLL;
* ``report``: KL and coverage over radii 0.1-2 for the plain amortizer and the one with
  ``--report-beta``;
* ``step_seconds``: seconds per training step without and with the regularizer (``--timing-steps``
  steps of the same fit() each, one after the other) and their ratio;
* linear model (``GaussianLinear(dim=10)``, posterior linear Gaussian): the exact posterior's
  worst-case KL at ``--eps`` for reference.

Models: ``linear`` (10 data dimensions), ``glm`` (the SBI benchmark's Bernoulli GLM: 10
parameters, logistic, observed through the 10 sufficient statistics ``X'y``), ``moons`` (two
moons: a posterior as narrow as the data's noise, so even the exact one moves far under small
perturbations), ``hierarchical`` (``HierarchicalGaussian``, a multilevel amortizer, every
group's rows perturbed).
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

from _common import emit, parser, setup, train_or_load, training_arguments


def _models():
    from _sbi_models import BernoulliGLM

    from amortbayes.models import GaussianLinear, HierarchicalGaussian, TwoMoons

    return {"linear": GaussianLinear(dim=10), "glm": BernoulliGLM(), "moons": TwoMoons(),
            "hierarchical": HierarchicalGaussian()}


def _make(model):
    from amortbayes.amortizers import MultilevelAmortizer, PosteriorAmortizer

    return MultilevelAmortizer(model) if hasattr(model, "sample_local") else PosteriorAmortizer(model)


def _step_seconds(model, regularizer, steps: int, batch_size: int) -> float:
    from amortbayes import TrainSettings, fit

    settings = TrainSettings(epochs=1, iterations_per_epoch=steps, batch_size=batch_size, validation_sims=8)
    amortizer = _make(model)
    t0 = time.perf_counter()
    fit(amortizer, model, settings=settings, progress=False, regularizer=regularizer)
    return (time.perf_counter() - t0) / steps


def main() -> None:
    p = parser(__doc__)
    training_arguments(p, epochs=20, iterations=150, lr=1e-3, batch_size=64)
    p.add_argument("--models", default="linear,glm")
    p.add_argument("--betas", default="0.001,0.01,0.1,1")
    p.add_argument("--report-beta", type=float, default=0.1)
    p.add_argument("--eps", type=float, default=0.5)
    p.add_argument("--sims", type=int, default=100)
    p.add_argument("--eval-draws", type=int, default=500)
    p.add_argument("--timing-steps", type=int, default=200)
    p.add_argument("--attack-steps", type=int, default=50, help="gradient ascent steps of every attack")
    p.add_argument("--out", default="benchmark-robust")
    args = p.parse_args()
    device = setup(args)
    import numpy as np
    import torch

    from amortbayes.robust import FIMTrace, robustness_report, robustness_tradeoff

    warnings.simplefilter("ignore")
    out = Path(args.out)
    betas = [float(b) for b in args.betas.split(",") if b]
    result = {"eps": args.eps, "norm": "l2", "sims": args.sims,
              "steps": args.epochs * args.iterations, "batch_size": args.batch_size, "fim_defaults": FIMTrace(1.0).to_dict()}
    models = _models()
    for name in args.models.split(","):
        model = models[name]
        res: dict = {}
        amortizers = {}
        for beta in [0.0, *betas]:
            reg = None if beta == 0.0 else FIMTrace(beta)
            amortizers[beta] = train_or_load(_make, model, out / name / f"beta_{beta:g}", args, res, f"beta_{beta:g}",
                                             regularizer=reg).to(device)
        sims = model.simulate(args.sims, torch.Generator().manual_seed(11))
        t0 = time.perf_counter()
        table = robustness_tradeoff({b: a for b, a in amortizers.items()}, sims, args.eps, eval_draws=args.eval_draws,
                                    steps=args.attack_steps)
        res["tradeoff_seconds"] = round(time.perf_counter() - t0, 1)
        plain = table.iloc[0]
        table["kl_factor"] = plain["kl_mean"] / table["kl_mean"]
        table["nll_rise"] = (table["nll"] - plain["nll"]) / abs(plain["nll"])
        res["tradeoff"] = table.drop(columns=["label"]).round(4).to_dict(orient="records")
        if args.report_beta in amortizers:
            for label, beta in (("plain", 0.0), (f"beta_{args.report_beta:g}", args.report_beta)):
                rep = robustness_report(amortizers[beta], sims, (0.1, 0.25, 0.5, 1.0, 2.0), eval_draws=args.eval_draws,
                                        steps=args.attack_steps)
                res[f"report_{label}"] = rep.summary.drop(columns=["norm"]).round(4).to_dict(orient="records")
                if label != "plain":
                    rep.plot(out / f"robustness_{name}.png")
        if name == "linear":
            std = float(amortizers[0.0].x_std.std.mean())
            res["exact_posterior_worst_kl"] = round(model.worst_case_kl(args.eps, data_sd=std), 4)
        plain_s = _step_seconds(model, None, args.timing_steps, args.batch_size)
        reg_s = _step_seconds(model, FIMTrace(args.report_beta), args.timing_steps, args.batch_size)
        res["step_seconds"] = {"plain": round(plain_s, 5), "fim": round(reg_s, 5), "ratio": round(reg_s / plain_s, 3)}
        result[name] = res
        print(f"{name}: done", flush=True, file=__import__("sys").stderr)
    result["kl_factor_at_report_beta"] = {
        n: next((r["kl_factor"] for r in result[n]["tradeoff"] if r["beta"] == args.report_beta), None)
        for n in args.models.split(",")}
    np.set_printoptions(precision=4)
    emit(result, device)


if __name__ == "__main__":
    main()

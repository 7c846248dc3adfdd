"""Standard SBI tasks at fixed simulation budgets: C2ST against reference posteriors and training time, beside sbi's NPE.

Usage: python benchmarks/sbi_tasks.py [--tasks gaussian_linear two_moons ...] [--budgets 1000 10000 100000]
       [--observations 5] [--draws 5000] [--no-sbi] [--seed 0] [--out results.json] [--reuse]

For every task of ``_sbi_tasks.TASKS`` and every budget, ``budget`` simulations are drawn
once (seed ``--seed``) and both methods train offline on exactly those:

* amortbayes: ``PosteriorAmortizer(model, PosteriorSettings.for_budget(budget, summary=task.summary))``
  and ``fit(amortizer, data=...)`` with its budget-sized defaults (early stopping, best weights);
* sbi (when installed): ``NPE(prior, density_estimator="nsf")`` with all of its defaults
  (neural spline flow, batch 200, learning rate 5e-4, early stopping after 20 epochs), on the
  data sets flattened to vectors (sbi's default: no embedding network).

For each of ``--observations`` reference data sets (simulated from prior draws with seed
1000) both draw ``--draws`` posterior samples, and a classifier two-sample test (C2ST,
0.5 = indistinguishable) compares them with the task's reference posterior.  Prints one
JSON object; with ``--out`` it is also written after every task and budget, and ``--reuse``
skips the task/budget/method entries already in that file.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from _common import emit, parser, setup
from _sbi_tasks import TASKS
from amortbayes import PosteriorAmortizer, PosteriorSettings, fit
from amortbayes.diagnostics import c2st


def sbi_available() -> bool:
    try:
        import sbi  # noqa: F401
    except ImportError:
        return False
    return True


def sbi_prior(task):
    """The task's prior as a torch distribution for sbi (None: sbi's empirical prior from the simulations)."""
    from sbi.utils import BoxUniform

    d = len(task.model.parameter_names)
    boxes = {"two_moons": 1.0, "slcp": 3.0, "gaussian_mixture": 10.0}
    if task.name in boxes:
        return BoxUniform(-boxes[task.name] * torch.ones(d), boxes[task.name] * torch.ones(d))
    if task.name == "gaussian_linear":
        return torch.distributions.MultivariateNormal(torch.zeros(d), task.model.prior_sd**2 * torch.eye(d))
    cov = getattr(task.model, "prior_covariance", None)
    if cov is not None:
        cov = torch.as_tensor(np.asarray(cov() if callable(cov) else cov), dtype=torch.float32)
        return torch.distributions.MultivariateNormal(torch.zeros(d), cov)
    return None


def flat(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.shape[0], -1)


def train_amortbayes(task, data, budget: int, seed: int):
    settings = PosteriorSettings.for_budget(budget, summary=task.summary, seed=seed)
    amortizer = PosteriorAmortizer(task.model, settings)
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = fit(amortizer, data=data, seed=seed, progress=False)
    seconds = time.perf_counter() - t0
    info = {"train_seconds": round(seconds, 1), "epochs": int(len(history)),
            "kept_epoch": int(history.loc[history["kept"], "epoch"].iloc[0]),
            "best_val_loss": round(float(history["val_loss"].min()), 4),
            "overfitting_warned": any("overfitting" in str(w.message) for w in caught)}
    return (lambda x, n, k: amortizer.sample_array(x, n, seed=k)), info


def train_sbi(task, data, seed: int):
    from sbi.inference import NPE

    torch.manual_seed(seed)
    prior = sbi_prior(task)
    inference = NPE(prior=prior, density_estimator="nsf", show_progress_bars=False)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        estimator = inference.append_simulations(data["theta_global"], flat(data["x"])).train()
        posterior = inference.build_posterior(estimator)
    seconds = time.perf_counter() - t0
    epochs = int(inference._summary.get("epochs_trained", [0])[-1]) if hasattr(inference, "_summary") else None

    def sample(x: np.ndarray, n: int, k: int) -> np.ndarray:
        torch.manual_seed(k)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = posterior.sample((n,), x=torch.as_tensor(x, dtype=torch.float32).reshape(1, -1),
                                   show_progress_bars=False)
        return out.numpy()

    return sample, {"train_seconds": round(seconds, 1), "epochs": epochs}


def evaluate(sample, task, observations, draws: int) -> dict:
    scores = []
    for k, x in enumerate(observations):
        reference = task.reference_posterior(x, draws, seed=k)
        approx = sample(x, draws, k)
        scores.append(c2st(approx, reference, seed=k))
    return {"c2st": [round(s, 3) for s in scores], "c2st_mean": round(float(np.mean(scores)), 3),
            "c2st_se": round(float(np.std(scores, ddof=1) / math.sqrt(len(scores))), 3) if len(scores) > 1 else None}


def compare(entry: dict) -> None:
    """Add amortbayes-minus-sbi C2ST and the ratio of training times where both ran."""
    a, s = entry.get("amortbayes"), entry.get("sbi_npe")
    if a and s:
        entry["c2st_diff_vs_sbi"] = round(a["c2st_mean"] - s["c2st_mean"], 3)
        entry["train_time_ratio_vs_sbi"] = round(a["train_seconds"] / max(s["train_seconds"], 1e-9), 2)


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    p.add_argument("--budgets", nargs="+", type=int, default=[1_000, 10_000, 100_000])
    p.add_argument("--observations", type=int, default=5)
    p.add_argument("--draws", type=int, default=5_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-sbi", action="store_true", help="skip sbi's NPE even when sbi is installed")
    p.add_argument("--methods", nargs="+", default=["amortbayes", "sbi_npe"], choices=["amortbayes", "sbi_npe"])
    p.add_argument("--out", type=Path, default=None, help="JSON file written after every task and budget")
    p.add_argument("--reuse", action="store_true", help="keep the entries already in --out")
    args = p.parse_args()
    device = setup(args)
    methods = [m for m in args.methods if m != "sbi_npe" or (not args.no_sbi and sbi_available())]
    results: dict = {}
    if args.reuse and args.out is not None and args.out.exists():
        results = json.loads(args.out.read_text()).get("tasks", {})
    for name in args.tasks:
        task = TASKS[name]
        observations = task.observations(args.observations, seed=1000)
        for budget in args.budgets:
            entry = results.setdefault(name, {}).setdefault(str(budget), {})
            data = task.model.simulate(budget, torch.Generator().manual_seed(args.seed))
            for method in methods:
                if method in entry:
                    continue
                if method == "amortbayes":
                    sample, info = train_amortbayes(task, data, budget, args.seed)
                else:
                    sample, info = train_sbi(task, data, args.seed)
                entry[method] = {**info, **evaluate(sample, task, observations, args.draws)}
            compare(entry)
            if args.out is not None:
                args.out.parent.mkdir(parents=True, exist_ok=True)
                args.out.write_text(json.dumps({"tasks": results}, indent=2))
    emit({"benchmark": "sbi_tasks", "observations": args.observations, "draws": args.draws, "seed": args.seed,
          "sbi_installed": sbi_available(), "methods": methods, "tasks": results}, device)


if __name__ == "__main__":
    main()

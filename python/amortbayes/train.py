"""The one training loop: online or offline, validation, checkpoints and resume, progress, device.

:func:`fit` minimises ``amortizer.loss(batch)`` with Adam, a cosine-decayed learning rate
and gradient-norm clipping.  It serves every amortizer (posterior, multilevel, and later
joint, sensitivity-aware and FIM-regularised ones), which differ only in their loss.

A ``regularizer`` (:class:`amortbayes.robust.FIMTrace`) adds its own gradient to the loss's
before each optimizer step (separate gradients, Glöckler et al. 2023); it is recorded on the
amortizer (``amortizer.regularizer``, saved by :func:`amortbayes.save`) and in checkpoints.

* **online**: every step simulates a fresh batch from ``simulator``; an epoch is
  ``iterations_per_epoch`` steps; validation uses one fixed simulated set.
* **offline**: ``data`` is a fixed batch of simulations (a simulation budget); a
  ``validation_fraction`` is held out; an epoch is one shuffled pass over the rest.
  Training stops once the validation loss has not improved for ``patience`` epochs
  (early stopping) and the amortizer ends with the weights of its best epoch, not the
  last: with a fixed budget the networks eventually memorise the training simulations
  (the validation loss rises while the training loss falls), and the best validation
  loss is the best available estimate of ``E_x KL(p(theta | x) || q(theta | x))``.
  :meth:`TrainSettings.for_budget` gives settings sized to a budget.

Both modes validate the moving average of the weights after every epoch and record which
epoch was best (``kept`` in the history); online training keeps its fixed budget and ends
with the last weights unless ``keep_best=True``.

After every epoch a checkpoint (weights, optimizer and scheduler state, random states,
history, the best epoch's weights) is written to ``checkpoint_dir``; ``resume=True`` continues from it with the same
optimizer state, so an interrupted run ends where an uninterrupted one would.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
import warnings
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from tqdm.auto import tqdm

from amortbayes.budget import budget_defaults
from amortbayes.simulation import Batch, Simulator

CHECKPOINT_FILE = "checkpoint.pt"


@dataclasses.dataclass(frozen=True)
class TrainSettings:
    """Settings of :func:`fit`.

    Attributes:
        epochs: number of epochs.
        iterations_per_epoch: optimizer steps per epoch in online training.
        batch_size: simulated data sets per step.
        learning_rate: initial Adam learning rate; decays to ``learning_rate * final_lr_fraction``
            along a cosine over all steps.
        final_lr_fraction: learning rate at the end relative to the start.
        clip_grad_norm: gradient norm clipping threshold (``None`` disables).
        validation_sims: size of the fixed validation set in online training.
        validation_fraction: held-out fraction in offline training.
        adapt_sims: simulations used to learn the standardization in online training.
        ema_decay: the weights an amortizer ends with (and is validated with) are an
            exponential moving average of the optimizer's iterates with this decay (0: the
            last iterate).  Averaging removes the step-to-step noise of small batches that
            the learning-rate decay leaves; it matters where posteriors are narrow against
            the prior (sleepstudy's sigma: 0.1 posterior SD is 0.6 % of its prior scale).
        max_skipped_batches: a batch whose loss is not finite is skipped (no update) up to this
            many times per epoch; one more stops training with :class:`TrainingDiverged`.  A
            rare extreme prior draw can overflow a network once (seen on the diffusion model:
            a boundary of 27, 20 prior SDs out, after 3,300 good steps); a broken simulator or a
            diverging optimizer fails every batch and stops at its third bad batch.
        weight_decay: decoupled weight decay (AdamW) per step, relative to the learning rate;
            0 is plain Adam.  Regularizes the networks at small simulation budgets.
        patience: offline training stops after this many epochs without a validation loss
            lower than the best so far by more than ``min_improvement`` (``None``: never
            early; every epoch runs).  Ignored in online training, which has a fixed budget.
        min_improvement: a validation loss counts as an improvement only if it is lower than
            the best so far by more than this (nats).
        keep_best: end with the weights of the epoch with the lowest validation loss instead
            of the last epoch's.  ``None`` (default): yes in offline training, no in online
            training (whose validation loss keeps falling to the end of a fixed budget) or
            without a validation set.

    Example:
        >>> TrainSettings.for_budget(10_000).batch_size
        256
    """

    epochs: int = 20
    iterations_per_epoch: int = 100
    batch_size: int = 64
    learning_rate: float = 1e-3
    final_lr_fraction: float = 0.01
    clip_grad_norm: float | None = 5.0
    validation_sims: int = 256
    validation_fraction: float = 0.1
    adapt_sims: int = 1024
    ema_decay: float = 0.999
    max_skipped_batches: int = 2
    weight_decay: float = 0.0
    patience: int | None = 20
    min_improvement: float = 0.0
    keep_best: bool | None = None

    def __post_init__(self) -> None:
        if int(self.max_skipped_batches) < 0:
            raise ValueError(f"max_skipped_batches must be >= 0, got {self.max_skipped_batches}")
        for name in ("epochs", "iterations_per_epoch", "batch_size", "validation_sims", "adapt_sims"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"TrainSettings.{name} must be a positive integer")
        if not 0.0 < self.learning_rate:
            raise ValueError("TrainSettings.learning_rate must be positive")
        if not 0.0 <= self.validation_fraction < 1.0:
            raise ValueError("TrainSettings.validation_fraction must be in [0, 1)")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError("TrainSettings.ema_decay must be in [0, 1)")
        if self.weight_decay < 0.0:
            raise ValueError(f"TrainSettings.weight_decay must be >= 0, got {self.weight_decay}")
        if self.patience is not None and int(self.patience) < 1:
            raise ValueError(f"TrainSettings.patience must be a positive integer or None, got {self.patience}")
        if self.min_improvement < 0.0:
            raise ValueError(f"TrainSettings.min_improvement must be >= 0, got {self.min_improvement}")

    @classmethod
    def for_budget(cls, n_simulations: int, **overrides: Any) -> TrainSettings:
        """Offline settings for a budget of ``n_simulations`` simulations (see :func:`budget_defaults`)."""
        return dataclasses.replace(cls(), **{**budget_defaults(n_simulations)["train"], **overrides})


class TrainingDiverged(FloatingPointError):
    """Raised when the loss becomes NaN or infinite."""


class OverfittingWarning(UserWarning):
    """Offline training: the validation loss rose while the training loss fell (the networks memorise the budget)."""


OVERFIT_WARNING_NATS = 0.5  # a rise of the validation loss above its best by more than this warns
HISTORY_COLUMNS = ["epoch", "train_loss", "fit_loss", "val_loss", "lr", "seconds", "skipped_batches", "best", "kept"]


def fit(
    amortizer: torch.nn.Module,
    simulator: Simulator | None = None,
    *,
    data: Batch | None = None,
    settings: TrainSettings | None = None,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
    device: str = "cpu",
    seed: int = 0,
    progress: bool = True,
    adapt: bool = True,
    regularizer: Any = None,
) -> pd.DataFrame:
    """Train ``amortizer`` online on ``simulator`` or offline on a fixed simulated ``data`` batch.

    Args:
        amortizer: any amortizer (``loss(batch)``, ``adapt(batch)``, ``config()``); one with
            ``calibrate(batch)`` gets the validation set after training (a joint amortizer keeps
            its simulations' summaries as the reference of its simulation-gap check).
        simulator: a model with ``simulate(batch_size, generator)`` (online training, and the
            source of the validation set).
        data: a fixed batch of simulations (offline training); overrides online simulation.
            The validation split is the first ``round(n * validation_fraction)`` of a random
            permutation of the ``n`` simulations seeded with ``seed + 1``.
        settings: optimisation settings; offline training on ``data`` defaults to
            :meth:`TrainSettings.for_budget` of its size, online training to ``TrainSettings()``.
        checkpoint_dir: folder for ``checkpoint.pt``, written after every epoch.
        resume: continue from the checkpoint in ``checkpoint_dir``.
        device: ``"cpu"`` or ``"cuda"`` (``"cuda:1"``...).
        seed: seeds simulation, shuffling and any stochastic layers.
        progress: show a tqdm progress bar.
        adapt: learn the standardization from ``adapt_sims`` simulations (or the training
            data) first.  ``False`` continues training an amortizer that was trained before
            (a larger budget, a lower learning rate) with the standardization its weights
            were trained under; the optimizer and the schedule start afresh.
        regularizer: a term added to the loss through its own gradient,
            :class:`amortbayes.robust.FIMTrace` (adversarial robustness); None: plain training.

    Returns:
        The loss history, one row per epoch run: ``epoch``, ``train_loss`` (the mean over
        the epoch's steps, each with the optimizer's weights before its update), ``fit_loss``
        (offline: the averaged weights' loss on a fixed sample of the training simulations as
        large as the validation set, the like-for-like partner of ``val_loss``; NaN online),
        ``val_loss`` (of the averaged weights), ``lr``, ``seconds``, ``skipped_batches``, ``best`` (True
        in the row with the lowest validation loss) and ``kept`` (True in the one row whose
        weights the amortizer ends with: the best one offline, the last one online unless
        ``keep_best=True``).  Offline training stops
        early after ``patience`` epochs without improvement, so it may have fewer rows
        than ``settings.epochs``.  With a regularizer, also ``fim_trace``: the epoch's mean
        Monte Carlo estimate of ``tr(I_x)`` (``train_loss`` stays the NPE loss alone).

    Warns:
        OverfittingWarning: offline, the validation loss ended more than 0.5 nats above its
            best while the loss of the same weights on training simulations (``fit_loss``) fell.

    Raises:
        TrainingDiverged: the loss became NaN/Inf (the last good checkpoint is kept).
        ValueError: inconsistent arguments or a checkpoint written for another amortizer.
    """
    if simulator is None and data is None:
        raise ValueError("fit() needs a simulator (online training) or data= (offline training)")
    if data is not None:
        data = _validate_offline(data)
    s = settings or (TrainSettings.for_budget(train_size(data)) if data is not None else TrainSettings())
    dev = _device(device)
    if resume and checkpoint_dir is None:
        raise ValueError("resume=True needs the checkpoint_dir of the interrupted run")

    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    amortizer.to(dev)
    if regularizer is not None and not hasattr(regularizer, "bind"):
        raise TypeError(f"regularizer must be a regularizer such as amortbayes.robust.FIMTrace(beta=...), "
                        f"got {type(regularizer).__name__}")

    # the validation set and the training split are fixed by the seed, before any resume
    if data is not None:
        n = train_size(data)
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed + 1))
        n_val = _validation_size(n, s)
        val = {k: v[perm[:n_val]] for k, v in data.items()} if n_val > 0 else None
        train = {k: v[perm[n_val:]] for k, v in data.items()}
        # the averaged weights' loss on training simulations, beside val_loss: the raw iterates'
        # step losses swing by orders of magnitude at high learning rates (seen: 20 to 20,000
        # nats between epochs), so their mean cannot tell whether the networks memorise
        fit_sample = {k: v[: max(1, n_val)] for k, v in train.items()}
        steps_per_epoch = math.ceil(train_size(train) / s.batch_size)
    else:
        vgen = torch.Generator().manual_seed(seed + 1)
        val = simulator.simulate(s.validation_sims, vgen)  # type: ignore[union-attr]
        train = None
        fit_sample = None
        steps_per_epoch = s.iterations_per_epoch
    offline = train is not None
    keep_best = (offline and val is not None) if s.keep_best is None else bool(s.keep_best)
    if keep_best and val is None:
        raise ValueError("keep_best=True needs a validation set: set validation_fraction > 0")
    patience = s.patience if offline else None

    total_steps = s.epochs * steps_per_epoch
    optimizer = torch.optim.AdamW(amortizer.parameters(), lr=s.learning_rate, weight_decay=s.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=total_steps, eta_min=s.learning_rate * s.final_lr_fraction
    )
    fingerprint = json.dumps({**amortizer.config(), **({"regularizer": regularizer.to_dict()} if regularizer else {})},
                             sort_keys=True)
    ckpt_path = Path(checkpoint_dir) / CHECKPOINT_FILE if checkpoint_dir is not None else None

    history: list[dict[str, Any]] = []
    start_epoch = 0
    params = [p for p in amortizer.parameters()]
    ema = [p.detach().clone() for p in params]
    best = _Best(params)
    reg = regularizer.bind(amortizer, params) if regularizer is not None else None  # checks it can take the amortizer
    amortizer.regularizer = regularizer  # how it was trained, saved with it (amortbayes.save)
    if resume:
        start_epoch, history = _load_checkpoint(
            ckpt_path, amortizer, optimizer, scheduler, gen, fingerprint, dev, ema, best, reg
        )
    elif adapt:
        adapt_batch = train if train is not None else simulator.simulate(s.adapt_sims, gen)  # type: ignore[union-attr]
        amortizer.adapt({k: v.to(dev) for k, v in adapt_batch.items()})
        ema = [p.detach().clone() for p in params]
    else:
        _check_adapted(amortizer)

    bar = tqdm(
        range(start_epoch, s.epochs), desc="training", unit="epoch", disable=not progress,
        initial=start_epoch, total=s.epochs,
    )
    for epoch in bar:
        if patience is not None and best.stale(epoch) >= patience:
            break  # a resumed run that had already stopped early
        t0 = time.perf_counter()
        amortizer.train()
        losses = []
        skipped: list[int] = []
        batches = _offline_batches(train, s.batch_size, gen) if train is not None else None
        for step in range(steps_per_epoch):
            batch = next(batches) if batches is not None else simulator.simulate(s.batch_size, gen)  # type: ignore[union-attr]
            batch = {k: v.to(dev) for k, v in batch.items()}
            loss = amortizer.loss(batch)
            if not torch.isfinite(loss):
                skipped.append(step + 1)
                if len(skipped) > s.max_skipped_batches:
                    last = f"the checkpoint of epoch {epoch}" if ckpt_path and epoch > 0 else "no checkpoint"
                    raise TrainingDiverged(
                        f"training diverged: the loss became {loss.item()} at epoch {epoch + 1}, step "
                        f"{step + 1} (non-finite losses at steps {skipped} of this epoch, more than "
                        f"max_skipped_batches={s.max_skipped_batches}); {last} is kept. Try a lower learning_rate "
                        f"(now {s.learning_rate}), a smaller clip_grad_norm, or check the simulator for NaN/Inf output."
                    )
                scheduler.step()  # the schedule keeps its length; no update from this batch
                continue
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if reg is not None:
                reg.add_gradient(batch, epoch * steps_per_epoch + step)
            if s.clip_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(amortizer.parameters(), s.clip_grad_norm)
            optimizer.step()
            scheduler.step()
            _update_average(ema, params, s.ema_decay, epoch * steps_per_epoch + step)
            losses.append(loss.item())
        if not losses:
            raise TrainingDiverged(f"training diverged: every batch of epoch {epoch + 1} had a non-finite loss")
        _swap(ema, params)  # validate the averaged weights
        val_loss = _evaluate(amortizer, val, s.batch_size * 8, dev)
        fit_loss = _evaluate(amortizer, fit_sample, s.batch_size * 8, dev)
        best.offer(epoch + 1, val_loss, params, s.min_improvement)
        _swap(ema, params)
        history.append(
            {
                "epoch": epoch + 1,
                "train_loss": sum(losses) / len(losses),
                "fit_loss": fit_loss,
                "val_loss": val_loss,
                "lr": optimizer.param_groups[0]["lr"],
                "seconds": time.perf_counter() - t0,
                "skipped_batches": len(skipped),
                **({"fim_trace": reg.epoch_value()} if reg is not None else {}),
            }
        )
        bar.set_postfix(loss=f"{history[-1]['train_loss']:.3f}", val=f"{val_loss:.3f}", best=best.epoch)
        if ckpt_path is not None:
            _save_checkpoint(ckpt_path, epoch + 1, amortizer, optimizer, scheduler, gen, history, fingerprint, ema, best,
                             reg)
    bar.close()
    if keep_best and best.epoch > 0:
        best.restore(params)  # the amortizer ends with the best epoch's averaged weights
    else:
        _swap(ema, params)  # the amortizer ends with the averaged weights
    amortizer.eval()
    calibrate = getattr(amortizer, "calibrate", None)
    if calibrate is not None and val is not None:  # statistics of the final networks on held-out simulations
        calibrate({k: v.to(dev) for k, v in val.items()})
    kept = best.epoch if keep_best and best.epoch > 0 else (history[-1]["epoch"] if history else 0)
    frame = pd.DataFrame([{**h, "best": h["epoch"] == best.epoch, "kept": h["epoch"] == kept} for h in history],
                         columns=HISTORY_COLUMNS + (["fim_trace"] if reg is not None else []))
    if offline:
        _warn_if_overfitting(frame, best.epoch, train_size(train), keep_best)
    return frame


class _Best:
    """The epoch with the lowest validation loss so far and a copy of its (averaged) weights."""

    def __init__(self, params: list[torch.Tensor]):
        self.epoch, self.loss = 0, math.inf
        self.weights = [p.detach().clone() for p in params]

    def offer(self, epoch: int, loss: float, params: list[torch.Tensor], min_improvement: float) -> None:
        if math.isfinite(loss) and loss < self.loss - min_improvement:
            self.epoch, self.loss = epoch, loss
            with torch.no_grad():
                for w, p in zip(self.weights, params):
                    w.copy_(p)

    def stale(self, epochs_done: int) -> int:
        """Epochs since the best one (all of them if none had a finite validation loss)."""
        return epochs_done - self.epoch

    def restore(self, params: list[torch.Tensor]) -> None:
        with torch.no_grad():
            for w, p in zip(self.weights, params):
                p.copy_(w)

    def state(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "loss": self.loss, "weights": self.weights}

    def load(self, state: dict[str, Any] | None) -> None:
        if not state:
            return
        self.epoch, self.loss = int(state["epoch"]), float(state["loss"])
        with torch.no_grad():
            for w, saved in zip(self.weights, state["weights"]):
                w.copy_(saved)


def _validation_size(n: int, s: TrainSettings) -> int:
    """Simulations held out for validation; clear errors where the budget cannot hold a split."""
    n_val = int(round(n * s.validation_fraction))
    early = s.patience is not None
    if s.validation_fraction == 0.0 and (early or s.keep_best):
        what = f"early stopping (patience={s.patience})" if early else "keep_best=True"
        raise ValueError(
            f"{what} needs a validation set, but validation_fraction=0 holds out none of the {n} simulations; "
            f"set validation_fraction > 0 (e.g. 0.1), or patience=None and keep_best=False to train every epoch on all of them"
        )
    if s.validation_fraction > 0.0 and (n_val < 1 or n - n_val < 1):
        least = next(m for m in range(2, 10**9) if 1 <= round(m * s.validation_fraction) < m)
        raise ValueError(
            f"a budget of {n} simulations is too small for validation_fraction={s.validation_fraction}: it holds out "
            f"{n_val} for validation and leaves {n - n_val} for training; offline training needs at least one of each "
            f"(at least {least} simulations at this fraction)"
        )
    return n_val


def _warn_if_overfitting(history: pd.DataFrame, best_epoch: int, n_train: int, kept_best: bool) -> None:
    """Warn when the validation loss ended well above its best while the same weights' training loss fell."""
    if best_epoch < 1 or best_epoch >= len(history):
        return
    at_best, last = history.iloc[best_epoch - 1], history.iloc[-1]
    rise = last["val_loss"] - at_best["val_loss"]
    if rise > OVERFIT_WARNING_NATS and last["fit_loss"] < at_best["fit_loss"]:
        ending = (f"the amortizer keeps epoch {best_epoch}'s weights" if kept_best
                  else f"the amortizer ends with epoch {int(last['epoch'])}'s weights (keep_best=False)")
        warnings.warn(
            f"overfitting: the validation loss rose from {at_best['val_loss']:.3f} (epoch {best_epoch}) to "
            f"{last['val_loss']:.3f} (epoch {int(last['epoch'])}) while the training loss fell from "
            f"{at_best['fit_loss']:.3f} to {last['fit_loss']:.3f}: the networks memorise the {n_train} training "
            f"simulations; {ending}. More simulations, online training, or settings sized to the budget "
            f"(PosteriorSettings.for_budget, TrainSettings.for_budget) would help.",
            OverfittingWarning,
            stacklevel=3,
        )


def _update_average(ema: list[torch.Tensor], params: list[torch.Tensor], decay: float, step: int) -> None:
    """``ema <- d ema + (1 - d) params`` with ``d = min(decay, (1 + step) / (10 + step))``: short memory at first."""
    d = min(decay, (1.0 + step) / (10.0 + step))
    with torch.no_grad():
        torch._foreach_lerp_(ema, [p.detach() for p in params], 1.0 - d)


def _swap(ema: list[torch.Tensor], params: list[torch.Tensor]) -> None:
    """Exchange the averaged and the current weights in place."""
    with torch.no_grad():
        for e, p in zip(ema, params):
            tmp = p.detach().clone()
            p.copy_(e)
            e.copy_(tmp)


def _check_adapted(amortizer: torch.nn.Module) -> None:
    unfitted = [name for name, buf in amortizer.named_buffers() if name.endswith("fitted") and not bool(buf)]
    if unfitted:
        raise ValueError(
            f"fit(adapt=False) continues training an amortizer whose standardization was learned before, "
            f"but this one's is not ({', '.join(n.rsplit('.', 1)[0] for n in unfitted)}); train it with adapt=True first"
        )


def train_size(batch: Batch) -> int:
    return int(next(iter(batch.values())).shape[0])


def _device(device: str) -> torch.device:
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was requested but CUDA is not available; use device='cpu'")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"unsupported device {device!r}; use 'cpu' or 'cuda'")
    return dev


def _validate_offline(data: Batch) -> Batch:
    if not isinstance(data, dict) or not data:
        raise TypeError("data= must be a batch: a dict of tensors such as model.simulate(n) returns")
    sizes = {k: v.shape[0] for k, v in data.items()}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"all tensors in data= must have the same first dimension, got {sizes}")
    out = {}
    for k, v in data.items():
        t = torch.as_tensor(v, dtype=torch.float32)
        if not torch.isfinite(t).all():
            raise ValueError(f"offline training data {k!r} contains NaN or Inf")
        out[k] = t
    return out


def _offline_batches(train: Batch, batch_size: int, gen: torch.Generator):
    n = train_size(train)
    perm = torch.randperm(n, generator=gen)
    for i in range(0, n, batch_size):
        idx = perm[i : i + batch_size]
        yield {k: v[idx] for k, v in train.items()}


def _evaluate(amortizer: torch.nn.Module, val: Batch | None, chunk: int, dev: torch.device) -> float:
    if val is None:
        return float("nan")
    amortizer.eval()
    total, n = 0.0, 0
    with torch.no_grad():
        for i in range(0, train_size(val), chunk):
            b = {k: v[i : i + chunk].to(dev) for k, v in val.items()}
            m = train_size(b)
            total += amortizer.loss(b).item() * m
            n += m
    return total / n


def _save_checkpoint(path, epoch, amortizer, optimizer, scheduler, gen, history, fingerprint, ema, best, reg=None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "epoch": epoch,
        "fingerprint": fingerprint,
        "model": amortizer.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "generator": gen.get_state(),
        "torch_rng": torch.get_rng_state(),
        "history": history,
        "ema": ema,
        "best": best.state(),  # best["epoch"]: the epoch whose weights an offline run ends with
        "regularizer": reg.state_dict() if reg is not None else None,
    }
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)  # atomic: an interruption never leaves a half-written checkpoint


def _load_checkpoint(path, amortizer, optimizer, scheduler, gen, fingerprint, dev, ema, best, reg=None):
    if path is None or not path.exists():
        raise ValueError(f"resume=True but no checkpoint found at {path}")
    state = torch.load(path, map_location=dev, weights_only=True)
    if state.get("fingerprint") != fingerprint:
        saved = json.loads(state.get("fingerprint", "{}")).get("model", {}).get("name", "?")
        now = json.loads(fingerprint).get("model", {}).get("name", "?")
        raise ValueError(
            f"the checkpoint at {path} was written for another model/amortizer (model "
            f"{saved!r}) and cannot resume training of this one (model {now!r}) with these settings"
        )
    amortizer.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    with torch.no_grad():
        for e, saved in zip(ema, state.get("ema") or [p.detach() for p in amortizer.parameters()]):
            e.copy_(saved)
    best.load(state.get("best"))
    if reg is not None and state.get("regularizer"):
        reg.load_state_dict(state["regularizer"], dev)
    gen.set_state(state["generator"])
    torch.set_rng_state(state["torch_rng"])
    return int(state["epoch"]), list(state["history"])

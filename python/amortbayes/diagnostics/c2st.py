"""Classifier two-sample test (C2ST): can a classifier tell two samples apart?

Given samples ``a_1..a_n ~ P`` and ``b_1..b_n ~ Q`` (e.g. amortized posterior draws and
reference draws from Stan or a closed form), label them 0 and 1 and estimate the accuracy
of a classifier on held-out points by ``k``-fold cross-validation.  If ``P = Q`` no
classifier beats chance, so the accuracy is about 0.5; if the supports are disjoint it
approaches 1.  The optimal accuracy is ``1/2 + TV(P, Q)/2``, so C2ST is a (lower) estimate
of that, tied to how well the classifier is trained.

As in the sbi benchmark (Lueckmann et al. 2021) both samples are standardized with one
shared mean and standard deviation (here those of the pooled sample), and the classifier
is a small MLP (two hidden ReLU layers) trained with Adam on minibatches of the training
folds.  Folds are stratified, so every fold holds as many points of ``a`` as of ``b``.

References:
    Lopez-Paz & Oquab (2017). Revisiting classifier two-sample tests. ICLR 2017.

    Lueckmann, Boelts, Greenberg, Gonçalves & Macke (2021). Benchmarking simulation-based
    inference. AISTATS 2021.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from amortbayes.diagnostics._validation import as_float_array, check_finite, positive_int

__all__ = ["c2st"]

_TARGET_STEPS = 200


def _as_sample(x: np.ndarray, name: str) -> np.ndarray:
    array = as_float_array(x, name)
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2:
        raise ValueError(f"{name} must have shape (n_samples, n_dims) or (n_samples,), got shape {array.shape}")
    check_finite(array, name)
    return array


def _mlp(n_in: int, hidden: int) -> nn.Module:
    return nn.Sequential(
        nn.Linear(n_in, hidden),
        nn.ReLU(),
        nn.Linear(hidden, hidden),
        nn.ReLU(),
        nn.Linear(hidden, 1),
    )


def _fold_accuracy(
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_test: torch.Tensor,
    y_test: torch.Tensor,
    *,
    hidden: int,
    epochs: int,
    batch_size: int,
    lr: float,
    generator: torch.Generator,
) -> float:
    model = _mlp(x_train.shape[1], hidden)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = nn.BCEWithLogitsLoss()
    n = x_train.shape[0]
    for _ in range(epochs):
        order = torch.randperm(n, generator=generator)
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            optimizer.zero_grad()
            loss = loss_fn(model(x_train[idx]).squeeze(-1), y_train[idx])
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        predicted = (model(x_test).squeeze(-1) > 0).float()
    return float((predicted == y_test).float().mean())


def c2st(
    a: np.ndarray,
    b: np.ndarray,
    *,
    folds: int = 5,
    seed: int = 0,
    hidden: int = 64,
    epochs: int | None = None,
    batch_size: int = 1024,
    lr: float = 3e-3,
    max_samples: int | None = None,
) -> float:
    """Cross-validated accuracy of an MLP classifier separating sample ``a`` from ``b``.

    Args:
        a: First sample, shape ``(n_a, D)`` (or ``(n_a,)``).
        b: Second sample, shape ``(n_b, D)`` (or ``(n_b,)``).
        folds: Number of cross-validation folds (at least 2).
        seed: Seed for subsampling, fold assignment, initialisation and minibatches; the
            global torch and numpy random states are left untouched.
        hidden: Width of the two hidden layers.
        epochs: Passes over the training folds; default: enough for about 200 Adam steps
            per fold and at least 10 passes.
        batch_size: Minibatch size for Adam.
        lr: Adam learning rate.
        max_samples: Use at most this many rows of each sample.  Both samples are always
            subsampled (at random) to the same size ``min(n_a, n_b, max_samples)`` so that
            chance accuracy is exactly 0.5.

    Returns:
        Mean held-out accuracy: about 0.5 when the samples come from the same distribution,
        near 1.0 when they are fully separable.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> a, b = rng.normal(size=(1000, 2)), rng.normal(size=(1000, 2))
        >>> bool(0.4 < c2st(a, b) < 0.6)
        True
        >>> bool(c2st(a, b + 4.0) > 0.95)
        True
    """
    x_a, x_b = _as_sample(a, "a"), _as_sample(b, "b")
    if x_a.shape[1] != x_b.shape[1]:
        raise ValueError(f"a and b must have the same number of columns, got {x_a.shape[1]} and {x_b.shape[1]}")
    folds = positive_int(folds, "folds", minimum=2)
    seed = positive_int(seed, "seed", minimum=0)
    hidden = positive_int(hidden, "hidden")
    batch_size = positive_int(batch_size, "batch_size")
    if not float(lr) > 0:
        raise ValueError(f"lr must be positive, got {lr}")
    for name, x in (("a", x_a), ("b", x_b)):
        if x.shape[0] < 2 * folds:
            raise ValueError(f"{name} needs at least 2 * folds = {2 * folds} rows, got {x.shape[0]}")
    n = min(x_a.shape[0], x_b.shape[0])
    if max_samples is not None:
        n = min(n, positive_int(max_samples, "max_samples", minimum=2 * folds))

    if epochs is None:
        steps_per_epoch = -(-(2 * n - 2 * n // folds) // batch_size)
        epochs = max(10, -(-_TARGET_STEPS // steps_per_epoch))
    epochs = positive_int(epochs, "epochs")

    rng = np.random.default_rng(seed)
    x_a = x_a[rng.permutation(x_a.shape[0])[:n]]
    x_b = x_b[rng.permutation(x_b.shape[0])[:n]]
    x = np.concatenate([x_a, x_b])
    std = x.std(axis=0)
    x = (x - x.mean(axis=0)) / np.where(std > 0, std, 1.0)
    y = np.concatenate([np.zeros(n), np.ones(n)])
    # Stratified folds: rows of a and of b are each split evenly over the folds.
    fold_of = np.concatenate([rng.permutation(n) % folds, rng.permutation(n) % folds])

    x_t = torch.as_tensor(x, dtype=torch.float32)
    y_t = torch.as_tensor(y, dtype=torch.float32)
    accuracies = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)
        for k in range(folds):
            test = torch.as_tensor(fold_of == k)
            accuracies.append(
                _fold_accuracy(
                    x_t[~test],
                    y_t[~test],
                    x_t[test],
                    y_t[test],
                    hidden=hidden,
                    epochs=epochs,
                    batch_size=batch_size,
                    lr=lr,
                    generator=generator,
                )
            )
    return float(np.mean(accuracies))

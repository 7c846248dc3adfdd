"""Settings sized to a simulation budget: network widths, regularization, batch size and learning rate for offline training.

With a fixed set of ``n`` simulations the networks' capacity has to match what ``n``
simulations can pin down: a network that is too large memorises them (its validation loss
rises while its training loss falls) and one that is too small underfits at large budgets.
:func:`budget_defaults` gives the settings that measured best on the benchmark suite
(``benchmarks/sbi_tasks.py``): the 10^4 row was chosen on two moons and checked on all
six tasks, the 10^3 row on two moons, AR(1) and the Gaussian mixture; the 10^5 row (wider
networks, a smaller learning rate) is an extrapolation not yet measured against the others.
Budgets in between get the settings of the row below them.  They are what
``fit(amortizer, data=...)`` uses when no settings are given (``TrainSettings.for_budget``)
and what ``PosteriorSettings.for_budget`` builds networks with; every field can be
overridden there.
"""

from __future__ import annotations

import copy
from typing import Any

# (smallest budget, settings): the first row whose budget is at most n applies
_TABLE: list[tuple[int, dict[str, Any]]] = [
    (30_000, {
        "train": {"epochs": 500, "batch_size": 256, "learning_rate": 1e-3, "weight_decay": 0.0, "patience": 20},
        "posterior": {"summary_hidden": 128, "flow": {"layers": 5, "hidden": 128}},
    }),
    (3_000, {
        "train": {"epochs": 200, "batch_size": 256, "learning_rate": 3e-3, "weight_decay": 0.0, "patience": 20},
        "posterior": {"summary_hidden": 64, "flow": {"layers": 4, "hidden": 64}},
    }),
    # below 3,000 the 10^4 networks with smaller steps: the narrower ones (width 32, 3 layers)
    # underfit at 10^3 (C2ST two moons 0.889 against 0.726, AR(1) 0.693 against 0.657, Gaussian
    # mixture 0.751 against 0.732); early stopping is what keeps them from memorising
    (0, {
        "train": {"epochs": 500, "batch_size": 64, "learning_rate": 1e-3, "weight_decay": 0.0, "patience": 30},
        "posterior": {"summary_hidden": 64, "flow": {"layers": 4, "hidden": 64}},
    }),
]


def budget_defaults(n_simulations: int) -> dict[str, dict[str, Any]]:
    """``{"train": TrainSettings fields, "posterior": PosteriorSettings fields}`` for a budget of ``n_simulations``.

    Raises:
        ValueError: a budget that is not a positive integer.

    Example:
        >>> budget_defaults(10_000)["train"]["batch_size"]
        256
    """
    if isinstance(n_simulations, bool) or not isinstance(n_simulations, int) or n_simulations < 1:
        try:
            n_simulations = int(n_simulations)
        except (TypeError, ValueError):
            raise ValueError(f"a simulation budget must be a positive integer, got {n_simulations!r}") from None
        if n_simulations < 1:
            raise ValueError(f"a simulation budget must be a positive integer, got {n_simulations!r}")
    for smallest, settings in _TABLE:
        if n_simulations >= smallest:
            return copy.deepcopy(settings)
    raise AssertionError("unreachable: the table's last row starts at 0")

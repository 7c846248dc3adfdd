"""Memory budgets of chunked evaluation: what a pass needs, what the machine has, a clear error when it cannot fit.

Work over thousands of rows (pointwise log likelihoods for LOO, posterior predictions) runs in
passes whose size is set in advance; before a pass allocates, :func:`require` compares what it
needs with the memory the system reports as available and raises :class:`MemoryBudgetError`,
naming both sizes and what to change, instead of letting the process be killed.
"""

from __future__ import annotations

import os

# temporaries of a float64 likelihood pass (linear predictor, response, masks, the result) per term
BYTES_PER_TERM = 8 * 6


class MemoryBudgetError(MemoryError):
    """A computation would need more memory than is available; the message says how much and what to change."""


def available_bytes() -> int | None:
    """Memory the system reports as available (``MemAvailable`` on Linux), None where it cannot tell."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def format_bytes(n: float) -> str:
    """``"3.2 GB"``: a size in decimal units.

    Example:
        >>> format_bytes(3.2e9), format_bytes(512e3)
        ('3.2 GB', '512 kB')
    """
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{int(n)} B"


def require(nbytes: float, what: str, advice: str) -> None:
    """Raise :class:`MemoryBudgetError` if ``nbytes`` exceed the available memory (nothing where that is unknown)."""
    have = available_bytes()
    if have is not None and nbytes > have:
        raise MemoryBudgetError(f"{what} needs about {format_bytes(nbytes)} of memory, but {format_bytes(have)} are "
                                f"available; {advice}")

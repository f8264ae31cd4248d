"""Auto-checks for the notebook exercises."""

from __future__ import annotations

import numpy as np


def check(exercise: str, answer, expected, rtol: float = 1e-3, atol: float = 0.0) -> None:
    """Compare an exercise answer with the expected value; print a tick or raise AssertionError.

    Numbers and arrays are compared with ``numpy.allclose(rtol, atol)``; anything else with ``==``.
    """
    if answer is None or answer is Ellipsis:
        raise AssertionError(f"{exercise}: no answer yet; fill in the cell above.")
    try:
        a = np.asarray(answer, dtype=float)
        e = np.asarray(expected, dtype=float)
        ok = a.shape == e.shape and bool(np.allclose(a, e, rtol=rtol, atol=atol))
    except (TypeError, ValueError):
        ok = answer == expected
    if not ok:
        raise AssertionError(f"{exercise}: {answer!r} is not the expected answer; look again at the hint.")
    print(f"✔ {exercise}: correct")

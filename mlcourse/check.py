"""Auto-checks for the notebook exercises.

``check(exercise, answer, expected)`` is the last line of every exercise. An answer that is still
``None`` (the student copy's stub) or ``...`` is reported as "not answered yet" and does not raise,
so Run All goes on to the end of a lesson; a wrong answer raises ``AssertionError`` and points at the
exercise's hint. Numbers, strings, lists and tuples (also of mixed types), NumPy arrays (also of
strings), torch tensors and pandas Series/DataFrames are compared alike.

Every call appends ``(exercise, status)`` to :data:`history` (status ``"unanswered"``, ``"correct"``
or ``"wrong"``), which the exercise self-test of :mod:`mlcourse.student` reads.
"""

from __future__ import annotations

import numpy as np

history: list[tuple[str, str]] = []

HINT = "open the collapsed ▸ Hint just above the exercise cell"


def _plain(x):
    """``x`` with torch tensors turned into NumPy arrays (detached, on the CPU); else ``x`` itself."""
    if type(x).__module__.startswith("torch") and hasattr(x, "detach"):
        return x.detach().cpu().numpy()
    return x


def _is_pandas(x) -> bool:
    return type(x).__module__.startswith("pandas") and hasattr(x, "to_numpy")


def _numeric(a: np.ndarray) -> bool:
    return a.dtype.kind in "biufc"


def same(answer, expected, rtol: float = 1e-3, atol: float = 0.0) -> bool:
    """Whether ``answer`` matches ``expected``: numbers within ``rtol``/``atol``, everything else equal.

    Never raises: a comparison that cannot be made (shapes, types) is a mismatch.
    """
    answer, expected = _plain(answer), _plain(expected)
    if _is_pandas(answer) and _is_pandas(expected):
        import pandas as pd

        if type(answer) is not type(expected):
            return False
        test = pd.testing.assert_frame_equal if isinstance(answer, pd.DataFrame) else pd.testing.assert_series_equal
        try:
            test(answer, expected, check_exact=False, rtol=rtol, atol=max(atol, 1e-12), check_dtype=False,
                 check_names=False)
            return True
        except (AssertionError, TypeError, ValueError):
            return False
    if _is_pandas(answer):
        answer = answer.to_numpy()
    if _is_pandas(expected):
        expected = expected.to_numpy()
    if isinstance(answer, str) or isinstance(expected, str):  # "0.5" is not 0.5
        return isinstance(answer, str) and isinstance(expected, str) and answer.strip() == expected.strip()
    if isinstance(answer, dict) or isinstance(expected, dict):
        return (isinstance(answer, dict) and isinstance(expected, dict) and answer.keys() == expected.keys()
                and all(same(answer[k], expected[k], rtol, atol) for k in expected))
    if isinstance(answer, (list, tuple)) or isinstance(expected, (list, tuple)):
        a, e = _array(answer), _array(expected)
        if a is not None and e is not None and _numeric(a) and _numeric(e):
            return a.shape == e.shape and bool(np.allclose(a, e, rtol=rtol, atol=atol, equal_nan=True))
        return _elementwise(answer, expected, rtol, atol)  # mixed types: each item with its own rule
    if isinstance(answer, np.ndarray) or isinstance(expected, np.ndarray) or np.isscalar(answer):
        a, e = _array(answer), _array(expected)
        if a is None or e is None or a.shape != e.shape:
            return False
        if _numeric(a) and _numeric(e):
            return bool(np.allclose(a, e, rtol=rtol, atol=atol, equal_nan=True))
        if a.dtype.kind in "US" and e.dtype.kind in "US":  # arrays of strings
            return bool(np.array_equal(a, e))
        if a.dtype == object or e.dtype == object:
            return _elementwise(a.ravel().tolist(), e.ravel().tolist(), rtol, atol)
        return False  # numbers against strings
    try:
        return bool(answer == expected)
    except Exception:  # an elementwise or undefined comparison
        return False


def _array(x) -> np.ndarray | None:
    try:
        return np.asarray(x)
    except (TypeError, ValueError):  # ragged nesting
        return None


def _elementwise(answer, expected, rtol, atol) -> bool:
    sized = (list, tuple, np.ndarray)
    return (isinstance(answer, sized) and isinstance(expected, sized) and len(answer) == len(expected)
            and all(same(x, y, rtol, atol) for x, y in zip(answer, expected)))


def check(exercise: str, answer, expected, rtol: float = 1e-3, atol: float = 0.0) -> bool | None:
    """Compare an exercise answer with the expected value.

    Prints a tick and returns True when they agree (numbers within ``numpy.allclose(rtol, atol)``);
    prints "not answered yet" and returns None when ``answer`` is None or ``...``; raises
    AssertionError, pointing at the exercise's hint, when they differ.
    """
    if answer is None or answer is Ellipsis:
        history.append((exercise, "unanswered"))
        print(f"… {exercise}: not answered yet. Replace the None in the cell above with your answer and run "
              f"it again (stuck? {HINT}).")
        return None
    if not same(answer, expected, rtol=rtol, atol=atol):
        history.append((exercise, "wrong"))
        shown = repr(answer)
        shown = shown if len(shown) <= 200 else shown[:200] + " …"
        raise AssertionError(f"{exercise}: {shown} is not the expected answer; {HINT}.")
    history.append((exercise, "correct"))
    print(f"✔ {exercise}: correct")
    return True

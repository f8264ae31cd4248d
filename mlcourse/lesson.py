"""The lesson scaffold: one call at the top of every notebook.

``lesson = start(MODE)`` finds which lesson is running (from the notebook's file name), seeds the
random number generators, sets torch's threads, reads the lesson's settings for ``MODE`` from
``notebooks/<lesson>.toml`` and returns a :class:`Lesson` that records metrics under its own name.

Settings are data: the ``[settings]`` table of the lesson's TOML file gives every knob that differs
between fast and full mode (and every one a script shares with the notebook), one line each::

    [settings]
    n_train = { fast = 800, full = "all", note = "Perov-5 'val' structures to train on" }

``"all"`` stands for None (no cap: the whole split). Scripts that make a lesson's registered files
read the same table with :func:`settings`.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd

from . import results
from .data import NOTEBOOK_DIR

ALL = "all"  # a setting's value meaning None: no cap
FAST_THREADS = 2  # torch threads in fast mode: the 2 cores of mybinder and of CI, so fast numbers repeat


class LessonNotFoundError(RuntimeError):
    """The scaffold could not tell which lesson's notebook is running."""


def lessons() -> list[str]:
    """Every lesson's name (its notebook's file name without .ipynb), in order."""
    return sorted(p.stem for p in NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))


def lesson_of(name: str) -> str | None:
    """The lesson whose name appears in ``name`` (a notebook path or title, such as
    'Copy of 05_graph_networks_cgcnn.ipynb'), or None."""
    stem = Path(str(name)).name
    for lesson in lessons():
        if re.search(rf"(^|[^0-9]){re.escape(lesson)}(\.ipynb|$|[^a-z0-9_])", stem):
            return lesson
    return None


def _colab_notebook_name() -> str | None:
    """On Colab, the open notebook's name from the VM's own Jupyter server (no internet needed)."""
    ip, port = os.environ.get("COLAB_JUPYTER_IP"), os.environ.get("KMP_TARGET_PORT", "9000")
    if not ip:
        return None
    try:
        with urllib.request.urlopen(f"http://{ip}:{port}/api/sessions", timeout=2) as r:
            return urllib.request.unquote(json.load(r)[0]["name"])
    except Exception:  # noqa: BLE001 - any failure means "not known this way"
        return None


def detect() -> str:
    """The running lesson, from the notebook's path as the kernel knows it.

    Looked up in order: ``$JPY_SESSION_NAME`` (set by Jupyter Server for JupyterLab, Notebook 7,
    Binder and hubs, and by :mod:`mlcourse.runner`), VS Code's ``__vsc_ipynb_file__``, Colab's
    session list. Raises LessonNotFoundError saying how to name the lesson when none of them works.
    """
    candidates = [os.environ.get("JPY_SESSION_NAME")]
    shell = sys.modules.get("IPython") and sys.modules["IPython"].get_ipython()
    if shell is not None:
        candidates += [shell.user_ns.get("__session__"), shell.user_ns.get("__vsc_ipynb_file__")]
    candidates.append(_colab_notebook_name())
    for c in candidates:
        if c and (lesson := lesson_of(c)):
            return lesson
    raise LessonNotFoundError(
        "could not tell which lesson this notebook is (tried $JPY_SESSION_NAME, VS Code's notebook path "
        f"and Colab's session list; found {[c for c in candidates if c]}). Name it: "
        f"start(MODE, lesson=\"05_graph_networks_cgcnn\"); the lessons are {', '.join(lessons())}")


def _value(v):
    return None if v == ALL else v


def settings_rows(lesson: str) -> dict[str, dict]:
    """``lesson``'s ``[settings]`` table: {name: {"fast", "full", "note"}}; ExpectationError names
    the file and the entry when one lacks a mode or its note."""
    where = NOTEBOOK_DIR / f"{lesson}.toml"
    rows = results.lesson_config(lesson).get("settings", {})
    for name, row in rows.items():
        if not isinstance(row, dict) or not {"fast", "full", "note"} <= set(row):
            raise results.ExpectationError(
                f"{where}: setting {name!r} must be {{ fast = ..., full = ..., note = \"...\" }}, got {row!r}")
    return rows


def settings(lesson: str, mode: str) -> SimpleNamespace:
    """``lesson``'s settings for ``mode`` as attributes (``"all"`` read as None)."""
    if mode not in results.MODES:
        raise ValueError(f"mode must be 'fast' or 'full', not {mode!r}")
    return SimpleNamespace(**{k: _value(row[mode]) for k, row in settings_rows(lesson).items()})


def settings_table(lesson: str, mode: str) -> pd.DataFrame:
    """The settings of both modes side by side, the running mode's column marked."""
    rows = settings_rows(lesson)
    df = pd.DataFrame({m: [str(r[m]) for r in rows.values()] for m in results.MODES} |
                      {"what it sets": [r["note"] for r in rows.values()]}, index=pd.Index(list(rows), name="setting"))
    return df.rename(columns={mode: f"{mode} (this run)"})


def seed_everything(seed: int) -> None:
    """Seed Python's and NumPy's global generators, and torch's when torch is loaded."""
    random.seed(seed)
    np.random.seed(seed)
    if "torch" in sys.modules:
        sys.modules["torch"].manual_seed(seed)


@contextlib.contextmanager
def torch_seeded(seed: int) -> Iterator[None]:
    """Inside the block torch draws its random numbers from ``seed``; after it, torch's global random
    state is what it was. Model builders draw their weights in one, so building moves nobody else's draws."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


@dataclass
class Lesson:
    """A running lesson: its name, mode, seed and settings; records metrics under its name."""

    name: str
    mode: str
    seed: int
    settings: SimpleNamespace

    def record(self, metric: str, value: float, unit: str, **kw) -> dict:
        """:func:`mlcourse.results.record` for this lesson and mode."""
        return results.record(self.name, metric, value, unit, mode=self.mode, **kw)

    def table(self) -> pd.DataFrame:
        """This lesson's settings, fast and full mode side by side."""
        return settings_table(self.name, self.mode)

    def recorded(self) -> pd.DataFrame:
        """The metrics this lesson has recorded in this mode."""
        return results.table(self.mode).query("lesson == @self.name")


def start(mode: str, lesson: str | None = None, seed: int = 0) -> Lesson:
    """Set up a lesson's notebook: find the lesson (see :func:`detect`) unless named, seed Python,
    NumPy and — if imported before this call — torch with ``seed``, and in fast mode give torch
    :data:`FAST_THREADS` threads (full mode keeps torch's default: every core)."""
    if mode not in results.MODES:
        raise ValueError(f"MODE must be 'fast' or 'full', not {mode!r}")
    name = lesson or detect()
    if name not in lessons():
        raise LessonNotFoundError(f"no lesson {name!r}; the lessons are {', '.join(lessons())}")
    seed_everything(seed)
    if mode == "fast" and "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(FAST_THREADS)
    out = Lesson(name, mode, seed, settings(name, mode))
    print(f"Lesson {name}, {mode} mode, seed {seed}")
    return out

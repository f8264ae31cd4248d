"""Execute course notebooks with papermill and measure each one's wall time and peak memory.

Memory is the peak, sampled every 0.1 s, of the summed resident memory of the notebook's
kernel and every process it starts (for example joblib workers).
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import psutil

from .data import REPO_ROOT, env_data_dir
from .results import build_dir

NOTEBOOK_DIR = REPO_ROOT / "notebooks"
BUDGET = {"wall_s": 180.0, "peak_mb": 1536.0}  # fast mode, 2 CPU cores


def notebooks() -> list[Path]:
    """The course notebooks, in lesson order."""
    return sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))


class _PeakMemory(threading.Thread):
    """Samples the summed RSS of this process's children (the kernel and its workers)."""

    def __init__(self, interval_s: float = 0.1):
        super().__init__(daemon=True)
        self.interval_s, self.peak_bytes, self._stop_event = interval_s, 0, threading.Event()

    def run(self) -> None:
        me = psutil.Process()
        while not self._stop_event.is_set():
            total = 0
            for child in me.children(recursive=True):
                try:
                    total += child.memory_info().rss
                except psutil.Error:
                    pass
            self.peak_bytes = max(self.peak_bytes, total)
            self._stop_event.wait(self.interval_s)

    def stop(self) -> float:
        self._stop_event.set()
        self.join()
        return self.peak_bytes / 2**20


def run_notebook(path: Path, mode: str = "fast", notebook=None, variant: str = "instructor") -> dict:
    """Execute one notebook with ``MODE=mode`` into ``build/<mode>/``; return its run record.

    The record (notebook, mode, variant, ok, error, wall_s, peak_mb) is also saved in
    ``build/runs.<mode>.json``. A failing notebook gives ``ok=False`` and the error text.
    ``notebook`` (an nbformat notebook) executes that derived notebook instead of the file, in the
    file's folder and recorded under the file's name: the notebook test runs the student copy with
    the exercise self-tests (:func:`mlcourse.student.exercise_test_notebook`) this way.
    """
    import nbformat
    import papermill

    path = Path(path)
    # A run replaces the notebook's recorded metrics: no stale metric survives from an older run.
    (build_dir() / "results" / f"{path.stem}.{mode}.json").unlink(missing_ok=True)
    out = build_dir() / mode / path.name
    out.parent.mkdir(parents=True, exist_ok=True)
    sampler = _PeakMemory()
    sampler.start()
    source = path
    if notebook is not None:
        source = out.with_name(f"{path.stem}.{variant}.input.ipynb")
        nbformat.write(notebook, source)
    data_log = out.with_name(f"{path.stem}.data.txt")  # every registered file the lesson reads
    data_log.unlink(missing_ok=True)
    kernel_env, env_dir = {"MLCOURSE_DATA_LOG": str(data_log)}, env_data_dir()
    if env_dir is not None:  # the kernel runs in the notebook's folder: pass the folder meant
        kernel_env["MLCOURSE_DATA_DIR"] = str(env_dir)
    saved = {k: os.environ.get(k) for k in kernel_env}
    os.environ.update(kernel_env)
    start, error = time.perf_counter(), None
    try:
        papermill.execute_notebook(
            str(source), str(out), parameters={"MODE": mode}, cwd=str(path.parent),
            kernel_name="python3", progress_bar=False,
        )
    except Exception as exc:  # papermill raises PapermillExecutionError with the cell's traceback
        error = f"{type(exc).__name__}: {exc}"
    finally:
        for k, v in saved.items():
            if v is None:
                del os.environ[k]
            else:
                os.environ[k] = v
    wall_s = time.perf_counter() - start
    run = {"notebook": path.name, "mode": mode, "variant": variant, "ok": error is None, "error": error,
           "wall_s": round(wall_s, 1), "peak_mb": round(sampler.stop(), 1),
           "output": str(out), "data_log": str(data_log)}
    runs_file = build_dir() / f"runs.{mode}.json"
    runs = json.loads(runs_file.read_text()) if runs_file.exists() else {}
    runs[path.name] = run
    runs_file.write_text(json.dumps(runs, indent=1))
    return run


def over_budget(run: dict) -> list[str]:
    """What a fast-mode run exceeded of the budget (3 min wall, 1.5 GB peak), if anything."""
    return [f"{k} {run[k]} > {limit}" for k, limit in BUDGET.items() if run[k] > limit]

"""Execute course notebooks with papermill; measure each one's CPU time, peak memory and wall time.

Both measures cover the notebook's kernel and every process it starts (for example joblib
workers), sampled every 0.1 s: memory is the peak of their summed resident memory; CPU time is
user + system time, counting processes that exited during the run (see :class:`_Sampler`). The
fast-mode budget gates on CPU time and memory, which do not depend on what else the machine runs;
wall time is reported beside them.

A run never loses a result: the kernel records its metrics into a staging folder
(``$MLCOURSE_STAGING_DIR``), promoted to ``build/results`` only when the notebook succeeds, and the
run record in ``build/runs.<mode>.json`` says "not finished" from the start until the run ends.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import psutil

from .data import NOTEBOOK_DIR, env_data_dir
from .results import STAGING_ENV, build_dir, read_json, replace_json, update_json

# Fast mode, per notebook: CPU time of the kernel and its children (2 cores x 180 s) and peak
# resident memory in MB of 2**20 bytes (1 GB). The one place these limits are set.
BUDGET = {"cpu_s": 360.0, "peak_mb": 1024.0}
CELL_TIMEOUT_S = 600  # default limit of one cell's execution, seconds
CELL_TIMEOUT_ENV = "MLCOURSE_CELL_TIMEOUT_S"

__all__ = ["BUDGET", "NOTEBOOK_DIR", "cell_timeout_s", "notebooks", "over_budget", "run_notebook"]


def notebooks() -> list[Path]:
    """The course notebooks, in lesson order."""
    return sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))


def cell_timeout_s() -> int:
    """The per-cell time limit in seconds: ``$MLCOURSE_CELL_TIMEOUT_S``, else 600."""
    raw = os.environ.get(CELL_TIMEOUT_ENV, "").strip()
    if not raw:
        return CELL_TIMEOUT_S
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"${CELL_TIMEOUT_ENV} must be a whole number of seconds ≥ 1, not {raw!r}")
    return value


class _Sampler(threading.Thread):
    """Samples this process's descendants (the kernel and its workers): peak summed RSS and CPU time.

    CPU time: at each sample, the live descendants' own user + system time plus the time of the
    children they have reaped (``children_user``, ``children_system``) is exact for that instant.
    A process that is gone by the next sample is counted by its parent's reaped time when its
    parent is still a live descendant; otherwise (the kernel itself, or an orphan) its last sample
    is kept. So processes that exit mid-run still count, and none counts twice.
    """

    def __init__(self, interval_s: float = 0.1):
        super().__init__(daemon=True)
        self.interval_s, self._stop_event = interval_s, threading.Event()
        self.peak_bytes, self._gone_cpu_s, self._last = 0, 0.0, {}  # _last: (pid, created) -> (cpu_s, ppid)

    def sample(self) -> None:
        now, rss = {}, 0
        for child in psutil.Process().children(recursive=True):
            try:
                with child.oneshot():
                    t = child.cpu_times()
                    now[child.pid, child.create_time()] = (
                        t.user + t.system + t.children_user + t.children_system, child.ppid())
                    rss += child.memory_info().rss
            except psutil.Error:
                pass
        live = {pid for pid, _ in now}
        self._gone_cpu_s += sum(cpu for key, (cpu, ppid) in self._last.items() if key not in now and ppid not in live)
        self._last, self.peak_bytes = now, max(self.peak_bytes, rss)

    @property
    def peak_mb(self) -> float:
        return self.peak_bytes / 2**20

    @property
    def cpu_s(self) -> float:
        return self._gone_cpu_s + sum(cpu for cpu, _ in self._last.values())

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.sample()
            self._stop_event.wait(self.interval_s)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()
        self.sample()


def _end_started(before: set[int]) -> None:
    """Kill the processes a run started (its kernel and the kernel's workers) and reap them.

    ``before`` are the pids of this process's descendants before the run; those are left alone.
    SIGKILL, not SIGTERM: a kernel asked to stop mid-cell prints a traceback of its own.
    """
    procs = [p for p in psutil.Process().children(recursive=True) if p.pid not in before]
    for p in procs:
        with contextlib.suppress(psutil.Error):
            p.kill()
    psutil.wait_procs(procs, timeout=5)


def _current_cell(out: Path) -> str:
    """'cell N (`first line`)': the last cell papermill started in the output notebook ``out``."""
    import nbformat

    try:
        nb = nbformat.read(out, as_version=4)
    except Exception:  # not written yet, or written half (the run was killed)
        return "an unknown cell"
    started = [i for i, c in enumerate(nb.cells) if c.get("metadata", {}).get("papermill", {}).get("start_time")]
    if not started:
        return "no cell (the kernel had not started one)"
    i = started[-1]
    first = next((line.strip() for line in nb.cells[i].source.splitlines() if line.strip()), "")
    return f"cell {i} (`{first[:80]}`) of {out.name}"


def _describe(exc: BaseException, out: Path, timeout_s: int, peak_mb: float) -> str:
    """The run's error text: for a dead kernel or a timeout, the cell and (dead kernel) the peak memory."""
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    if isinstance(exc, DeadKernelError):
        total_mb = psutil.virtual_memory().total / 2**20
        return (f"DeadKernelError: the kernel died while running {_current_cell(out)}; peak memory of the "
                f"kernel and its children {peak_mb:.0f} MB of the machine's {total_mb:.0f} MB (a peak near "
                "the machine's memory means the kernel was killed for memory)")
    if isinstance(exc, CellTimeoutError):
        return (f"CellTimeoutError: {_current_cell(out)} ran longer than the per-cell limit of {timeout_s} s "
                f"(--cell-timeout or ${CELL_TIMEOUT_ENV})")
    if isinstance(exc, KeyboardInterrupt):
        how = exc.args[0] if exc.args else "SIGINT"
        return f"interrupted ({how}) while running {_current_cell(out)}"
    return f"{type(exc).__name__}: {exc}"


def _promote(staging: Path, lesson: str, mode: str) -> None:
    """Make the staged metrics of a successful run the recorded ones.

    Each staged ``<lesson>.<mode>.json`` replaces its file in ``build/results``; the notebook's own
    file is removed when the run recorded nothing for it, so no stale metric survives a run.
    """
    results = build_dir() / "results"
    staged = {p.name: p for p in staging.glob("*.json")}
    staged.setdefault(f"{lesson}.{mode}.json", None)
    for name, path in sorted(staged.items()):
        replace_json(results / name, None if path is None else read_json(path))


def run_notebook(path: Path, mode: str = "fast", notebook=None, variant: str = "instructor",
                 cell_timeout: int | None = None) -> dict:
    """Execute one notebook with ``MODE=mode`` into ``build/<mode>/``; return its run record.

    The record (notebook, mode, variant, ok, error, cpu_s, peak_mb, wall_s, ...) is also saved in
    ``build/runs.<mode>.json``; it says "not finished" while the run goes on, so a killed run is not
    left as an older "ok". A failing notebook gives ``ok=False`` and the error text (for a dead kernel
    or a cell over ``cell_timeout`` seconds, default :func:`cell_timeout_s`: the cell, and the peak
    memory); its earlier recorded metrics stay. SIGINT (Ctrl-C) and SIGTERM during the run end the
    kernel and its workers, are recorded the same way, then raised as KeyboardInterrupt. ``notebook`` (an nbformat notebook) executes that derived notebook instead of
    the file, in the file's folder and recorded under the file's name: the notebook test runs the
    student copy with the exercise self-tests (:func:`mlcourse.student.exercise_test_notebook`) this way.
    """
    import nbformat
    import papermill

    path = Path(path)
    timeout_s = cell_timeout if cell_timeout is not None else cell_timeout_s()
    runs_file = build_dir() / f"runs.{mode}.json"
    out = build_dir() / mode / path.name
    out.parent.mkdir(parents=True, exist_ok=True)
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    run = {"notebook": path.name, "mode": mode, "variant": variant, "ok": False,
           "error": f"not finished: started {started} by process {os.getpid()}, which never recorded an end "
                    "(killed, or still running)",
           "cpu_s": None, "peak_mb": None, "wall_s": None, "started": started, "pid": os.getpid(),
           "cell_timeout_s": timeout_s,
           "output": str(out)}
    update_json(runs_file, lambda runs: runs.__setitem__(path.name, run))
    (build_dir() / "staging").mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=build_dir() / "staging", prefix=f"{path.stem}.{mode}."))
    source = path
    if notebook is not None:
        source = out.with_name(f"{path.stem}.{variant}.input.ipynb")
        nbformat.write(notebook, source)
    data_log = out.with_name(f"{path.stem}.data.txt")  # every registered file the lesson reads
    data_log.unlink(missing_ok=True)
    kernel_env = {"MLCOURSE_DATA_LOG": str(data_log), STAGING_ENV: str(staging), "MLCOURSE_BUILD_DIR": str(build_dir()),
                  "JPY_SESSION_NAME": str(path.resolve())}  # the notebook's path, as Jupyter Server gives it (mlcourse.lesson)
    env_dir = env_data_dir()
    if env_dir is not None:  # the kernel runs in the notebook's folder: pass the folder meant
        kernel_env["MLCOURSE_DATA_DIR"] = str(env_dir)
    saved = {k: os.environ.get(k) for k in kernel_env}
    before = {p.pid for p in psutil.Process().children(recursive=True)}

    def stop(signum, frame):  # SIGINT or SIGTERM during the run: end the kernel, then stop as Ctrl-C does
        _end_started(before)  # first: papermill's clean-up makes a kernel busy in a cell print a traceback
        raise KeyboardInterrupt(signal.Signals(signum).name)

    handlers = {}
    if threading.current_thread() is threading.main_thread():
        handlers = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    sampler = _Sampler()
    sampler.start()
    start, error, interrupt = time.perf_counter(), None, None
    try:
        os.environ.update(kernel_env)
        papermill.execute_notebook(
            str(source), str(out), parameters={"MODE": mode}, cwd=str(path.parent),
            kernel_name="python3", progress_bar=False, execution_timeout=timeout_s,
        )
    except Exception as exc:  # papermill raises PapermillExecutionError with the cell's traceback
        error = exc
    except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM (see stop), or raised in a thread that is not the main one
        error = interrupt = exc
        _end_started(before)
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        wall_s = time.perf_counter() - start
        sampler.stop()
    try:
        run.update(ok=error is None, cpu_s=round(sampler.cpu_s, 1), peak_mb=round(sampler.peak_mb, 1),
                   wall_s=round(wall_s, 1), data_log=str(data_log),
                   error=None if error is None else _describe(error, out, timeout_s, sampler.peak_mb))
        if error is None:
            _promote(staging, path.stem, mode)
        update_json(runs_file, lambda runs: runs.__setitem__(path.name, run))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if interrupt is not None:
        raise interrupt
    return run


def over_budget(run: dict) -> list[str]:
    """What a fast-mode run exceeded of :data:`BUDGET` (CPU time, peak memory), if anything."""
    over = []
    for key, limit in BUDGET.items():
        if run.get(key) is None:
            over.append(f"{key} not measured")
        elif run[key] > limit:
            over.append(f"{key} {run[key]} > {limit}")
    return over

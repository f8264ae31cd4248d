"""Record a lesson's key metrics beside the published value they reproduce, and check them.

``record`` adds to ``build/results/<lesson>.<mode>.json``; ``table`` reads every such file back,
and ``mlcourse results`` prints it as: metric | this run | published | ratio | mode. During a run
the runner points ``$MLCOURSE_STAGING_DIR`` at a folder of its own, so ``record`` writes there and
the runner promotes the staged files only when the notebook succeeds (see :mod:`mlcourse.runner`).

Every JSON file here is read and written through :func:`read_json` / :func:`update_json`: under a
lock file beside it, written to a temporary file and renamed over the old one, so a killed writer
leaves the old or the new file, never a torn one; a file that is not valid JSON anyway is reported
by name and set aside as ``<name>.corrupt-<time>``.

Each lesson states the values its metrics should reproduce in ``notebooks/<lesson>.toml`` (tables
``[expected.fast]`` and ``[expected.full]``); :func:`check` compares a recorded run with them.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import tomllib
import uuid
import warnings
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from .data import NOTEBOOK_DIR, REPO_ROOT, env_path

try:  # POSIX; elsewhere records are still replaced atomically, only without the lock
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

MODES = ("fast", "full")
STAGING_ENV = "MLCOURSE_STAGING_DIR"


class CorruptRecordWarning(UserWarning):
    """A record file was not valid JSON and has been set aside."""


class ExpectationError(ValueError):
    """A lesson's expectations file is malformed (the message names the file and the entry)."""


def build_dir() -> Path:
    """Where runs and results go: ``$MLCOURSE_BUILD_DIR`` (absolute, see :func:`mlcourse.data.env_path`)
    or the repository's ``build/``."""
    return env_path("MLCOURSE_BUILD_DIR") or REPO_ROOT / "build"


def results_dir() -> Path:
    """Where ``record`` writes: ``$MLCOURSE_STAGING_DIR`` during a runner's run, else ``build/results``."""
    staging = os.environ.get(STAGING_ENV)
    return Path(staging) if staging else build_dir() / "results"


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``<path>.lock`` (the lock file beside ``path``) for the block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        if fcntl is not None:
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield  # closing the file releases the lock


def _read(path: Path) -> dict:
    """``path``'s JSON object, {} if it does not exist; a corrupt file is set aside (caller holds the lock)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    try:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError(f"a JSON {type(data).__name__}, not an object")
        return data
    except ValueError as exc:  # json.JSONDecodeError is a ValueError
        aside = path.with_name(f"{path.name}.corrupt-{datetime.now():%Y%m%dT%H%M%S.%f}")
        os.replace(path, aside)
        warnings.warn(f"{path} is not a valid record ({exc}); set aside as {aside.name}, starting afresh",
                      CorruptRecordWarning, stacklevel=3)
        return {}


def _write(path: Path, data: dict) -> None:
    """Write ``data`` to a temporary file beside ``path``, then rename it over ``path`` (atomic)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp")  # mode from the umask
    try:
        with open(tmp, "x") as f:
            json.dump(data, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def read_json(path: Path) -> dict:
    """A record file's JSON object: {} when it is missing; a corrupt one is reported and set aside.

    Writers replace files whole, so reading needs no lock; setting a corrupt file aside takes it.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        if isinstance(data, dict):
            return data
    except FileNotFoundError:
        return {}
    except ValueError:
        pass
    with locked(path):
        return _read(path)


def update_json(path: Path, change: Callable[[dict], object]) -> dict:
    """Read ``path`` (as :func:`read_json`), let ``change`` edit the dict in place, write it back atomically.

    The lock is held from the read to the rename, so concurrent updates are not lost. Returns the
    dict written.
    """
    path = Path(path)
    with locked(path):
        data = _read(path)
        change(data)
        _write(path, data)
        return data


def replace_json(path: Path, data: dict | None) -> None:
    """Replace ``path`` with ``data`` atomically under its lock; ``None`` removes the file."""
    path = Path(path)
    with locked(path):
        if data is None:
            path.unlink(missing_ok=True)
        else:
            _write(path, data)


def record(
    lesson: str,
    name: str,
    value: float,
    unit: str,
    *,
    mode: str,
    published: float | None = None,
    source: str | None = None,
) -> dict:
    """Save one metric of ``lesson`` measured in ``mode`` ('fast' or 'full'); return the entry.

    ``published`` is the literature value this metric is compared with and ``source`` its
    citation (paper, leaderboard page). Raises ValueError on a NaN or infinite value.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be 'fast' or 'full', not {mode!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"metric {lesson}/{name} is not a finite number: {value}")
    entry = {
        "lesson": lesson,
        "metric": name,
        "value": value,
        "unit": unit,
        "published": None if published is None else float(published),
        "source": source,
        "mode": mode,
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.node()} ({os.cpu_count()} CPU)",
    }
    update_json(results_dir() / f"{lesson}.{mode}.json", lambda entries: entries.__setitem__(name, entry))
    return entry


def recorded(build: Path | None = None) -> dict[tuple[str, str], dict]:
    """Every recorded lesson's metrics, keyed by (lesson, mode), from ``build/results`` (default: :func:`build_dir`)."""
    folder = Path(build if build is not None else build_dir()) / "results"
    out = {}
    for path in sorted(folder.glob("*.json")):
        lesson, _, mode = path.stem.rpartition(".")
        out[lesson, mode] = read_json(path)
    return out


def table(mode: str | None = None) -> pd.DataFrame:
    """All recorded metrics (optionally of one mode) with ratio = this run / published."""
    rows = [e for entries in recorded().values() for e in entries.values()]
    df = pd.DataFrame(rows, columns=["lesson", "metric", "value", "unit", "published", "source", "mode", "time"])
    if mode is not None:
        df = df[df["mode"] == mode]
    df["ratio"] = df["value"] / df["published"].astype(float)
    return df.reset_index(drop=True)


def format_table(df: pd.DataFrame, markdown: bool = False) -> str:
    """The results table as aligned text, or as a Markdown table for docs/RESULTS.md."""
    cols = ["metric", "this run", "published", "ratio", "mode", "source"]
    lines = []
    for r in df.itertuples():
        pub = "" if pd.isna(r.published) else f"{r.published:.4g}"
        ratio = "" if pd.isna(r.ratio) else f"{r.ratio:.3f}"
        lines.append([f"{r.lesson}/{r.metric}", f"{r.value:.4g} {r.unit}".strip(), pub, ratio, r.mode, r.source or ""])
    if markdown:
        out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        return "\n".join(out + ["| " + " | ".join(row) + " |" for row in lines])
    return _aligned([cols, *lines])


def _aligned(rows: list[list[str]]) -> str:
    """Rows of strings as left-aligned columns (the last one unpadded)."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths[:-1]) + "  {}"
    return "\n".join(fmt.format(*row).rstrip() for row in rows)


def lesson_config(lesson: str) -> dict:
    """The lesson's ``notebooks/<lesson>.toml`` as a dict ({} when the lesson has none).

    Raises ExpectationError, naming the file, when it is not valid TOML.
    """
    path = NOTEBOOK_DIR / f"{lesson}.toml"
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        return {}
    except tomllib.TOMLDecodeError as exc:
        raise ExpectationError(f"{path}: {exc}") from None


def expected(lesson: str, mode: str) -> dict[str, dict]:
    """What ``lesson``'s metrics should be in ``mode``: {metric: {"value", "rtol", "atol"}}.

    Read from ``[expected.<mode>]`` of ``notebooks/<lesson>.toml``; each entry is
    ``"metric" = { value = ..., rtol = ..., atol = ... }`` (rtol, atol default 0; a metric passes
    when |recorded − value| ≤ atol + rtol·|value|, as numpy.isclose). Raises ExpectationError
    naming the file and the entry when an entry is malformed.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be 'fast' or 'full', not {mode!r}")
    where = NOTEBOOK_DIR / f"{lesson}.toml"
    entries = lesson_config(lesson).get("expected", {}).get(mode, {})
    out = {}
    for name, e in entries.items():
        spec = {"value": None, "rtol": 0.0, "atol": 0.0}
        if not isinstance(e, dict) or "value" not in e or set(e) - set(spec):
            raise ExpectationError(f"{where} [expected.{mode}] {name!r}: write {{ value = ..., rtol = ..., atol = ... }}"
                                   f" (value required; rtol and atol default 0), not {e!r}")
        for key in e:
            v = e[key]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or (key != "value" and v < 0):
                raise ExpectationError(f"{where} [expected.{mode}] {name!r}: {key} must be a finite number"
                                       f"{'' if key == 'value' else ' ≥ 0'}, not {v!r}")
            spec[key] = float(v)
        out[name] = spec
    return out


def check(mode: str = "fast", lessons: list[str] | None = None, build: Path | None = None) -> pd.DataFrame:
    """Compare the recorded metrics of ``lessons`` (default: every lesson with expectations) with them.

    One row per expected metric: lesson, metric, expected, rtol, atol, recorded (NaN when missing),
    status ('ok', 'drifted' or 'missing').
    """
    from .runner import notebooks

    runs = recorded(build)
    rows = []
    for lesson in lessons if lessons is not None else [p.stem for p in notebooks()]:
        if not (NOTEBOOK_DIR / f"{lesson}.toml").is_file():
            raise ExpectationError(f"{NOTEBOOK_DIR / lesson}.toml is missing: each lesson states its expected "
                                   "metrics there ([expected.fast], [expected.full])")
        got = runs.get((lesson, mode), {})
        for name, e in expected(lesson, mode).items():
            value = got[name]["value"] if name in got else math.nan
            if name not in got:
                status = "missing"
            else:
                status = "ok" if abs(value - e["value"]) <= e["atol"] + e["rtol"] * abs(e["value"]) else "drifted"
            rows.append({"lesson": lesson, "metric": name, "expected": e["value"], "rtol": e["rtol"],
                         "atol": e["atol"], "recorded": value, "status": status})
    return pd.DataFrame(rows, columns=["lesson", "metric", "expected", "rtol", "atol", "recorded", "status"])


def format_check(df: pd.DataFrame) -> str:
    """The rows of a :func:`check` table as aligned text: metric | expected | tolerance | recorded | status."""
    rows = [["metric", "expected", "tolerance", "recorded", "status"]]
    for r in df.itertuples():
        tol = " + ".join(t for t in (f"{r.atol:g}" if r.atol else "", f"{r.rtol:g}·|value|" if r.rtol else "") if t)
        rows.append([f"{r.lesson}/{r.metric}", f"{r.expected:.6g}", tol or "exact",
                     "" if math.isnan(r.recorded) else f"{r.recorded:.6g}", r.status])
    return _aligned(rows)


TIMING_UNITS = ("s", "graphs/s")  # metrics of how long a run took, not of what it found: never repeat exactly


def compare(build_a: Path, build_b: Path, lessons: list[str] | None = None, rtol: float = 1e-9,
            atol: float = 0.0) -> list[str]:
    """Where two build folders' recorded metrics differ by more than ``rtol`` (relative) and ``atol``
    (absolute: for metrics near zero, such as an R² of a model no better than the mean), as lines.

    Compares every metric of the lessons given (default: every lesson either folder recorded), in
    every mode, but timings (``TIMING_UNITS``); a metric recorded in one folder only is a difference too.
    """
    a, b = recorded(Path(build_a)), recorded(Path(build_b))
    diffs = []
    for lesson, mode in sorted(set(a) | set(b)):
        if lessons is not None and lesson not in lessons:
            continue
        ea, eb = a.get((lesson, mode), {}), b.get((lesson, mode), {})
        for name in sorted(set(ea) | set(eb)):
            if name not in ea or name not in eb:
                diffs.append(f"{lesson}/{name} ({mode}): recorded only in {build_a if name in ea else build_b}")
            elif ea[name]["unit"] in TIMING_UNITS:
                continue
            elif not math.isclose(ea[name]["value"], eb[name]["value"], rel_tol=rtol, abs_tol=atol):
                diffs.append(f"{lesson}/{name} ({mode}): {ea[name]['value']!r} in {build_a}, "
                             f"{eb[name]['value']!r} in {build_b}")
    if lessons is not None:
        for lesson in lessons:
            if not any(k[0] == lesson for k in set(a) | set(b)):
                diffs.append(f"{lesson}: no metrics recorded in either folder")
    return diffs

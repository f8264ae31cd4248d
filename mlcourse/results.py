"""Record a lesson's key metrics beside the published value they reproduce.

``record`` appends to ``build/results/<lesson>.<mode>.json``; ``table`` reads every such
file back, and ``mlcourse results`` prints it as: metric | this run | published | ratio | mode.
"""

from __future__ import annotations

import json
import math
import os
import platform
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from .data import REPO_ROOT


def build_dir() -> Path:
    """Where runs and results go: ``$MLCOURSE_BUILD_DIR`` or the repository's ``build/``."""
    return Path(os.environ.get("MLCOURSE_BUILD_DIR", REPO_ROOT / "build"))


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
    if mode not in ("fast", "full"):
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
    path = build_dir() / "results" / f"{lesson}.{mode}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    entries = json.loads(path.read_text()) if path.exists() else {}
    entries[name] = entry
    path.write_text(json.dumps(entries, indent=1))
    return entry


def table(mode: str | None = None) -> pd.DataFrame:
    """All recorded metrics (optionally of one mode) with ratio = this run / published."""
    rows = []
    for path in sorted((build_dir() / "results").glob("*.json")):
        rows.extend(json.loads(path.read_text()).values())
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
    widths = [max(len(c), *(len(row[i]) for row in lines)) if lines else len(c) for i, c in enumerate(cols)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths[:-1]) + "  {}"
    return "\n".join(fmt.format(*row) for row in [cols, *lines])

"""Course notebooks: structure checks, and each one executed once in fast mode through the runner."""

import json
import re

import nbformat
import pytest

from mlcourse import runner
from mlcourse.results import build_dir

NOTEBOOKS = runner.notebooks()
ids = [p.name for p in NOTEBOOKS]


def test_there_are_lessons():
    assert [p.name[:2] for p in NOTEBOOKS][:2] == ["00", "01"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count)]
    assert not dirty, f"{path.name}: cells {dirty} carry outputs; clear them before committing"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_one_parameters_cell_defaulting_to_fast(path):
    nb = nbformat.read(path, as_version=4)
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1
    assert re.match(r'MODE = "fast"', params[0].source)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_header_badge_and_exercises(path):
    nb = nbformat.read(path, as_version=4)
    head = nb.cells[0].source
    assert "**Time:**" in head and "**Prerequisites:**" in head and "You will learn" in head
    badge = re.search(r"colab\.research\.google\.com/github/[^/]+/[^/]+/blob/main/(\S+?)\)", head)
    assert badge and badge.group(1) == f"notebooks/{path.name}", "Colab badge must open this notebook"
    solutions = [c for c in nb.cells if "solution" in c.metadata.get("tags", [])]
    assert len(solutions) >= 3
    for c in solutions:
        assert c.source.startswith("# "), "a solution cell starts with the task as a comment"
        after = nb.cells[nb.cells.index(c) + 1]
        assert "check(" in after.source, "each solution is followed by its auto-check"


@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_notebook_runs_in_fast_mode_and_records_results(path):
    run = runner.run_notebook(path, "fast")
    assert run["ok"], run["error"]
    recorded = json.loads((build_dir() / "results" / f"{path.stem}.fast.json").read_text())
    assert any(e["published"] is not None and e["source"] for e in recorded.values())

import json

import nbformat

from mlcourse import runner


def _notebook(path, source):
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('MODE = "fast"')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(source)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def test_runner_injects_mode_measures_and_records(tmp_path, monkeypatch):
    monkeypatch.setenv("MLCOURSE_BUILD_DIR", str(tmp_path / "build"))
    src = "import numpy as np\nblock = np.ones(50_000_000)  # 400 MB\nassert MODE == 'full', MODE"
    run = runner.run_notebook(_notebook(tmp_path / "nb.ipynb", src), "full")
    assert run["ok"], run["error"]
    assert run["peak_mb"] > 400 and run["wall_s"] > 0
    saved = json.loads((tmp_path / "build" / "runs.full.json").read_text())
    assert saved["nb.ipynb"]["peak_mb"] == run["peak_mb"]


def test_a_failing_notebook_is_reported_not_raised(tmp_path, monkeypatch):
    monkeypatch.setenv("MLCOURSE_BUILD_DIR", str(tmp_path / "build"))
    run = runner.run_notebook(_notebook(tmp_path / "bad.ipynb", "raise ValueError('broken cell')"), "fast")
    assert not run["ok"] and "broken cell" in run["error"]


def test_over_budget():
    assert runner.over_budget({"wall_s": 10.0, "peak_mb": 300.0}) == []
    assert runner.over_budget({"wall_s": 200.0, "peak_mb": 2000.0}) == ["wall_s 200.0 > 180.0", "peak_mb 2000.0 > 1536.0"]


def test_a_run_replaces_the_notebooks_old_metrics(tmp_path, monkeypatch):
    monkeypatch.setenv("MLCOURSE_BUILD_DIR", str(tmp_path / "build"))
    from mlcourse import results

    results.record("nb2", "stale", 1.0, "", mode="fast")
    src = "from mlcourse import results\nresults.record('nb2', 'fresh', 2.0, '', mode=MODE)"
    assert runner.run_notebook(_notebook(tmp_path / "nb2.ipynb", src), "fast")["ok"]
    assert set(results.table().metric) == {"fresh"}

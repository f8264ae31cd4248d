import json

import numpy as np
import pytest

from mlcourse import cli, results


@pytest.fixture(autouse=True)
def build(tmp_path, monkeypatch):
    monkeypatch.setenv("MLCOURSE_BUILD_DIR", str(tmp_path))
    return tmp_path


def test_record_writes_a_machine_readable_entry(build):
    e = results.record("01_x", "mae", 0.45, "eV", mode="full", published=0.4461, source="leaderboard")
    saved = json.loads((build / "results" / "01_x.full.json").read_text())
    assert saved["mae"]["value"] == 0.45 and saved["mae"]["published"] == 0.4461 and e["mode"] == "full"


def test_table_has_ratio_and_filters_by_mode(build):
    results.record("01_x", "mae", 0.5, "eV", mode="fast", published=0.25, source="s")
    results.record("01_x", "mae", 0.3, "eV", mode="full", published=0.3, source="s")
    results.record("00_y", "count", 7, "", mode="fast")
    fast = results.table("fast")
    assert set(fast.metric) == {"mae", "count"}
    assert fast.set_index("metric").loc["mae", "ratio"] == pytest.approx(2.0)
    assert np.isnan(fast.set_index("metric").loc["count", "ratio"])
    assert len(results.table()) == 3


def test_rerecording_a_metric_replaces_it(build):
    results.record("01_x", "mae", 0.5, "eV", mode="fast")
    results.record("01_x", "mae", 0.4, "eV", mode="fast")
    assert results.table().value.tolist() == [0.4]


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_metrics_are_refused(value):
    with pytest.raises(ValueError, match="not a finite number"):
        results.record("01_x", "mae", value, "eV", mode="fast")


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="mode"):
        results.record("01_x", "mae", 1.0, "eV", mode="medium")


def test_cli_results_prints_the_comparison_table(build, capsys):
    results.record("01_x", "mae", 0.46, "eV", mode="full", published=0.4461, source="leaderboard")
    assert cli.main(["results"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:5] == ["metric", "this", "run", "published", "ratio"]
    assert "01_x/mae" in out and "1.031" in out and "full" in out
    assert cli.main(["results", "--markdown"]) == 0
    assert "| 01_x/mae | 0.46 eV | 0.4461 | 1.031 | full | leaderboard |" in capsys.readouterr().out

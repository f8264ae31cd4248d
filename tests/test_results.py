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


def test_a_corrupt_record_is_reported_by_name_set_aside_and_not_fatal(build, capsys):
    results.record("01_x", "mae", 0.5, "eV", mode="fast")
    bad = build / "results" / "00_y.fast.json"
    bad.write_text('{"count": {"value": 7')  # torn by a kill, as the old writer left it
    with pytest.warns(results.CorruptRecordWarning, match="00_y.fast.json"):
        assert results.table().metric.tolist() == ["mae"]
    assert not bad.exists() and len(list((build / "results").glob("00_y.fast.json.corrupt-*"))) == 1
    (build / "results" / "02_z.fast.json").write_text("")  # the 0-byte file of a kill inside record
    with pytest.warns(results.CorruptRecordWarning, match="02_z.fast.json"):
        results.record("02_z", "n", 1, "", mode="fast")
    assert set(results.table().metric) == {"mae", "n"}
    assert cli.main(["results"]) == 0


def test_concurrent_updates_in_threads_are_not_lost(build):
    from concurrent.futures import ThreadPoolExecutor

    path = build / "counter.json"
    bump = lambda d: d.__setitem__("n", d.get("n", 0) + 1)  # noqa: E731
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: results.update_json(path, bump), range(200)))
    assert results.read_json(path) == {"n": 200}


@pytest.fixture
def lessons(tmp_path, monkeypatch):
    """A notebooks folder with lesson 01_x (expectations in 01_x.toml) and 02_y (none)."""
    from mlcourse import runner

    nb_dir = tmp_path / "notebooks"
    nb_dir.mkdir()
    for name in ("01_x.ipynb", "02_y.ipynb"):
        (nb_dir / name).write_text("{}")
    (nb_dir / "01_x.toml").write_text(
        '[expected.fast]\n"mae" = { value = 0.5, rtol = 1e-3 }\n"count" = { value = 7 }\n'
        '"r2" = { value = 0.0, atol = 0.01 }\n\n[expected.full]\n"mae" = { value = 0.45, rtol = 2e-3 }\n')
    monkeypatch.setattr(results, "NOTEBOOK_DIR", nb_dir)
    monkeypatch.setattr(runner, "NOTEBOOK_DIR", nb_dir)
    return nb_dir


def test_expected_reads_the_lessons_toml(lessons):
    assert results.expected("01_x", "fast") == {
        "mae": {"value": 0.5, "rtol": 1e-3, "atol": 0.0}, "count": {"value": 7.0, "rtol": 0.0, "atol": 0.0},
        "r2": {"value": 0.0, "rtol": 0.0, "atol": 0.01}}
    assert results.expected("01_x", "full") == {"mae": {"value": 0.45, "rtol": 2e-3, "atol": 0.0}}
    assert results.expected("02_y", "fast") == {}
    assert results.lesson_config("01_x")["expected"]["fast"]["count"] == {"value": 7}


@pytest.mark.parametrize("entry, complaint", [
    ('"mae" = 0.5', "write { value"), ('"mae" = { rtol = 1e-3 }', "value required"),
    ('"mae" = { value = 0.5, tol = 1 }', "write { value"), ('"mae" = { value = 0.5, rtol = -1 }', "rtol must be"),
    ('"mae" = { value = "0.5" }', "value must be a finite number"), ('"mae" = { value = nan }', "finite")])
def test_a_malformed_expectation_names_the_file_and_entry(lessons, entry, complaint):
    (lessons / "01_x.toml").write_text(f"[expected.fast]\n{entry}\n")
    with pytest.raises(results.ExpectationError, match=complaint) as err:
        results.expected("01_x", "fast")
    assert "01_x.toml" in str(err.value) and "'mae'" in str(err.value)


def test_check_passes_within_tolerance_and_names_what_drifted_or_is_missing(lessons, capsys):
    results.record("01_x", "mae", 0.5004, "eV", mode="fast")  # within rtol 1e-3
    results.record("01_x", "count", 7, "", mode="fast")
    results.record("01_x", "r2", -0.009, "", mode="fast")  # within atol 0.01
    results.record("01_x", "seconds_per_epoch", 3.1, "s", mode="fast")  # a timing: not expected, not checked
    assert results.check("fast", ["01_x"]).status.tolist() == ["ok", "ok", "ok"]
    assert cli.main(["results", "--check", "01"]) == 0
    assert "all 3 expected fast-mode metrics of 1 lessons within tolerance" in capsys.readouterr().out
    results.record("01_x", "mae", 0.5006, "eV", mode="fast")  # just outside
    df = results.check("fast", ["01_x"]).set_index("metric")
    assert df.status.to_dict() == {"mae": "drifted", "count": "ok", "r2": "ok"}
    assert cli.main(["results", "--check", "01_x"]) == 1
    out = capsys.readouterr().out
    assert "1 of 3 expected fast-mode metrics drifted or are missing" in out
    assert [line.split() for line in out.splitlines() if "01_x/mae" in line] == [
        ["01_x/mae", "0.5", "0.001·|value|", "0.5006", "drifted"]]
    assert cli.main(["results", "--check", "--mode", "full", "01"]) == 1  # no full run recorded
    assert ["01_x/mae", "0.45", "0.002·|value|", "missing"] in [line.split() for line in capsys.readouterr().out.splitlines()]


def test_check_refuses_a_lesson_without_expectations(lessons, capsys):
    with pytest.raises(results.ExpectationError, match="02_y.toml is missing"):
        results.check("fast", ["02_y"])
    assert cli.main(["results", "--check"]) == 1  # every lesson, 02_y included
    assert "02_y.toml is missing" in capsys.readouterr().err


def test_compare_names_each_metric_that_differs_between_two_builds(tmp_path, monkeypatch, capsys):
    for folder, mae in (("a", 0.5), ("b", 0.5 * (1 + 1e-12))):
        monkeypatch.setenv("MLCOURSE_BUILD_DIR", str(tmp_path / folder))
        results.record("01_classic_regression", "mae", mae, "eV", mode="fast")
        results.record("01_classic_regression", "auc", 0.9, "", mode="fast")
        results.record("01_classic_regression", "fit time", 3.0 if folder == "a" else 4.0, "s", mode="fast")
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    assert results.compare(tmp_path / "a", tmp_path / "b") == []  # a timing is not a result: not compared
    assert cli.main(["results", "--compare", a, b, "01"]) == 0
    assert "3 metrics of" in capsys.readouterr().out
    results.record("01_classic_regression", "auc", 0.9000001, "", mode="fast")  # into b
    results.record("01_classic_regression", "extra", 1, "", mode="fast")
    assert cli.main(["results", "--compare", a, b]) == 1
    out = capsys.readouterr().out
    assert f"differs: 01_classic_regression/auc (fast): 0.9 in {a}, 0.9000001 in {b}" in out
    assert f"differs: 01_classic_regression/extra (fast): recorded only in {b}" in out
    assert cli.main(["results", "--compare", a, b, "00"]) == 1  # nothing recorded for lesson 00
    assert "00_data_and_representations: no metrics recorded in either folder" in capsys.readouterr().out
    # near zero, a relative tolerance is no tolerance: an absolute one says how far apart counts
    results.record("01_classic_regression", "r2", 0.0236, "", mode="fast")  # into b only: a difference
    monkeypatch.setenv("MLCOURSE_BUILD_DIR", str(tmp_path / "a"))
    results.record("01_classic_regression", "r2", 0.0236 + 3.5e-7, "", mode="fast")
    results.record("01_classic_regression", "auc", 0.9000001, "", mode="fast")
    results.record("01_classic_regression", "extra", 1, "", mode="fast")
    assert results.compare(tmp_path / "a", tmp_path / "b", rtol=1e-5) == [
        f"01_classic_regression/r2 (fast): {0.0236 + 3.5e-7!r} in {a}, 0.0236 in {b}"]
    assert results.compare(tmp_path / "a", tmp_path / "b", rtol=1e-5, atol=1e-6) == []


def test_every_lesson_states_its_expected_fast_metrics():
    from mlcourse import runner

    for path in runner.notebooks():
        fast = results.expected(path.stem, "fast")  # raises on a malformed entry
        assert fast, f"notebooks/{path.stem}.toml: no [expected.fast] metrics"
        assert all(e["rtol"] or e["atol"] or e["value"] == round(e["value"]) for e in fast.values()), \
            f"{path.stem}: a zero tolerance only for counts"
        results.expected(path.stem, "full")

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import psutil
import pytest

from mlcourse import results, runner

REPO = Path(__file__).resolve().parent.parent


def _notebook(path, *sources):
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('MODE = "fast"')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, *(nbformat.v4.new_code_cell(s) for s in sources)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


@pytest.fixture
def build(tmp_path, monkeypatch):
    monkeypatch.setenv("MLCOURSE_BUILD_DIR", str(tmp_path / "build"))
    return tmp_path / "build"


def test_runner_injects_mode_measures_and_records(tmp_path, build):
    src = "import numpy as np\nblock = np.ones(50_000_000)  # 400 MB\nassert MODE == 'full', MODE"
    run = runner.run_notebook(_notebook(tmp_path / "nb.ipynb", src), "full")
    assert run["ok"], run["error"]
    assert run["peak_mb"] > 400 and run["wall_s"] > 0 and run["cpu_s"] > 0
    saved = json.loads((build / "runs.full.json").read_text())
    assert saved["nb.ipynb"]["peak_mb"] == run["peak_mb"] and saved["nb.ipynb"]["cpu_s"] == run["cpu_s"]


def test_the_kernel_knows_its_notebook_as_under_jupyter_server(tmp_path, build):
    """mlcourse.lesson.detect reads $JPY_SESSION_NAME: the runner sets it to the notebook's path."""
    path = tmp_path / "05_named.ipynb"
    src = f"import os\nassert os.environ['JPY_SESSION_NAME'] == {str(path.resolve())!r}, os.environ.get('JPY_SESSION_NAME')"
    run = runner.run_notebook(_notebook(path, src), "fast")
    assert run["ok"], run["error"]


def test_a_failing_notebook_is_reported_not_raised(tmp_path, build):
    run = runner.run_notebook(_notebook(tmp_path / "bad.ipynb", "raise ValueError('broken cell')"), "fast")
    assert not run["ok"] and "broken cell" in run["error"]


def test_over_budget():
    """The gate is CPU time and peak memory; wall time is reported, not gated."""
    assert runner.BUDGET == {"cpu_s": 360.0, "peak_mb": 1024.0}
    assert runner.over_budget({"cpu_s": 10.0, "peak_mb": 300.0, "wall_s": 900.0}) == []
    assert runner.over_budget({"cpu_s": 400.0, "peak_mb": 2000.0, "wall_s": 10.0}) == [
        "cpu_s 400.0 > 360.0", "peak_mb 2000.0 > 1024.0"]
    assert runner.over_budget({"wall_s": 10.0, "peak_mb": 300.0}) == ["cpu_s not measured"]  # an older record


def test_a_run_replaces_the_notebooks_old_metrics(tmp_path, build):
    results.record("nb2", "stale", 1.0, "", mode="fast")
    src = "from mlcourse import results\nresults.record('nb2', 'fresh', 2.0, '', mode=MODE)"
    assert runner.run_notebook(_notebook(tmp_path / "nb2.ipynb", src), "fast")["ok"]
    assert set(results.table().metric) == {"fresh"}


def test_a_relative_build_dir_is_the_callers_not_the_notebooks(tmp_path, monkeypatch):
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    monkeypatch.setenv("PWD", str(tmp_path / "work"))
    monkeypatch.setenv("MLCOURSE_BUILD_DIR", "rel/build")  # the kernel runs in the notebook's folder
    (tmp_path / "lessons").mkdir()
    src = "from mlcourse import results, data\nresults.record('nb4', 'n', 1.0, '', mode=MODE)"
    run = runner.run_notebook(_notebook(tmp_path / "lessons" / "nb4.ipynb", src), "fast")
    assert run["ok"], run["error"]
    assert (tmp_path / "work" / "rel" / "build" / "results" / "nb4.fast.json").is_file()
    assert not (tmp_path / "lessons" / "rel").exists()


def test_a_failed_run_keeps_the_earlier_metrics_and_says_it_failed(tmp_path, build):
    results.record("nb3", "good", 1.0, "", mode="fast")
    src = "from mlcourse import results\nresults.record('nb3', 'good', 99.0, '', mode=MODE)\nraise RuntimeError('late failure')"
    run = runner.run_notebook(_notebook(tmp_path / "nb3.ipynb", src), "fast")
    assert not run["ok"] and "late failure" in run["error"]
    assert results.table().set_index("metric").value.to_dict() == {"good": 1.0}
    assert json.loads((build / "runs.fast.json").read_text())["nb3.ipynb"]["ok"] is False
    assert not any((build / "staging").iterdir()), "the failed run's staging folder is removed"


@pytest.mark.slow
def test_cpu_time_counts_the_kernel_and_children_that_exited_once_each(tmp_path, build):
    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < {}: pass"
    child = f"import subprocess, sys\nsubprocess.run([sys.executable, '-c', {burn.format(2.0)!r}], check=True)"
    own = ("import resource, pathlib\n"
           "s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)\n"
           f"pathlib.Path({str(tmp_path / 'kernel_cpu.txt')!r}).write_text(str(s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime))")
    run = runner.run_notebook(_notebook(tmp_path / "cpu.ipynb", burn.format(1.0), child, "time.sleep(2)", own), "fast")
    assert run["ok"], run["error"]
    kernel_cpu = float((tmp_path / "kernel_cpu.txt").read_text())  # the kernel's own count, child included
    assert kernel_cpu >= 3.0
    assert kernel_cpu - 0.3 <= run["cpu_s"] <= kernel_cpu + 1.0, (run["cpu_s"], kernel_cpu)  # the child counted once
    assert run["wall_s"] >= 2.0


def test_a_cell_over_the_time_limit_fails_the_run_naming_the_cell(tmp_path, build):
    nb = _notebook(tmp_path / "slow.ipynb", "x = 1", "import time\ntime.sleep(120)")
    run = runner.run_notebook(nb, "fast", cell_timeout=3)
    assert not run["ok"] and run["wall_s"] < 60
    assert "CellTimeoutError" in run["error"] and "`import time`" in run["error"] and "3 s" in run["error"], run["error"]


def test_the_cell_time_limit_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv(runner.CELL_TIMEOUT_ENV, raising=False)
    assert runner.cell_timeout_s() == 600
    monkeypatch.setenv(runner.CELL_TIMEOUT_ENV, "42")
    assert runner.cell_timeout_s() == 42
    monkeypatch.setenv(runner.CELL_TIMEOUT_ENV, "ten")
    with pytest.raises(ValueError, match=runner.CELL_TIMEOUT_ENV):
        runner.cell_timeout_s()


def test_a_dead_kernel_is_reported_with_its_cell_and_peak_memory(tmp_path, build):
    die = ("block = b'x' * (300 * 2**20)  # 300 MB, then the kernel dies\n"
           "import os, signal, time\ntime.sleep(0.5)\nos.kill(os.getpid(), signal.SIGKILL)")
    run = runner.run_notebook(_notebook(tmp_path / "dies.ipynb", "x = 1", die), "fast")
    assert not run["ok"] and run["peak_mb"] > 300
    assert "DeadKernelError" in run["error"] and "cell 3" in run["error"], run["error"]  # 0 params, 1 injected
    assert "`block = b'x' * (300 * 2**20)" in run["error"] and f"{run['peak_mb']:.0f} MB" in run["error"]


# --- records survive kills and concurrent runs (subprocesses: `mlcourse run`, or plain writers) ---

def _env(build):
    return {**os.environ, "MLCOURSE_BUILD_DIR": str(build), "PYTHONPATH": str(REPO)}


def _mlcourse_run(build, *notebooks):
    return subprocess.Popen([sys.executable, "-m", "mlcourse.cli", "run", "--fast", *map(str, notebooks)],
                            env=_env(build), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def _recording_notebook(path, lesson, run_id, n=4):
    cells = [f"from mlcourse import results\nimport time\nRUN = {run_id}"]
    cells += [f"results.record({lesson!r}, 'm{i}', RUN, '', mode=MODE)\ntime.sleep(0.3)" for i in range(n)]
    return _notebook(path, *cells)


def _started(build, pid):
    """Whether `mlcourse run` process ``pid`` has begun its run (its "not finished" record is written)."""
    try:
        return json.loads((build / "runs.fast.json").read_text()).get("kn.ipynb", {}).get("pid") == pid
    except (OSError, ValueError):
        return False


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=lambda s: s.name)
@pytest.mark.slow
def test_a_run_killed_at_any_moment_loses_nothing_recorded_earlier(tmp_path, sig):
    build, rng = tmp_path / "build", random.Random(sig)
    env_before = os.environ.get("MLCOURSE_BUILD_DIR")
    os.environ["MLCOURSE_BUILD_DIR"] = str(build)
    try:
        for i in range(4):
            results.record("kn", "m0", 0.0, "", mode="fast")  # an earlier good run's metric
            before = results.read_json(build / "results" / "kn.fast.json")
            nb = _recording_notebook(tmp_path / "kn.ipynb", "kn", run_id=i + 1)
            proc = _mlcourse_run(build, nb)
            deadline = time.monotonic() + 60
            while proc.poll() is None and time.monotonic() < deadline and not _started(build, proc.pid):
                time.sleep(0.05)
            time.sleep(rng.uniform(0.0, 4.0))  # into the run: the kernel starts in ~2 s, the cells take ~1.2 s
            kernel = [p for p in psutil.Process(proc.pid).children(recursive=True)] if proc.poll() is None else []
            proc.send_signal(sig)
            out, err = proc.communicate(timeout=60)
            gone, alive = psutil.wait_procs(kernel, timeout=15)
            for p in alive:
                p.kill()
            after = json.loads((build / "results" / "kn.fast.json").read_text())
            runs_file = build / "runs.fast.json"
            run = json.loads(runs_file.read_text()).get("kn.ipynb", {}) if runs_file.exists() else {}
            new = {f"m{j}": i + 1 for j in range(4)}
            assert after == before or {k: e["value"] for k, e in after.items()} == new, f"{sig.name}: a mix"
            if run.get("pid") != proc.pid:  # the signal came before the run began: nothing changed
                assert after == before
            elif run["ok"]:  # finished before the signal: the whole new set
                assert {k: e["value"] for k, e in after.items()} == new
            else:
                assert after == before, f"{sig.name} after {i}: earlier metrics changed"
                if sig != signal.SIGKILL:
                    assert proc.returncode == 130 and "interrupted" in run["error"]
                    ours = [line for line in err.splitlines() if not line.startswith("[IPKernelApp]")]  # kernel's own
                    assert len(ours) == 1 and ours[0].startswith("mlcourse run: interrupted"), err
                else:
                    assert "not finished" in run["error"]
            assert not alive, "the kernel outlived `mlcourse run`"
            for f in build.rglob("*.json"):
                json.loads(f.read_text())  # every record file stays valid JSON
    finally:
        if env_before is None:
            os.environ.pop("MLCOURSE_BUILD_DIR", None)
        else:
            os.environ["MLCOURSE_BUILD_DIR"] = env_before


@pytest.mark.slow
def test_concurrent_runs_and_writers_lose_no_update(tmp_path):
    build = tmp_path / "build"
    procs = [_mlcourse_run(build, _recording_notebook(tmp_path / f"c{i}.ipynb", f"c{i}", i + 1, n=2)) for i in range(3)]
    writer = ("from mlcourse import results\nimport sys\n"
              "for j in range(40): results.record('shared', f'w{sys.argv[1]}_{j}', j, '', mode='fast')")
    writers = [subprocess.Popen([sys.executable, "-c", writer, str(i)], env=_env(build)) for i in range(4)]
    for p in writers:
        assert p.wait(timeout=120) == 0
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    runs = json.loads((build / "runs.fast.json").read_text())
    assert {n for n, r in runs.items() if r["ok"]} == {"c0.ipynb", "c1.ipynb", "c2.ipynb"}
    for i in range(3):
        assert json.loads((build / "results" / f"c{i}.fast.json").read_text()).keys() == {"m0", "m1"}
    shared = json.loads((build / "results" / "shared.fast.json").read_text())
    assert set(shared) == {f"w{i}_{j}" for i in range(4) for j in range(40)}


@pytest.mark.slow
def test_a_writer_killed_mid_write_leaves_a_valid_file(tmp_path):
    build, rng = tmp_path / "build", random.Random(0)
    path = build / "results" / "big.fast.json"
    path.parent.mkdir(parents=True)
    entry = {"value": 0.0, "unit": "x" * 100}
    results.replace_json(path, {f"m{i}": entry for i in range(3000)})  # large: most of a write is writing
    writer = ("from mlcourse import results\nimport itertools\nprint('ready', flush=True)\n"
              "for i in itertools.count(): results.record('big', f'm{i % 3000}', i, 'x' * 100, mode='fast')")
    for _ in range(15):
        p = subprocess.Popen([sys.executable, "-c", writer], env=_env(build), stdout=subprocess.PIPE, text=True)
        assert p.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.05, 0.5))
        p.kill()
        p.wait()
        assert len(json.loads(path.read_text())) == 3000

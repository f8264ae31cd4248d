"""The lock is the single source of versions: install scripts, conda, Binder and this environment agree."""

import re
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
LOCK_LINES = [line for line in (ROOT / "requirements/lock.txt").read_text().splitlines() if line and not line.startswith("#")]
LOCK = dict(line.split()[0].split("==") for line in LOCK_LINES)


def test_lock_pins_the_deliberate_choices():
    assert LOCK["torch"] == "2.13.0"
    assert LOCK["e3nn"] == "0.6.0"
    assert LOCK["nequip"].startswith("0.19") and LOCK["mace-torch"] == "0.3.16"
    assert LOCK["matbench"] == "0.6" and "sevenn" in LOCK and "chgnet" in LOCK


def test_every_pin_carries_the_sha256_of_its_files():
    for line in LOCK_LINES:
        pin, *options = line.split()
        assert re.fullmatch(r"[A-Za-z0-9._-]+==[^=\s]+", pin), line
        assert options and all(re.fullmatch(r"--hash=sha256:[0-9a-f]{64}", o) for o in options), \
            f"{pin}: no sha256; run `bash requirements/relock.sh hashes`"
    assert Version(LOCK["setuptools"]) >= Version("77.0.3")  # what torch 2.13 requires


def test_every_install_path_uses_the_lock_on_python_311():
    assert "requirements/lock.txt" in (ROOT / "Makefile").read_text()
    assert "python3.11" in (ROOT / "Makefile").read_text()
    assert re.search(r"pip install --no-deps --require-hashes .*-r requirements/lock.txt", (ROOT / "Makefile").read_text())
    env = (ROOT / "environment.yml").read_text()
    assert "-r requirements/lock.txt" in env and "python=3.11" in env and "- --require-hashes" in env
    assert (ROOT / "binder/runtime.txt").read_text().strip() == "python-3.11"
    assert re.search(r"pip install --no-deps --require-hashes .*-r requirements/lock.txt",
                     (ROOT / "binder/postBuild").read_text())


# The only conflicts pip check may report: the two deliberate ones of README, "Pins" (and requirements/relock.sh).
DOCUMENTED_CONFLICTS = {"mace-torch": {"e3nn"}, "matbench": {"matminer", "monty", "scikit-learn", "scipy"}}


def test_pip_check_reports_only_the_documented_conflicts():
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "pip", "check", "--disable-pip-version-check"],
                          capture_output=True, text=True)
    found: dict[str, set[str]] = {}
    for line in done.stdout.splitlines():
        m = re.match(r"(\S+) [\w.+]+ has requirement ([A-Za-z0-9._-]+)", line)
        assert m, f"pip check: {line}"
        found.setdefault(m.group(1).lower(), set()).add(re.sub(r"[-_.]+", "-", m.group(2)).lower())
    assert found == DOCUMENTED_CONFLICTS, done.stdout
    assert '">=3.11,<3.14"' in (ROOT / "pyproject.toml").read_text()  # 3.13: Colab (requirements/colab.txt)


def test_readme_commands_are_what_ci_runs():
    readme = (ROOT / "README.md").read_text()
    assert "make course" in readme and "make test" in readme
    assert re.search(r"^make test$", (ROOT / ".ci/run").read_text(), re.M)


@pytest.mark.parametrize("name", sorted(LOCK))
def test_installed_version_matches_the_lock(name):
    try:
        installed = version(name)
    except PackageNotFoundError:
        pytest.fail(f"{name} is in requirements/lock.txt but not installed; run `make install`")
    assert installed.split("+")[0] == LOCK[name], f"{name}: installed {installed}, lock {LOCK[name]}"


def _names(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, ver = line.split("==", 1)
            pins[re.sub(r"[-_.]+", "-", name).lower()] = ver.strip()
    return pins


def test_colab_set_changes_none_of_colabs_packages_and_covers_the_course():
    colab_has = _names(ROOT / "requirements/colab-constraints.txt")
    installs = _names(ROOT / "requirements/colab.txt")
    assert colab_has["torch"] == "2.11.0" and colab_has["numpy"] == "2.1.3"
    assert not set(installs) & set(colab_has), "colab.txt would replace packages Colab already has"
    assert not [n for n in installs if re.match(r"nvidia-(?!ml-py)|cuda-|triton", n)]  # CUDA libraries
    wanted = [re.split(r"[=<> #\[]", line, maxsplit=1)[0] for line in (ROOT / "requirements/base.in").read_text().splitlines()
              if line.strip() and not line.startswith("#") and "# not on Colab" not in line]
    for name in [re.sub(r"[-_.]+", "-", n).lower() for n in wanted] + ["mace-torch", "matbench"]:
        assert name in installs or name in colab_has, f"{name} is needed on Colab but neither installed nor preinstalled"


def test_setup_cell_is_written_once_and_clones_this_release():
    import nbformat

    from mlcourse import colab, runner

    version = re.search(r'^version = "(.+)"', (ROOT / "pyproject.toml").read_text(), re.M).group(1)
    assert colab.RELEASE == f"v{version}" and f'KIT_RELEASE = "{colab.RELEASE}"' in colab.SETUP_CELL
    for path in runner.notebooks():
        first = next(c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")
        assert first.source == colab.SETUP_CELL, f"{path.name}: run `python -m mlcourse.colab --write-cells`"


def test_setup_cell_outside_colab_explains_and_installs_nothing(tmp_path):
    import os
    import subprocess
    import sys

    from mlcourse import colab

    env = {k: v for k, v in os.environ.items() if k not in ("COLAB_RELEASE_TAG", "PYTHONPATH")}
    # -S: no site-packages, so the kit is not importable, as in a kernel that lacks it
    done = subprocess.run([sys.executable, "-S", "-c", colab.SETUP_CELL], cwd=tmp_path, env=env,
                          capture_output=True, text=True)
    assert done.returncode != 0 and "not installed in this kernel" in done.stderr and "make course" in done.stderr
    assert not list(tmp_path.iterdir()), "the set-up cell wrote files outside Colab"
    done = subprocess.run([sys.executable, "-S", str(ROOT / "mlcourse/colab.py")], env=env, capture_output=True, text=True)
    assert done.returncode == 1 and "Colab only" in done.stderr


def test_colab_installer_installs_the_colab_set_then_the_kit(monkeypatch):
    from mlcourse import colab

    calls = []
    monkeypatch.setattr(colab, "pip", lambda *args: calls.append(args))
    colab.install()
    assert calls == [("-q", "--no-deps", "-r", str(ROOT / "requirements/colab.txt")), ("-q", "--no-deps", "-e", str(ROOT))]


def test_readme_has_colab_and_binder_badges_for_every_lesson():
    from mlcourse import colab, runner

    readme = (ROOT / "README.md").read_text()
    for path in runner.notebooks():
        assert colab.launch_badges(path.name) in readme, f"README: no launch badges for {path.name}"
    assert "mlcourse data fetch --all" in (ROOT / "binder/postBuild").read_text()


def test_sources_compile_without_warnings():
    """Every module and script compiles with warnings as errors: an invalid escape such as "\\|" in a
    docstring is only a DeprecationWarning on Python 3.11 but a SyntaxWarning on Colab's 3.13."""
    import warnings
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    files = [*root.glob("mlcourse/*.py"), *root.glob("data/*/*.py"), *root.glob("scripts/*.py"), *root.glob("tests/*.py")]
    assert len(files) > 20
    for path in files:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            compile(path.read_text(), str(path), "exec")

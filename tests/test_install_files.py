"""The lock is the single source of versions: install scripts, conda, Binder and this environment agree."""

import re
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LOCK = dict(
    line.split("==") for line in (ROOT / "requirements/lock.txt").read_text().splitlines()
    if line and not line.startswith("#")
)


def test_lock_pins_the_deliberate_choices():
    assert LOCK["torch"] == "2.13.0"
    assert LOCK["e3nn"] == "0.6.0"
    assert LOCK["nequip"].startswith("0.19") and LOCK["mace-torch"] == "0.3.16"
    assert LOCK["matbench"] == "0.6" and "sevenn" in LOCK and "chgnet" in LOCK


def test_every_install_path_uses_the_lock_on_python_311():
    assert "requirements/lock.txt" in (ROOT / "Makefile").read_text()
    assert "python3.11" in (ROOT / "Makefile").read_text()
    env = (ROOT / "environment.yml").read_text()
    assert "-r requirements/lock.txt" in env and "python=3.11" in env
    assert (ROOT / "binder/runtime.txt").read_text().strip() == "python-3.11"
    assert "-r requirements/lock.txt" in (ROOT / "binder/postBuild").read_text()
    assert '">=3.11,<3.12"' in (ROOT / "pyproject.toml").read_text()


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

"""What the tests share: the ``data`` marker's skip, a stand-in ``fetch`` and a stand-in ASE calculator.

Markers (pyproject.toml): ``data`` (reads the course datasets in ../shared/data), ``slow`` (more than a
few CPU-seconds), ``notebook`` (executes a lesson). ``make test`` runs everything; ``make quick`` runs
``-m "not notebook and not data and not slow"``.
"""

import os

# Tests never touch the network: a missing dataset must fail fast, not download.
os.environ.setdefault("MLCOURSE_OFFLINE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from ase.calculators.calculator import Calculator, all_changes  # noqa: E402

from mlcourse import data  # noqa: E402

SHARED_DATA = data.SHARED_DATA  # before any test monkeypatches it


def pytest_collection_modifyitems(items):
    """Skip the tests marked ``data`` when ../shared/data is not beside the repository."""
    if SHARED_DATA.is_dir():
        return
    skip = pytest.mark.skip(reason=f"needs the course datasets in ../shared/data, absent here ({SHARED_DATA})")
    for item in items:
        if item.get_closest_marker("data"):
            item.add_marker(skip)


@pytest.fixture
def fake_fetch(monkeypatch):
    """``fake_fetch(path)`` makes every ``data.fetch(name)`` return ``path``: a small file stands in for a dataset."""

    def use(path):
        monkeypatch.setattr(data, "fetch", lambda name: path)
        return path

    return use


class StoredLabels(Calculator):
    """A stand-in model: the stored labels of the frame with the same positions, its energy shifted by
    ``de`` eV per atom and its forces by ``df`` eV/Å (stress unchanged). ``de = df = 0``: a perfect model."""

    implemented_properties = ["energy", "forces", "stress"]

    def __init__(self, frames, de: float = 0.0, df: float = 0.0):
        super().__init__()
        self.frames, self.de, self.df = frames, de, df

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        ref = next((f for f in self.frames if np.array_equal(f.positions, self.atoms.positions)), None)
        if ref is None:
            raise ValueError("StoredLabels: no stored frame has these positions")
        self.results = {"energy": ref.get_potential_energy() + self.de * len(ref),
                        "forces": ref.get_forces() + self.df, "stress": ref.get_stress()}


@pytest.fixture
def stored_labels():
    """The :class:`StoredLabels` calculator class: ``stored_labels(frames, de=0.01)``."""
    return StoredLabels

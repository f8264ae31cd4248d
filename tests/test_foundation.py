"""Error tables, energy offsets, committees and the offline MACE-MP-0 skip (fast, offline)."""

from __future__ import annotations

import os

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.units import GPa

from mlcourse import foundation, metrics


@pytest.fixture(scope="module")
def frames():
    """Rattled Cu cells of different sizes with EMT labels on SinglePointCalculators."""
    rng = np.random.default_rng(0)
    out = []
    for i, reps in enumerate([(1, 1, 1), (2, 1, 1), (2, 2, 1), (1, 1, 1), (2, 2, 2)]):
        a = bulk("Cu", "fcc", a=3.6 + 0.02 * i, cubic=True).repeat(reps)
        a.positions += rng.normal(scale=0.05, size=a.positions.shape)
        a.calc = EMT()
        e, f, s = a.get_potential_energy(), a.get_forces(), a.get_stress()
        a.calc = SinglePointCalculator(a, energy=e, forces=f, stress=s)
        out.append(a)
    return out


def test_reference_copy_has_zero_error(frames, stored_labels):
    ref = foundation.labels(frames)
    pred = foundation.predict(stored_labels(frames), frames)
    assert all(v == 0 for v in metrics.potential_errors(pred, ref).values())
    report = metrics.potential_error_report(pred, ref)
    assert (report.drop(columns="checked for").to_numpy(dtype=float) == 0).all()


def test_constant_shift_gives_exactly_that_energy_error_and_the_offset_removes_it(frames, stored_labels):
    ref = foundation.labels(frames)
    pred = foundation.predict(stored_labels(frames, de=0.125), frames)
    err = metrics.potential_errors(pred, ref)
    assert err["energy_mae"] == pytest.approx(125.0, abs=1e-9)
    assert err["energy_rmse"] == pytest.approx(125.0, abs=1e-9)
    assert err["force_rmse"] == pytest.approx(0, abs=1e-12) and err["stress_rmse"] == pytest.approx(0, abs=1e-12)
    offset = foundation.fit_energy_offset(pred, ref)
    assert offset == {"Cu": pytest.approx(-0.125, abs=1e-12)}
    fixed = metrics.potential_errors(foundation.apply_offset(pred, offset), ref)
    assert fixed["energy_rmse"] == pytest.approx(0, abs=1e-9)
    with pytest.raises(ValueError, match="Cu"):
        foundation.apply_offset(pred, {"Au": 0.1})


def test_predict_calculates_each_frame_once(frames, stored_labels):
    class Counting(stored_labels):
        calls = 0

        def calculate(self, *args, **kwargs):
            Counting.calls += 1
            super().calculate(*args, **kwargs)

    pred = foundation.predict(Counting(frames), frames)
    assert Counting.calls == len(frames)  # a shared ASE calculator remembers only its last structure
    assert metrics.potential_errors(pred, foundation.labels(frames))["force_rmse"] == pytest.approx(0, abs=1e-12)


def test_errors_by_hand_and_stress_in_gpa(frames):
    ref = foundation.labels(frames)
    pred = {k: (np.copy(v) if k != "symbols" else v) for k, v in ref.items()}
    pred["energy"][0] += 0.003  # 3 meV/atom on one of 5 frames
    pred["forces"][0, 0] += 0.5
    pred["stress"][1, 2] += 2 * GPa
    err = metrics.potential_errors(pred, ref)
    n_f = ref["forces"].size
    assert err["energy_mae"] == pytest.approx(3 / 5)
    assert err["energy_rmse"] == pytest.approx(np.sqrt(9 / 5))
    assert err["force_mae"] == pytest.approx(0.5 / n_f)
    assert err["force_rmse"] == pytest.approx(np.sqrt(0.25 / n_f))
    assert err["stress_rmse"] == pytest.approx(np.sqrt(4 / 30))
    with pytest.raises(ValueError, match="do not match"):
        metrics.potential_errors({**pred, "energy": pred["energy"][:2]}, ref)


def test_labels_reject_a_frame_without_calculator(frames):
    bare = frames[0].copy()
    with pytest.raises(ValueError, match="frame 1"):
        foundation.labels([frames[0], bare])


def test_committee_disagreement_zero_for_identical_models_positive_otherwise(frames, stored_labels):
    same = foundation.committee_disagreement([EMT(), EMT(), EMT()], frames)
    assert same.shape == (len(frames),) and np.all(same == 0)
    pert = [f.copy() for f in frames]
    diff = foundation.committee_disagreement([EMT(), stored_labels(frames, de=0.125), stored_labels(frames)], frames)
    assert np.all(diff == 0)  # same forces through three different calculators
    from ase.calculators.lj import LennardJones

    mixed = foundation.committee_disagreement([EMT(), LennardJones(sigma=2.3, epsilon=0.4, rc=5.0)], pert)
    assert np.all(mixed > 0)
    with pytest.raises(ValueError, match="at least 2"):
        foundation.committee_disagreement([EMT()], frames)


def test_committee_spread_sees_strained_perfect_crystals_that_forces_miss():
    from ase.calculators.lj import LennardJones

    strained = bulk("Cu", "fcc", a=3.6, cubic=True)
    strained.set_cell(strained.cell.array @ np.diag([1.02, 1, 1]), scale_atoms=True)
    members = [EMT(), LennardJones(sigma=2.3, epsilon=0.4, rc=5.0)]
    spread = foundation.committee_spread(members, [strained])
    assert spread.loc[0, "force (eV/Å)"] < 1e-10  # zero forces by symmetry, for both members
    assert np.array_equal(spread["force (eV/Å)"], foundation.committee_disagreement(members, [strained]))
    assert spread.loc[0, "energy (meV/atom)"] > 1 and spread.loc[0, "stress (GPa)"] > 0.1
    with pytest.raises(ValueError, match="at least 2"):
        foundation.committee_spread([EMT()], [strained])


def test_committee_mean_and_bootstrap():
    p1 = {"energy": np.array([1.0]), "forces": np.zeros((2, 3)), "stress": np.zeros((1, 6)), "symbols": [["Si", "Si"]]}
    p2 = {"energy": np.array([3.0]), "forces": np.ones((2, 3)), "stress": np.ones((1, 6)), "symbols": [["Si", "Si"]]}
    m = foundation.committee_mean([p1, p2])
    assert m["energy"][0] == 2.0 and np.all(m["forces"] == 0.5) and m["symbols"] == p1["symbols"]
    idx = foundation.bootstrap_indices(10, 6, seed=3)
    assert len(set(idx)) == 6 and np.array_equal(idx, foundation.bootstrap_indices(10, 6, seed=3))
    with pytest.raises(ValueError):
        foundation.bootstrap_indices(5, 6, seed=0)


def test_rotation_check_of_an_invariant_calculator():
    rot = foundation.random_rotation(1)
    assert np.allclose(rot @ rot.T, np.eye(3)) and np.linalg.det(rot) == pytest.approx(1)
    a = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 1, 1))
    a.positions += np.random.default_rng(0).normal(scale=0.05, size=a.positions.shape)
    de, df = foundation.rotation_check(EMT(), a, rot)
    assert de < 1e-10 and df < 1e-10


def test_mace_mp_skips_cleanly_when_not_cached(tmp_path, monkeypatch, capsys):
    pytest.importorskip("mace")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    path = foundation.mace_mp_checkpoint("medium")
    assert path.parent == tmp_path / "mace" and not path.exists()
    assert foundation.mace_mp_calculator("medium") is None
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "skipped" in out and str(path) in out
    assert not (tmp_path / "mace").exists() or not any((tmp_path / "mace").iterdir())  # nothing downloaded
    with pytest.raises(ValueError, match="unknown MACE-MP model"):
        foundation.mace_mp_checkpoint("huge")


def test_chgnet_dataset_stress_round_trips_to_gpa(frames):
    pytest.importorskip("chgnet")
    ds = foundation.chgnet_dataset(frames[:2])
    _, targets = ds[0]
    # chgnet multiplies the (VASP-sign, kBar) stress by -0.1: GPa, + = tensile, as ASE / GPa
    np.testing.assert_allclose(targets["s"].numpy(), frames[0].get_stress(voigt=False) / GPa, rtol=1e-5, atol=1e-5)
    assert float(targets["e"]) == pytest.approx(frames[0].get_potential_energy() / len(frames[0]), rel=1e-6)


def test_maxvol_grade_is_at_most_one_on_the_training_set_and_larger_far_from_it():
    from mlcourse import potentials

    frames_ = []
    rng = np.random.default_rng(1)
    for i in range(8):
        a = bulk("Cu", "fcc", a=3.6, cubic=True)
        a.positions += rng.normal(scale=0.04, size=a.positions.shape)
        a.calc = EMT()
        a.calc = SinglePointCalculator(a, energy=a.get_potential_energy(), forces=a.get_forces(), stress=a.get_stress())
        frames_.append(a)
    calc, _ = potentials.train_mtp(frames_[:6], level=6, max_dist=4.5, maxiter=0)  # the linear fit only
    on_train = foundation.maxvol_grades(calc, frames_[:6], frames_[:6])
    assert on_train.shape == (6,) and np.all(on_train <= 1 + 1e-6)
    far = frames_[7].copy()
    far.set_cell(far.cell * 0.9, scale_atoms=True)  # 27 % denser than anything in training
    assert foundation.maxvol_grades(calc, frames_[:6], [far])[0] > 1.0


def test_full_unpickling_puts_the_variable_back(monkeypatch):
    monkeypatch.delenv(foundation.NO_WEIGHTS_ONLY, raising=False)
    with foundation.full_unpickling():
        assert os.environ[foundation.NO_WEIGHTS_ONLY] == "1"
    assert foundation.NO_WEIGHTS_ONLY not in os.environ
    monkeypatch.setenv(foundation.NO_WEIGHTS_ONLY, "0")
    with pytest.raises(RuntimeError), foundation.full_unpickling():
        raise RuntimeError("restored on errors too")
    assert os.environ[foundation.NO_WEIGHTS_ONLY] == "0"


# Run in a fresh interpreter: mace-torch sets the override when first imported, and other tests import it directly.
PAYLOAD_CHECK = r'''
import os, pickle, sys
import torch
from ase.build import bulk
from ase.calculators.emt import EMT
from mlcourse import foundation, potentials

os.environ.pop("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", None)
foundation.sevennet_calculator()                     # sevenn's checkpoint, loaded with full unpickling
foundation.mace_mp_checkpoint("medium")              # imports mace and mace.calculators, which set the override
cu = bulk("Cu", "fcc", a=3.6)
cu.calc = EMT()
cu.get_potential_energy(), cu.get_forces(), cu.get_stress()
potentials.calculator(potentials.mace_model([cu], channels=4))   # mace.modules, mace.calculators.MACECalculator
marker, path = sys.argv[1], sys.argv[2]


class Payload:
    def __reduce__(self):
        return (open, (marker, "w"))  # unpickling this would create a file


torch.save(Payload(), path)
try:
    torch.load(path)  # torch's default, weights_only=True
except pickle.UnpicklingError:
    print("refused")
print("override:", os.environ.get("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"))
'''


@pytest.mark.slow
def test_torch_load_refuses_pickled_code_after_mace_and_sevennet_in_the_same_process(tmp_path):
    import subprocess
    import sys

    pytest.importorskip("mace")
    pytest.importorskip("sevenn")
    marker = tmp_path / "payload-ran"
    env = {k: v for k, v in os.environ.items() if k != foundation.NO_WEIGHTS_ONLY}
    done = subprocess.run([sys.executable, "-c", PAYLOAD_CHECK, str(marker), str(tmp_path / "payload.pt")],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "refused" in done.stdout and "override: None" in done.stdout, done.stdout
    assert not marker.exists(), "torch.load ran the pickled payload"

"""mlearn stresses in ASE's convention, MTP level files and a tiny motep training (offline, < 1 min)."""

from __future__ import annotations

import contextlib
import io
import json
import re

import numpy as np
import pytest
from ase.units import GPa

from mlcourse import data, foundation, potentials


@pytest.fixture(scope="module")
def si_training():
    return data.load_mlearn("Si", "training")


# --------------------------------------------------------------------------- mlearn stresses


@pytest.mark.data
def test_load_mlearn_keeps_energy_forces_and_converts_stress():
    frames = data.load_mlearn("Si", "test")
    with open(data.fetch("mlip/mlearn/Si/test.json")) as fh:
        raw = json.load(fh)
    assert len(frames) == len(raw) == 25
    assert 0.1 * GPa == pytest.approx(1 / 1602.1766, rel=1e-6)  # 1 kBar in eV/Å³
    for atoms, e in zip(frames, raw):
        v = e["outputs"]["virial_stress"]  # VASP: kBar, (xx, yy, zz, xy, yz, zx), + = compressive
        xx, yy, zz, xy, yz, zx = (-0.1 * GPa * c for c in v)
        np.testing.assert_allclose(atoms.get_stress(), [xx, yy, zz, yz, zx, xy], rtol=1e-12, atol=0)
        assert atoms.get_stress().shape == (6,) and atoms.get_stress(voigt=False).shape == (3, 3)
        assert atoms.get_potential_energy() == e["outputs"]["energy"]
        np.testing.assert_array_equal(atoms.get_forces(), e["outputs"]["forces"])
        assert atoms.get_forces().shape == (len(atoms), 3) == (e["num_atoms"], 3)


@pytest.mark.data
def test_elastic_energy_changes_match_the_converted_stress(si_training):
    """Between neighbouring strains of one mode, ΔE ≈ ½(V₁σ₁ + V₂σ₂):Δε (ASE: σ = (1/V) ∂E/∂ε)."""
    modes = {}
    for a in si_training:
        m = re.search(r"mode (\d+), strain (-?[\d.]+)", a.info["description"])
        if a.info["group"] == "Elastic" and m:
            modes.setdefault(m[1], []).append((float(m[2]), a))
    dft, predicted = [], []
    for series in modes.values():
        series.sort(key=lambda t: t[0])
        for (_, a), (_, b) in zip(series, series[1:]):
            F = np.linalg.solve(a.cell[:], b.cell[:]).T  # b.cell = a.cell Fᵀ
            strain = 0.5 * (F + F.T) - np.eye(3)
            v_sigma = 0.5 * (a.get_volume() * a.get_stress(voigt=False) + b.get_volume() * b.get_stress(voigt=False))
            dft.append(b.get_potential_energy() - a.get_potential_energy())
            predicted.append(np.sum(v_sigma * strain))
    dft, predicted = np.array(dft), np.array(predicted)
    assert len(dft) >= 40 and len(modes) >= 6  # normal and shear modes
    assert np.linalg.norm(dft - predicted) / np.linalg.norm(dft) < 0.03


def test_load_mlearn_rejects_a_bad_virial_stress(tmp_path, fake_fetch):
    from pymatgen.core import Lattice, Structure

    s = Structure(Lattice.cubic(5.43), ["Si", "Si"], [[0, 0, 0], [0.25, 0.25, 0.25]])
    entry = {"structure": s.as_dict(), "group": "Elastic", "description": "x",
             "outputs": {"energy": -10.8, "forces": [[0, 0, 0], [0, 0, 0]], "virial_stress": [1, 2, 3, 4, 5]}}
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([entry]))
    fake_fetch(bad)
    with pytest.raises(ValueError, match="entry 0"):
        data.load_mlearn("Si", "test")


# --------------------------------------------------------------------------- MTP level files


def _moment_levels(mtp) -> list[int]:
    """Level of every moment: 2 + 4 mu + nu for basic ones; a contraction (sum of products) adds levels."""
    levels = [2 + 4 * mu + a1 + a2 + a3 for mu, a1, a2, a3 in mtp.alpha_index_basic]
    for i, j, _, k in mtp.alpha_index_times:
        if k == len(levels):
            levels.append(levels[i] + levels[j])
        assert levels[k] == levels[i] + levels[j]  # every term of a contraction has the same level
    return levels


# mlip-2's untrained_mtps/06.mtp, 08.mtp and 10.mtp (the course's level files until mtp_basis generated them):
# radial_funcs_count, alpha_moments_count, alpha_index_basic, alpha_index_times, alpha_moment_mapping.
MLIP2_LEVELS = {
    6: (2, 8,
        "{0, 0, 0, 0}, {0, 1, 0, 0}, {0, 0, 1, 0}, {0, 0, 0, 1}, {1, 0, 0, 0}",
        "{0, 0, 1, 5}, {1, 1, 1, 6}, {2, 2, 1, 6}, {3, 3, 1, 6}, {0, 5, 1, 7}",
        "0, 4, 5, 6, 7"),
    8: (2, 18,
        "{0, 0, 0, 0}, {0, 1, 0, 0}, {0, 0, 1, 0}, {0, 0, 0, 1}, {0, 2, 0, 0}, {0, 1, 1, 0}, "
        "{0, 1, 0, 1}, {0, 0, 2, 0}, {0, 0, 1, 1}, {0, 0, 0, 2}, {1, 0, 0, 0}",
        "{0, 0, 1, 11}, {1, 1, 1, 12}, {2, 2, 1, 12}, {3, 3, 1, 12}, {4, 4, 1, 13}, {5, 5, 2, 13}, "
        "{6, 6, 2, 13}, {7, 7, 1, 13}, {8, 8, 2, 13}, {9, 9, 1, 13}, {0, 10, 1, 14}, {0, 11, 1, 15}, "
        "{0, 12, 1, 16}, {0, 15, 1, 17}",
        "0, 10, 11, 12, 13, 14, 15, 16, 17"),
    10: (3, 41,
         "{0, 0, 0, 0}, {0, 1, 0, 0}, {0, 0, 1, 0}, {0, 0, 0, 1}, {0, 2, 0, 0}, {0, 1, 1, 0}, "
         "{0, 1, 0, 1}, {0, 0, 2, 0}, {0, 0, 1, 1}, {0, 0, 0, 2}, {0, 3, 0, 0}, {0, 2, 1, 0}, "
         "{0, 2, 0, 1}, {0, 1, 2, 0}, {0, 1, 1, 1}, {0, 1, 0, 2}, {0, 0, 3, 0}, {0, 0, 2, 1}, "
         "{0, 0, 1, 2}, {0, 0, 0, 3}, {1, 0, 0, 0}, {1, 1, 0, 0}, {1, 0, 1, 0}, {1, 0, 0, 1}, "
         "{2, 0, 0, 0}",
         "{0, 0, 1, 25}, {1, 1, 1, 26}, {2, 2, 1, 26}, {3, 3, 1, 26}, {1, 4, 1, 27}, {2, 5, 1, 27}, "
         "{3, 6, 1, 27}, {1, 5, 1, 28}, {2, 7, 1, 28}, {3, 8, 1, 28}, {1, 6, 1, 29}, {2, 8, 1, 29}, "
         "{3, 9, 1, 29}, {4, 4, 1, 30}, {5, 5, 2, 30}, {6, 6, 2, 30}, {7, 7, 1, 30}, {8, 8, 2, 30}, "
         "{9, 9, 1, 30}, {10, 10, 1, 31}, {11, 11, 3, 31}, {12, 12, 3, 31}, {13, 13, 3, 31}, "
         "{14, 14, 6, 31}, {15, 15, 3, 31}, {16, 16, 1, 31}, {17, 17, 3, 31}, {18, 18, 3, 31}, "
         "{19, 19, 1, 31}, {0, 20, 1, 32}, {1, 21, 1, 33}, {2, 22, 1, 33}, {3, 23, 1, 33}, "
         "{0, 25, 1, 34}, {0, 26, 1, 35}, {0, 30, 1, 36}, {1, 27, 1, 37}, {2, 28, 1, 37}, "
         "{3, 29, 1, 37}, {0, 32, 1, 38}, {0, 34, 1, 39}, {0, 35, 1, 40}",
         "0, 20, 24, 25, 26, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40"),
}
# mlip-2's 12.mtp and 14.mtp: radial_funcs_count, alpha_moments_count, alpha_index_basic_count,
# alpha_index_times_count, alpha_scalar_moments.
MLIP2_COUNTS = {12: (3, 84, 46, 117, 29), 14: (4, 174, 81, 348, 52)}


def _rows(rows) -> str:
    return ", ".join("{" + ", ".join(map(str, r)) + "}" for r in rows)


@pytest.mark.parametrize("level", sorted(MLIP2_LEVELS))
def test_mtp_basis_reproduces_mlip2_level_files(level):
    basis = potentials.mtp_basis(level)
    assert (basis["radial_funcs_count"], basis["alpha_moments_count"], _rows(basis["alpha_index_basic"]),
            _rows(basis["alpha_index_times"]), ", ".join(map(str, basis["alpha_moment_mapping"]))) == MLIP2_LEVELS[level]


@pytest.mark.parametrize("level", sorted(MLIP2_COUNTS))
def test_mtp_basis_of_higher_levels_has_mlip2s_size(level):
    basis = potentials.mtp_basis(level)
    assert (basis["radial_funcs_count"], basis["alpha_moments_count"], len(basis["alpha_index_basic"]),
            len(basis["alpha_index_times"]), len(basis["alpha_moment_mapping"])) == MLIP2_COUNTS[level]


@pytest.mark.parametrize("level", [2, 4, 6, 8, 10, 12, 14])
def test_untrained_mtp_round_trips_through_motep(tmp_path, level):
    path = tmp_path / f"{level:02d}.mtp"
    path.write_text(potentials.untrained_mtp(level, ["Si", "Ge"], min_dist=1.9, max_dist=5.0, radial_basis_size=7))
    mtp = potentials.read_mtp(path)
    assert mtp.species_count == 2 and mtp.radial_basis.type == "RBChebyshev"
    assert (mtp.radial_basis.min, mtp.radial_basis.max, mtp.radial_basis.size) == (1.9, 5.0, 7)
    assert len(mtp.alpha_index_basic) == mtp.alpha_index_basic_count
    assert len(mtp.alpha_index_times) == mtp.alpha_index_times_count
    assert len(mtp.alpha_moment_mapping) == mtp.alpha_scalar_moments
    levels = _moment_levels(mtp)
    assert len(levels) == mtp.alpha_moments_count
    assert max(levels[k] for k in mtp.alpha_moment_mapping) == level
    assert mtp.radial_funcs_count == 1 + max(mu for mu, *_ in mtp.alpha_index_basic)


@pytest.mark.parametrize("args", [(7, ["Si"], 2.0, 5.0), (16, ["Si"], 2.0, 5.0), (0, ["Si"], 2.0, 5.0), (8, [], 2.0, 5.0), (8, ["Si"], 5.0, 2.0)])
def test_untrained_mtp_rejects_unknown_levels_and_bad_bounds(args):
    with pytest.raises(ValueError):
        potentials.untrained_mtp(*args)


def test_repair_mtp_makes_a_motep_020_file_readable(tmp_path):
    initial = tmp_path / "initial.mtp"
    initial.write_text(potentials.untrained_mtp(6, ["Si", "Ge"], 2.0, 5.0, 4))
    mtp = potentials.read_mtp(initial)
    mtp.species = [14, 32]
    mtp.initialize(np.random.default_rng(0))
    written = tmp_path / "trained.mtp"
    potentials.write_mtp(written, mtp)  # motep 0.2.0's default layout, as `motep train` writes it
    with pytest.raises(KeyError, match="radial_funcs_count"):
        potentials.read_mtp(written)
    potentials.repair_mtp(written)
    repaired = potentials.read_mtp(written)
    np.testing.assert_allclose(repaired.radial_coeffs, mtp.radial_coeffs, rtol=1e-14)  # written with 16 digits
    np.testing.assert_allclose(repaired.moment_coeffs, mtp.moment_coeffs, rtol=1e-14)
    text = written.read_text()
    assert potentials.repair_mtp(written).read_text() == text  # idempotent


# --------------------------------------------------------------------------- training


@pytest.mark.data
@pytest.mark.slow
def test_tiny_mtp_beats_a_constant_energy_per_atom(si_training, tmp_path):
    frames = si_training[::11]  # 20 configurations from every group, 8-64 atoms
    calc, losses = potentials.train_mtp(frames, level=6, maxiter=15, workdir=tmp_path, progress=False)
    assert 4 <= len(losses) <= 15 + 3 and losses[-1] < 0.01 * losses[0]  # start, linear fit, iterations, refit

    e_dft = np.array([a.get_potential_energy() / len(a) for a in frames])
    e_mtp, f_err = [], []
    for a in frames:  # one calculator for cells of different sizes
        b = a.copy()
        b.calc = calc
        e_mtp.append(b.get_potential_energy() / len(b))
        f_err.append(b.get_forces() - a.get_forces())
    rmse = np.sqrt(np.mean((np.array(e_mtp) - e_dft) ** 2))
    baseline = np.sqrt(np.mean((e_dft.mean() - e_dft) ** 2))  # best constant eV/atom
    assert np.isfinite(rmse) and rmse < 0.5 * baseline
    f_dft = np.concatenate([a.get_forces() for a in frames])
    assert np.sqrt(np.mean(np.concatenate(f_err) ** 2)) < np.sqrt(np.mean(f_dft**2))  # better than zero forces

    reloaded = potentials.load_mtp(tmp_path / "final.mtp", ["Si"])
    b = frames[0].copy()
    b.calc = reloaded
    assert b.get_potential_energy() / len(b) == pytest.approx(e_mtp[0], abs=1e-9)


def _emt_cu(n: int, seed: int = 0) -> list:
    """``n`` rattled 4-atom Cu cells with EMT energy, forces and stress on SinglePointCalculators."""
    from ase.build import bulk
    from ase.calculators.emt import EMT
    from ase.calculators.singlepoint import SinglePointCalculator

    frames, rng = [], np.random.default_rng(seed)
    for _ in range(n):
        a = bulk("Cu", "fcc", a=rng.uniform(3.55, 3.65), cubic=True)
        a.positions += rng.normal(scale=0.05, size=a.positions.shape)
        a.calc = EMT()
        a.calc = SinglePointCalculator(a, energy=a.get_potential_energy(), forces=a.get_forces(), stress=a.get_stress())
        frames.append(a)
    return frames


def test_train_mtp_is_the_three_step_motep_fit_and_records_each_iteration(tmp_path):
    """The same fit as motep's Trainer given the steps by hand (as the lessons did before ``maxiter``)."""
    from motep.train.trainer import Trainer

    frames = _emt_cu(6)
    calc, losses = potentials.train_mtp(frames, level=6, max_dist=4.5, maxiter=8, seed=3, progress=False)
    steps = [{"method": "LLS", "optimized": ["species_coeffs", "moment_coeffs"]},
             {"method": "minimize", "optimized": ["species_coeffs", "moment_coeffs", "radial_coeffs"],
              "kwargs": {"method": "BFGS", "options": {"maxiter": 8}}},
             {"method": "LLS", "optimized": ["species_coeffs", "moment_coeffs"]}]
    assert potentials.mtp_steps(8) == steps
    path = tmp_path / "initial.mtp"
    path.write_text(potentials.untrained_mtp(6, ["Cu"], round(potentials.min_distance(frames) - 0.05, 2), 4.5))
    by_hand = potentials.read_mtp(path)
    by_hand.species = [29]
    with contextlib.chdir(tmp_path), contextlib.redirect_stdout(io.StringIO()):  # motep writes intermediate_*.mtp
        Trainer(by_hand, rng=np.random.default_rng(3), loss=None, steps=steps).train(frames)
    for key in ("species_coeffs", "moment_coeffs", "radial_coeffs"):
        np.testing.assert_array_equal(getattr(calc.engine.mtp_data, key), getattr(by_hand, key))
    assert 4 <= len(losses) <= 8 + 3 and all(np.isfinite(losses))
    assert all(b <= a for a, b in zip(losses, losses[1:]))  # linear fits are optimal, BFGS steps go downhill
    again, losses_again = potentials.train_mtp(frames, level=6, max_dist=4.5, maxiter=8, seed=3, progress=False)
    assert losses_again == losses and np.array_equal(again.engine.mtp_data.parameters, calc.engine.mtp_data.parameters)
    import logging

    assert not logging.getLogger("motep.optimizers.scipy").handlers  # the loss log is removed after the fit


def test_train_mtp_converges_where_l_bfgs_b_stalls():
    """60 iterations bring the loss two orders of magnitude below the linear fit's, with linear coefficients
    already optimal for the radial functions found (the refit gains < 2 %). motep's L-BFGS-B (10 correction
    pairs) stops after 26 iterations at 0.56 × the linear fit's loss, and its refit still gains 19 %."""
    _, losses = potentials.train_mtp(_emt_cu(6), level=6, max_dist=4.5, maxiter=60, seed=0, progress=False)
    assert losses[-2] < 0.01 * losses[1]  # after the iterations, before the refit
    assert losses[-1] > 0.98 * losses[-2]


def test_train_mtp_maxiter_zero_is_the_linear_fit_alone():
    assert potentials.mtp_steps(0) == [{"method": "LLS", "optimized": ["species_coeffs", "moment_coeffs"]}]
    _, losses = potentials.train_mtp(_emt_cu(4), level=6, max_dist=4.5, maxiter=0, progress=False)
    assert len(losses) == 2 and losses[1] < losses[0]  # the random start, the linear fit
    with pytest.raises(ValueError, match="maxiter must be >= 0"):
        potentials.mtp_steps(-1)


@pytest.mark.parametrize("level", [12, 14])
def test_mtp_basis_of_higher_levels_is_rotation_invariant(level):
    """A fitted MTP of the generated basis: the energy of a cell does not change when it turns, the forces turn."""
    from scipy.spatial.transform import Rotation

    frames = _emt_cu(4)
    calc, _ = potentials.train_mtp(frames, level=level, max_dist=4.5, maxiter=0, progress=False)
    rot = Rotation.random(random_state=1).as_matrix()
    a = frames[0].copy()
    b = a.copy()
    b.set_cell(a.cell.array @ rot.T, scale_atoms=False)
    b.set_positions(a.positions @ rot.T)
    a.calc = b.calc = calc
    assert abs(b.get_potential_energy() - a.get_potential_energy()) < 1e-9 * abs(a.get_potential_energy())
    np.testing.assert_allclose(b.get_forces(), a.get_forces() @ rot.T, atol=1e-8)
    assert np.abs(a.get_forces()).max() > 1e-3  # the forces are not trivially zero


def _lesson_03_table(train: list, test: list) -> "pd.DataFrame":
    """Lesson 03's training and error-table calls (section 3-4) at a tiny size: MTP, NequIP and MACE."""
    from mlcourse import metrics

    calcs = {"MTP": potentials.train_mtp(train, level=6, max_dist=4.5, maxiter=10, seed=0, progress=False,
                                         weights={"energy_weight": 1.0, "forces_weight": 0.01, "stress_weight": 0.001})[0]}
    with potentials.float64():
        for name, build in [("NequIP", potentials.nequip_model), ("MACE", potentials.mace_model)]:
            model = build(train, r_max=4.0, seed=0)
            history = potentials.train_potential(model, train, epochs=2, lr=1e-2, batch_size=2, seed=0, progress=False)
            assert len(history.train_loss) == 2 and all(np.isfinite(history.train_loss))
            calcs[name] = potentials.calculator(model)
        report = potentials.error_table(calcs, test)
    assert list(report.index) == ["MTP", "NequIP", "MACE"]
    assert np.isfinite(report.to_numpy()).all() and (report.to_numpy() >= 0).all()
    assert "energy_mae (meV/atom)" in metrics.with_units(report).columns
    return report


def _constant_energy_mae(train: list, test: list) -> float:
    """MAE (meV/atom) of predicting every test energy per atom by the training mean: the bar a fit must clear."""
    mean = np.mean([a.get_potential_energy() / len(a) for a in train])
    return 1000 * float(np.mean([abs(a.get_potential_energy() / len(a) - mean) for a in test]))


@pytest.mark.data
@pytest.mark.slow
def test_lesson_03_training_and_error_table_run_on_germanium():
    train = data.load_mlearn("Ge", "training")[::40]  # 6 configurations, most of them 64-atom AIMD snapshots
    test = data.load_mlearn("Ge", "test")[:3]
    assert {s for a in train + test for s in a.get_chemical_symbols()} == {"Ge"} and len(train) == 6
    report = _lesson_03_table(train, test)
    assert report.loc["MTP", "energy_mae"] < _constant_energy_mae(train, test)


@pytest.mark.slow
def test_lesson_03_training_and_error_table_run_on_a_user_extxyz_file(tmp_path):
    from ase.io import write

    frames = _emt_cu(8, seed=5)  # EMT labels on SinglePointCalculators, as a user's DFT data would carry them
    write(tmp_path / "my_data.extxyz", frames)
    loaded = data.load_mlearn(tmp_path / "my_data.extxyz")
    np.testing.assert_allclose([a.get_stress() for a in loaded], [a.get_stress() for a in frames], atol=1e-12)
    report = _lesson_03_table(loaded[:6], loaded[6:])
    assert report.loc["MTP", "force_mae"] < np.mean(np.abs(np.concatenate([a.get_forces() for a in loaded[6:]])))


# --------------------------------------------------------------------------- MACE / NequIP wrappers


def test_reference_energies_solve_a_two_element_fit():
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator

    frames = []
    for n_si, n_ge in [(2, 0), (1, 3), (4, 4), (0, 5)]:
        a = Atoms(["Si"] * n_si + ["Ge"] * n_ge, positions=np.arange(3 * (n_si + n_ge)).reshape(-1, 3))
        a.calc = SinglePointCalculator(a, energy=-5.4 * n_si - 4.6 * n_ge)
        frames.append(a)
    e0 = potentials.reference_energies(frames)
    assert list(e0) == ["Si", "Ge"]  # ordered by atomic number
    assert e0["Si"] == pytest.approx(-5.4) and e0["Ge"] == pytest.approx(-4.6)


@pytest.mark.data
@pytest.mark.parametrize("kind", ["mace", "nequip"])
@pytest.mark.slow
def test_train_potential_learns_and_its_calculator_is_consistent(si_training, kind):
    import torch
    from scipy.spatial.transform import Rotation

    with potentials.float64():
        frames = [a for a in si_training if a.info["group"] == "AIMD-NVT"][:4]  # 64 atoms, forces ~1 eV/Å
        build = potentials.mace_model if kind == "mace" else potentials.nequip_model
        model = build(frames, r_max=4.0, seed=0)
        history = potentials.train_potential(model, frames, epochs=10, lr=1e-2, batch_size=2,
                                             val_frames=frames[:2], progress=False)
        assert len(history.train_loss) == len(history.val_metric) == 10
        assert history.train_loss[-1] < 0.5 * history.train_loss[0]
        assert min(history.val_metric) < history.val_metric[0]
        assert history.val_metric[history.best_epoch] == min(history.val_metric)  # the weights kept

        calc = potentials.calculator(model)
        atoms = frames[0].copy()
        atoms.calc = calc
        # stress in ASE's convention (eV/Å³, + = tensile) and forces = -dE/dx, checked by finite differences
        np.testing.assert_allclose(atoms.get_stress(), calc.calculate_numerical_stress(atoms, d=1e-5), atol=1e-6)
        np.testing.assert_allclose(atoms.get_forces()[0], calc.calculate_numerical_forces(atoms, d=1e-5)[0], atol=1e-5)
        # rotating the crystal leaves the energy unchanged and rotates the forces
        d_energy, d_forces = foundation.rotation_check(calc, frames[0], Rotation.random(random_state=3).as_matrix())
        assert d_energy < 1e-8 and d_forces < 1e-8


def test_float64_sets_the_default_dtype_inside_and_restores_it_after():
    import torch

    before = torch.get_default_dtype()
    assert before == torch.float32  # no builder left another default behind
    with potentials.float64():
        assert torch.get_default_dtype() == torch.float64 and torch.ones(1).dtype == torch.float64
    assert torch.get_default_dtype() == before
    with pytest.raises(RuntimeError, match="restored"), potentials.float64():
        raise RuntimeError("restored on errors too")
    assert torch.get_default_dtype() == before


def _cu():
    from ase.build import bulk
    from ase.calculators.emt import EMT

    cu = bulk("Cu", "fcc", a=3.6, cubic=True)
    cu.calc = EMT()
    cu.get_potential_energy(), cu.get_forces(), cu.get_stress()
    return cu


@pytest.mark.parametrize("kind", ["MACE", "NequIP"])
def test_builders_leave_torch_global_state_alone_and_their_backend_owns_the_model(kind):
    import torch

    torch.manual_seed(7)
    state, dtype = torch.random.get_rng_state(), torch.get_default_dtype()
    build = {"MACE": potentials.mace_model, "NequIP": potentials.nequip_model}[kind]
    model = build([_cu()], r_max=3.0, seed=1)
    assert torch.equal(torch.random.get_rng_state(), state) and torch.get_default_dtype() == dtype
    assert next(model.parameters()).dtype == torch.float64
    again = build([_cu()], r_max=3.0, seed=1)  # weights from the seed
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), again.parameters()))
    assert potentials.backend(model) is potentials.BACKENDS[kind]
    assert [b.owns(model) for b in potentials.BACKENDS.values()].count(True) == 1
    with pytest.raises(RuntimeError, match="float64"):
        potentials._graphs(model, [_cu()])  # graphs take the default dtype: float32 here
    with potentials.float64():
        energy, forces, stress = potentials._forward(model, potentials._graphs(model, [_cu()]), training=False)
    assert energy.shape == (1,) and forces.shape == (4, 3) and stress.shape == (1, 3, 3)


def test_an_unknown_model_names_the_backends():
    with pytest.raises(TypeError, match=r"Linear is no model of a known back-end \(MACE, NequIP\)"):
        potentials.calculator(__import__("torch").nn.Linear(1, 1))


def test_train_potential_rejects_an_empty_training_set():
    with pytest.raises(ValueError, match="no training frames"):
        potentials.train_potential(object(), [])


@pytest.mark.data
def test_error_table_is_zero_for_the_reference_and_exact_for_a_shift(stored_labels):
    frames = data.load_mlearn("Si", "test")[:4]
    table = potentials.error_table({"shifted": stored_labels(frames, de=0.010, df=0.1)}, frames)
    row = table.loc["shifted"]
    assert row["energy_rmse"] == pytest.approx(10.0) and row["energy_mae"] == pytest.approx(10.0)
    assert row["force_rmse"] == pytest.approx(0.1) and row["force_mae"] == pytest.approx(0.1)
    assert row["stress_rmse"] == pytest.approx(0.0, abs=1e-12)


@pytest.mark.data
def test_mlearn_frames_round_trip_through_extxyz(tmp_path):
    """The training files other codes read (nequip-train, mace_run_train) keep E, F and stress exactly."""
    from ase.io import read, write

    frames = data.load_mlearn("Si", "test")[:3]
    write(tmp_path / "test.xyz", frames)
    back = read(tmp_path / "test.xyz", ":")
    for a, b in zip(frames, back):
        assert b.get_potential_energy() == pytest.approx(a.get_potential_energy(), abs=1e-8)
        np.testing.assert_allclose(b.get_forces(), a.get_forces(), atol=1e-8)
        np.testing.assert_allclose(b.get_stress(), a.get_stress(), atol=1e-10)  # eV/Å³, ASE sign

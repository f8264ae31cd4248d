"""Smoke tests for the pinned machine-learning stack of the course (CPU only, offline).

These tests check that the packages the notebooks rely on import together in one
interpreter, that the two trainable equivariant potentials (MACE and NequIP) can build a
tiny model and actually learn on real DFT data, and that the foundation potentials whose
weights ship inside their wheels (CHGNet, SevenNet-0) run offline.

Run them with::

    MLCOURSE_OFFLINE=1 python -m pytest tests/test_stack.py -x -q

Notes on the environment (see the README):

* ``mace-torch`` is installed with ``--no-deps`` because it pins ``e3nn==0.4.4`` while
  ``nequip`` 0.19 needs ``e3nn>=0.6,<0.7``; these tests are what shows that MACE's code
  paths (including rotation equivariance) still hold under e3nn 0.6.
* ``nequip.utils.global_state.set_global_state()`` must be called before building any
  NequIP model; it sets torch's *global* default dtype to float64 and reseeds every RNG.
  The fixtures below restore the default dtype afterwards.
* ``OMP_WAIT_POLICY=PASSIVE`` is set (if unset) before torch is imported: with OpenMP's
  default busy-waiting, two torch threads on a 2-core machine that is busy with anything
  else run these tiny models about ten times slower.
* The foundation-potential tests block every IPv4/IPv6 ``connect`` to prove that the
  weights are read from the installed wheels.

No fixture comes from ``tests/conftest.py``; the MACE and NequIP tests carry its ``data`` marker
(they read mlearn Si) and, with SevenNet-0, the ``slow`` marker (pyproject.toml).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import socket
import warnings
from pathlib import Path

# Must run before torch (and with it the OpenMP runtime) is first imported in this process:
# with OpenMP's default spin-waiting, 2 torch threads on a 2-core machine that is also busy
# with anything else (a notebook kernel, pytest-xdist) run these tests ~10x slower.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

N_FRAMES = 5  # the five smallest Si cells of the mlearn training set (12-20 atoms)
R_MAX = 4.0  # Angstrom
SEED = 0

# --------------------------------------------------------------------------------------
# helpers and fixtures
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def si_frames():
    """The N_FRAMES smallest mlearn Si training cells as (ase.Atoms, energy eV, forces eV/A)."""
    from mlcourse import data

    try:
        frames = data.load_mlearn("Si", "training")
    except data.DatasetNotFoundError as exc:
        pytest.skip(str(exc))
    frames = sorted(frames, key=len)[:N_FRAMES]
    return [(a, a.get_potential_energy(), a.get_forces()) for a in frames]


@pytest.fixture
def torch_env():
    """Two threads, fixed seeds, and the global default dtype restored after the test."""
    import torch

    old_dtype = torch.get_default_dtype()
    old_threads = torch.get_num_threads()
    torch.set_num_threads(2)
    torch.manual_seed(SEED)
    np.random.seed(SEED)
    yield torch
    torch.set_default_dtype(old_dtype)
    torch.set_num_threads(old_threads)


@pytest.fixture
def no_network(monkeypatch):
    """Make any attempt to open an internet (IPv4/IPv6) connection fail loudly."""

    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def _guard(real):
        def guarded(self, address, *args, **kwargs):
            if self.family in (socket.AF_INET, socket.AF_INET6):
                raise OSError(f"network access attempted during an offline test: {address!r}")
            return real(self, address, *args, **kwargs)

        return guarded

    monkeypatch.setattr(socket.socket, "connect", _guard(real_connect))
    monkeypatch.setattr(socket.socket, "connect_ex", _guard(real_connect_ex))


def _random_rotation(seed: int = 1) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    return Rotation.random(random_state=seed).as_matrix()


def _rotated(atoms, rot: np.ndarray):
    """A copy of ``atoms`` with positions and cell rotated by ``rot`` (same neighbours)."""
    out = atoms.copy()
    out.set_cell(atoms.cell.array @ rot.T, scale_atoms=False)
    out.set_positions(atoms.positions @ rot.T)
    return out


# --------------------------------------------------------------------------------------
# 1. every package imports in one interpreter, at the pinned versions
# --------------------------------------------------------------------------------------

STACK_MODULES = [
    "torch",
    "e3nn",
    "sklearn",
    "pymatgen.core",
    "matminer.featurizers.composition",
    "ase",
    "icet",
    "mchammer",
    "motep",
    "motep.calculator",
    "nequip",
    "nequip.model",
    "nequip.data",
    "nequip.train",
    "mace",
    "mace.modules",
    "mace.tools",
    "mace.data",
    "torch_geometric",
    "chgnet.model",
    "sevenn",
    "sevenn.calculator",
    "papermill",
    "nbval",
    "pooch",
    "jupyterlab",
]

def test_whole_stack_imports_in_one_process():
    failures = {}
    for name in STACK_MODULES:
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - report every broken import at once
            failures[name] = f"{type(exc).__name__}: {exc}"

    # matbench is installed with --no-deps; it must at least ship its validation splits.
    try:
        import matbench.bench  # noqa: F401
        from matbench.constants import MBV01_VALIDATION_DATA_PATH

        validation = Path(MBV01_VALIDATION_DATA_PATH)
    except Exception as exc:  # noqa: BLE001
        warnings.warn(f"`import matbench` failed ({type(exc).__name__}: {exc}); "
                      "checking only that its data files are installed")
        spec = importlib.util.find_spec("matbench")
        if spec is None or not spec.submodule_search_locations:
            failures["matbench"] = "not installed"
            validation = None
        else:
            validation = Path(list(spec.submodule_search_locations)[0]) / "matbench_v0.1_validation.json"
    if validation is not None and not validation.is_file():
        failures["matbench"] = f"missing {validation}"

    assert not failures, "imports failed:\n" + "\n".join(f"  {k}: {v}" for k, v in failures.items())

    import e3nn
    import torch

    assert torch.__version__.startswith("2.13.0"), torch.__version__
    assert e3nn.__version__ == "0.6.0", e3nn.__version__



# --------------------------------------------------------------------------------------
# 2. MACE: tiny model, mace data pipeline, a few Adam steps on energies + forces
# --------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.data
def test_mace_trains_tiny_model(si_frames, torch_env, no_network):
    torch = torch_env
    from e3nn import o3
    from mace import data as mace_data
    from mace import modules, tools
    from mace.tools import torch_geometric

    torch.set_default_dtype(torch.float64)  # MACE's default training precision

    def to_configs(atoms_list):
        keyspec = mace_data.KeySpecification.from_defaults()  # REF_energy / REF_forces
        return mace_data.config_from_atoms_list(atoms_list, key_specification=keyspec)

    atoms_list = []
    for atoms, energy, forces in si_frames:
        atoms = atoms.copy()
        atoms.info["REF_energy"] = energy
        atoms.arrays["REF_forces"] = forces
        atoms_list.append(atoms)
    configs = to_configs(atoms_list)
    z_table = tools.AtomicNumberTable([14])
    dataset = [mace_data.AtomicData.from_config(c, z_table=z_table, cutoff=R_MAX) for c in configs]
    loader = torch_geometric.dataloader.DataLoader(
        dataset=dataset, batch_size=len(dataset), shuffle=False, drop_last=False
    )
    batch = next(iter(loader))
    n_atoms = sum(len(a) for a in atoms_list)
    assert batch.num_graphs == N_FRAMES and batch.positions.shape == (n_atoms, 3)

    e0s = mace_data.compute_average_E0s(configs, z_table)  # least-squares E0 per element
    avg_num_neighbors = modules.compute_avg_num_neighbors(loader)
    assert 4 < avg_num_neighbors < 30  # diamond-like Si within 4 A: ~12-16

    interaction = modules.interaction_classes["RealAgnosticResidualInteractionBlock"]
    model = modules.MACE(
        r_max=R_MAX,
        num_bessel=8,
        num_polynomial_cutoff=5,
        max_ell=1,
        interaction_cls=interaction,
        interaction_cls_first=interaction,
        num_interactions=2,
        num_elements=len(z_table),
        hidden_irreps=o3.Irreps("8x0e+8x1o"),
        MLP_irreps=o3.Irreps("8x0e"),
        atomic_energies=np.array([e0s[z] for z in z_table.zs]),
        avg_num_neighbors=avg_num_neighbors,
        atomic_numbers=z_table.zs,
        correlation=2,
        gate=torch.nn.functional.silu,
    )
    loss_fn = modules.WeightedEnergyForcesLoss(energy_weight=1.0, forces_weight=10.0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)

    def evaluate():
        out = model(batch.to_dict(), training=False, compute_force=True)
        return out, float(loss_fn(ref=batch, pred=out).detach())

    out0, loss0 = evaluate()
    assert out0["energy"].shape == (N_FRAMES,) and out0["forces"].shape == (n_atoms, 3)
    assert np.isfinite(loss0) and loss0 > 0

    for _ in range(30):
        optimizer.zero_grad()
        out = model(batch.to_dict(), training=True, compute_force=True)
        loss = loss_fn(ref=batch, pred=out)
        loss.backward()
        optimizer.step()

    _, loss_final = evaluate()
    assert np.isfinite(loss_final)
    assert loss_final < 0.5 * loss0, f"MACE loss did not drop enough: {loss0:.4g} -> {loss_final:.4g}"

    # The trained model must be rotation-equivariant: E invariant, F rotating with the cell.
    # This is the check that MACE's symmetric contraction still agrees with e3nn 0.6.
    rot = _random_rotation()
    pair = to_configs([atoms_list[0], _rotated(atoms_list[0], rot)])
    pair_batch = next(iter(torch_geometric.dataloader.DataLoader(
        dataset=[mace_data.AtomicData.from_config(c, z_table=z_table, cutoff=R_MAX) for c in pair],
        batch_size=2, shuffle=False,
    )))
    out = model(pair_batch.to_dict(), training=False, compute_force=True)
    energy = out["energy"].detach().numpy()
    forces = out["forces"].detach().numpy()
    n0 = len(atoms_list[0])
    np.testing.assert_allclose(energy[1], energy[0], rtol=0, atol=1e-8)
    np.testing.assert_allclose(forces[n0:], forces[:n0] @ rot.T, rtol=0, atol=1e-8)
    assert np.abs(forces[:n0]).max() > 1e-4  # not trivially zero


# --------------------------------------------------------------------------------------
# 3. NequIP 0.19 (modern API): model builder + AtomicDataDict, plain PyTorch training loop
# --------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.data
def test_nequip_trains_tiny_model(si_frames, torch_env, no_network):
    torch = torch_env
    from ase.calculators.singlepoint import SinglePointCalculator
    from nequip.data import AtomicDataDict, from_ase
    from nequip.data.transforms import ChemicalSpeciesToAtomTypeMapper, NeighborListTransform
    from nequip.model import NequIPGNNModel
    from nequip.train import EnergyForceLoss
    from nequip.utils.global_state import set_global_state

    # Mandatory before building models; sets the global default dtype to float64 and seeds, but only
    # on its first call in a process: a test that ran NequIP earlier (test_potentials) and restored
    # float32 leaves it a no-op, so set float64 here too (torch_env restores the old dtype afterwards).
    set_global_state(allow_tf32=False)
    torch.set_default_dtype(torch.float64)
    torch.manual_seed(SEED)

    type_names = ["Si"]
    type_mapper = ChemicalSpeciesToAtomTypeMapper(model_type_names=type_names)
    neighbor_list = NeighborListTransform(r_max=R_MAX)

    def to_data(atoms):
        return neighbor_list(type_mapper(from_ase(atoms)))

    data_list = []
    for atoms, energy, forces in si_frames:
        atoms = atoms.copy()
        atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=forces)
        data_list.append(to_data(atoms))
    batch = AtomicDataDict.batched_from_list(data_list)
    n_atoms = AtomicDataDict.num_nodes(batch)
    assert AtomicDataDict.num_frames(batch) == N_FRAMES
    assert batch[AtomicDataDict.TOTAL_ENERGY_KEY].shape == (N_FRAMES, 1)

    # the data statistics nequip-train would compute with `training_data_stats`
    per_atom_e = np.mean([e / len(a) for a, e, _ in si_frames])
    forces_rms = float(np.sqrt(np.mean(np.concatenate([f.ravel() ** 2 for _, _, f in si_frames]))))
    avg_num_neighbors = AtomicDataDict.num_edges(batch) / n_atoms

    model = NequIPGNNModel(
        seed=SEED,
        model_dtype="float64",
        type_names=type_names,
        r_max=R_MAX,
        num_layers=2,
        l_max=1,
        parity=False,
        num_features=8,
        radial_mlp_depth=1,
        radial_mlp_width=16,
        avg_num_neighbors=avg_num_neighbors,
        per_type_energy_shifts={"Si": float(per_atom_e)},
        per_type_energy_scales={"Si": forces_rms},
    )
    loss_fn = EnergyForceLoss(
        coeffs={AtomicDataDict.TOTAL_ENERGY_KEY: 1.0, AtomicDataDict.FORCE_KEY: 1.0},
        per_atom_energy=True,
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-2)

    def step_loss():
        # like NequIPLightningModule.training_step: target = shallow copy of the batch
        out = model(batch.copy())
        loss = loss_fn(out, batch.copy())["weighted_sum"]
        loss_fn.reset()  # the torchmetrics inside accumulate; keep each step independent
        return out, loss

    out0, loss0 = step_loss()
    assert out0[AtomicDataDict.TOTAL_ENERGY_KEY].shape == (N_FRAMES, 1)
    assert out0[AtomicDataDict.FORCE_KEY].shape == (n_atoms, 3)
    loss0 = float(loss0.detach())
    assert np.isfinite(loss0) and loss0 > 0

    for _ in range(100):
        optimizer.zero_grad()
        _, loss = step_loss()
        loss.backward()
        optimizer.step()

    _, loss_final = step_loss()
    loss_final = float(loss_final.detach())
    assert np.isfinite(loss_final)
    assert loss_final < 0.75 * loss0, f"NequIP loss did not drop: {loss0:.4g} -> {loss_final:.4g}"

    # rotation equivariance of the trained model
    rot = _random_rotation()
    atoms0 = si_frames[0][0].copy()  # the copy drops the reference calculator: inputs only
    pair = AtomicDataDict.batched_from_list([to_data(atoms0), to_data(_rotated(atoms0, rot))])
    out = model(pair)
    energy = out[AtomicDataDict.TOTAL_ENERGY_KEY].detach().numpy().ravel()
    forces = out[AtomicDataDict.FORCE_KEY].detach().numpy()
    n0 = len(atoms0)
    np.testing.assert_allclose(energy[1], energy[0], rtol=0, atol=1e-8)
    np.testing.assert_allclose(forces[n0:], forces[:n0] @ rot.T, rtol=0, atol=1e-8)
    assert np.abs(forces[:n0]).max() > 1e-4


# --------------------------------------------------------------------------------------
# 4. foundation potentials whose weights ship inside their wheels, run offline
# --------------------------------------------------------------------------------------


def _foundation_calculator(name: str):
    if name == "chgnet-0.3.0":
        import chgnet
        from chgnet.model import CHGNet
        from chgnet.model.dynamics import CHGNetCalculator

        weights = Path(chgnet.__file__).parent / "pretrained" / "0.3.0" / "chgnet_0.3.0_e29f68s314m37.pth.tar"
        if not weights.is_file():
            pytest.skip(f"CHGNet 0.3.0 weights not in the wheel ({weights}); they ship with the "
                        "`chgnet` wheel on PyPI (github.com/CederGroupHub/chgnet, chgnet/pretrained/)")
        model = CHGNet.load(model_name="0.3.0", use_device="cpu", verbose=False)
        return CHGNetCalculator(model=model, use_device="cpu")
    if name == "sevennet-0":
        from sevenn import _const
        from sevenn.calculator import SevenNetCalculator

        weights = Path(_const.SEVENNET_0_11Jul2024)
        if not weights.is_file():
            url = _const.CHECKPOINT_DOWNLOAD_LINKS.get(_const.SEVENNET_0_11Jul2024, "the SevenNet GitHub repo")
            pytest.skip(f"SevenNet-0 weights not in the wheel ({weights}); sevenn would download them "
                        f"from {url} (into ~/.cache/sevennet)")
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="No tensor product accelerator")
            return SevenNetCalculator("7net-0", device="cpu")
    raise ValueError(name)


@pytest.mark.parametrize("name", ["chgnet-0.3.0", pytest.param("sevennet-0", marks=pytest.mark.slow)])
def test_foundation_potential_offline(name, torch_env, no_network):
    from ase.build import bulk

    calc = _foundation_calculator(name)

    def energy_per_atom(a):
        atoms = bulk("Si", "diamond", a=a)
        atoms.calc = calc
        return atoms.get_potential_energy() / len(atoms), atoms.get_forces()

    # Diamond Si: MPtrj-compatible PBE energy about -5.4 eV/atom, minimum near a = 5.43 A,
    # and zero forces on the perfect lattice by symmetry.
    e_eq, f_eq = energy_per_atom(5.43)
    assert -6.0 < e_eq < -4.5, e_eq
    assert np.abs(f_eq).max() < 1e-3
    assert e_eq < energy_per_atom(5.10)[0] and e_eq < energy_per_atom(5.80)[0]

    # Rattled cubic cell: non-zero forces that sum to zero and are minus the energy gradient.
    atoms = bulk("Si", "diamond", a=5.43, cubic=True)
    atoms.rattle(stdev=0.05, seed=SEED)
    atoms.calc = calc
    forces = atoms.get_forces()
    assert forces.shape == (8, 3) and np.isfinite(forces).all()
    assert np.abs(forces).max() > 0.05
    np.testing.assert_allclose(forces.sum(axis=0), 0.0, atol=1e-3)

    h, (i, k) = 5e-3, np.unravel_index(np.abs(forces).argmax(), forces.shape)
    energies = []
    for sign in (+1, -1):
        displaced = atoms.copy()
        displaced.positions[i, k] += sign * h
        displaced.calc = calc
        energies.append(displaced.get_potential_energy())
    f_numeric = -(energies[0] - energies[1]) / (2 * h)
    assert abs(f_numeric - forces[i, k]) < 0.01 + 0.02 * abs(forces[i, k]), (f_numeric, forces[i, k])

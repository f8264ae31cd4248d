"""Foundation (universal) interatomic potentials: load offline, score, shift, fine-tune, committees.

Energies are per atom (eV/atom, errors in meV/atom), forces in eV/Å (errors per Cartesian
component, as in Zuo et al., J. Phys. Chem. A 124, 731 (2020)), stresses in ASE's Voigt order and
sign (+ = tensile; eV/Å³ inside, errors in GPa). Reference data are ASE Atoms whose calculator
holds the DFT labels, e.g. from :func:`mlcourse.data.load_mlearn`.

CHGNet 0.3.0 and SevenNet-0 ship their weights inside their wheels; MACE-MP-0 is used only when
its checkpoint is already in the user cache (``~/.cache/mace``): :func:`mace_mp_calculator` never
downloads.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import random
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from ase.calculators.singlepoint import SinglePointCalculator
from ase.units import GPa



# --------------------------------------------------------------------------- loading models

NO_WEIGHTS_ONLY = "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"  # torch.load's switch to full unpickling (runs pickled code)


@contextlib.contextmanager
def full_unpickling():
    """Inside, ``torch.load`` unpickles whole objects (``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``), as the
    trusted checkpoints from the sevenn wheel and mace-torch need; on exit the variable is as it was
    before, so a plain ``torch.load`` refuses pickled code again (``weights_only=True``, torch's default).
    """
    before = os.environ.get(NO_WEIGHTS_ONLY)
    os.environ[NO_WEIGHTS_ONLY] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(NO_WEIGHTS_ONLY, None)
        else:
            os.environ[NO_WEIGHTS_ONLY] = before


def import_mace(module: str = "mace"):
    """``importlib.import_module(module)`` of mace-torch without its process-wide side effect.

    mace-torch sets ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` for the whole process when it (or
    ``mace.calculators``) is first imported; here that happens inside :func:`full_unpickling`, which
    puts the variable back. Also silences mace's note about cuequivariance on stdout.
    """
    with full_unpickling(), contextlib.redirect_stdout(io.StringIO()):
        return importlib.import_module(module)


def pretrained_chgnet():
    """CHGNet with its pretrained 0.3.0 weights (from the wheel), on the CPU."""
    from chgnet.model import CHGNet

    with contextlib.redirect_stdout(io.StringIO()):
        return CHGNet.load(model_name="0.3.0", use_device="cpu", verbose=False)


def chgnet_calculator(model=None):
    """ASE calculator of CHGNet (default: :func:`pretrained_chgnet`) on the CPU."""
    from chgnet.model.dynamics import CHGNetCalculator

    if model is None:
        model = pretrained_chgnet()
    with contextlib.redirect_stdout(io.StringIO()):
        return CHGNetCalculator(model=model, use_device="cpu")


def sevennet_calculator():
    """ASE calculator of SevenNet-0 (11 Jul 2024 weights, from the ``sevenn`` wheel) on the CPU."""
    with full_unpickling():  # sevenn's checkpoints need full unpickling
        from sevenn.calculator import SevenNetCalculator

        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="No tensor product accelerator")
            return SevenNetCalculator("7net-0", device="cpu")


def mace_mp_checkpoint(model: str = "medium") -> Path:
    """Where ``mace.calculators.mace_mp`` caches the MACE-MP-0 checkpoint ``model`` (may not exist)."""
    urls = import_mace("mace.calculators.foundations_models").mace_mp_urls
    if model not in urls:
        raise ValueError(f"unknown MACE-MP model {model!r}; choose one of {sorted(urls)}")
    return Path(import_mace("mace.tools.utils").get_cache_dir()) / os.path.basename(urls[model])


def mace_mp_calculator(model: str = "medium"):
    """MACE-MP-0 calculator from the user cache, or None (with a one-line message) if it is not there.

    Never downloads: the checkpoint is loaded from its cached path only.
    """
    path = mace_mp_checkpoint(model)
    if not path.is_file():
        print(f"MACE-MP-0 ({model}) skipped: no checkpoint at {path} (this course never downloads it; "
              f"run `mace_mp(model='{model}')` once online to cache it)")
        return None
    mace_mp = import_mace("mace.calculators").mace_mp
    with full_unpickling(), contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # full unpickling: mace's checkpoints are pickled modules
        return mace_mp(model=str(path), device="cpu", default_dtype="float64")


# --------------------------------------------------------------------------- predictions and errors


def labels(frames: list) -> dict:
    """The reference labels of ``frames``: ``energy`` (eV/atom), ``forces`` (all atoms stacked, eV/Å),
    ``stress`` (n×6, eV/Å³), ``symbols`` (list of per-frame symbol lists)."""
    if not frames:
        raise ValueError("no frames given")
    for i, a in enumerate(frames):
        if a.calc is None:
            raise ValueError(f"frame {i} ({a.get_chemical_formula()}) has no calculator with reference labels")
    return _collect(frames, frames)


def predict(calc, frames: list, progress: bool = False, desc: str | None = None) -> dict:
    """Energies (eV/atom), forces (eV/Å) and stresses (eV/Å³) of ``calc`` on copies of ``frames``,
    in the layout of :func:`labels`. ``progress`` shows a tqdm bar."""
    if not frames:
        raise ValueError("no frames given")
    it = frames
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(frames, desc=desc, leave=False)
    evaluated = []
    for a in it:
        b = a.copy()  # drops the reference calculator
        b.calc = calc
        # one calculation per frame: keep its results, as ``calc`` remembers only the last structure's
        b.calc = SinglePointCalculator(b, energy=b.get_potential_energy(), forces=b.get_forces(), stress=b.get_stress())
        evaluated.append(b)
    return _collect(evaluated, frames)


def _collect(evaluated: list, frames: list) -> dict:
    return {
        "energy": np.array([a.get_potential_energy() / len(a) for a in evaluated]),
        "forces": np.concatenate([a.get_forces() for a in evaluated]),
        "stress": np.array([a.get_stress() for a in evaluated]),
        "symbols": [a.get_chemical_symbols() for a in frames],
    }


def save_predictions(path: str | Path, **sets: dict) -> Path:
    """Write prediction sets (the layout of :func:`predict`; any of its keys but ``symbols``) as JSON,
    e.g. ``save_predictions(p, test=pred_test, training={"energy": e})``: fast mode reads a foundation
    model's predictions that a script computed once, instead of loading the model."""
    out = {name: {k: np.asarray(v).tolist() for k, v in pred.items() if k != "symbols"} for name, pred in sets.items()}
    Path(path).write_text(json.dumps(out))
    return Path(path)


def load_predictions(path: str | Path, name: str, frames: list, indices=None) -> dict:
    """Set ``name`` of a :func:`save_predictions` file, for ``frames`` (the frames it was computed on,
    or all of them with ``indices`` picking the rows used), in the layout of :func:`predict`."""
    sets = json.loads(Path(path).read_text())
    if name not in sets:
        raise KeyError(f"{path}: no prediction set {name!r}; it has {sorted(sets)}")
    pred = {k: np.asarray(v, dtype=float) for k, v in sets[name].items()}
    if len(pred["energy"]) != len(frames):
        raise ValueError(f"{path}: set {name!r} has {len(pred['energy'])} frames, not {len(frames)}")
    if "forces" in pred and len(pred["forces"]) != sum(len(a) for a in frames):
        raise ValueError(f"{path}: set {name!r} has forces on {len(pred['forces'])} atoms, "
                         f"not the {sum(len(a) for a in frames)} of the frames")
    if indices is not None:
        if set(pred) != {"energy"}:
            raise ValueError("indices pick rows of energy-only sets")
        pred["energy"], frames = pred["energy"][np.asarray(indices)], [frames[i] for i in indices]
    pred["symbols"] = [a.get_chemical_symbols() for a in frames]
    return pred


def fit_energy_offset(pred: dict, ref: dict) -> dict[str, float]:
    """Per-element energy offsets (eV/atom) that, added to ``pred``, minimise the per-atom energy
    RMSE against ``ref`` (least squares on the composition fractions). Fit on TRAINING data only."""
    elements = sorted({s for syms in ref["symbols"] for s in syms})
    x = np.array([[syms.count(e) / len(syms) for e in elements] for syms in ref["symbols"]])
    coef, *_ = np.linalg.lstsq(x, ref["energy"] - pred["energy"], rcond=None)
    return {e: float(c) for e, c in zip(elements, coef)}


def apply_offset(pred: dict, offset: dict[str, float]) -> dict:
    """A copy of ``pred`` with per-atom energies shifted by the per-element ``offset`` (eV/atom)."""
    missing = {s for syms in pred["symbols"] for s in syms} - set(offset)
    if missing:
        raise ValueError(f"no energy offset for element(s) {sorted(missing)}")
    shift = np.array([np.mean([offset[s] for s in syms]) for syms in pred["symbols"]])
    return {**pred, "energy": pred["energy"] + shift}


# --------------------------------------------------------------------------- symmetry check


def random_rotation(seed: int = 0) -> np.ndarray:
    """A random proper rotation matrix (3×3, det +1)."""
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def rotation_check(calc, atoms, rotation: np.ndarray) -> tuple[float, float]:
    """Rotate ``atoms`` (cell and positions) by ``rotation``; return |ΔE| (eV) and the largest
    deviation (eV/Å) of the rotated structure's forces from the rotated original forces."""
    a = atoms.copy()
    a.calc = calc
    e0, f0 = a.get_potential_energy(), a.get_forces().copy()
    b = atoms.copy()
    b.set_cell(atoms.cell[:] @ rotation.T, scale_atoms=False)
    b.positions = atoms.positions @ rotation.T
    b.calc = calc
    return abs(b.get_potential_energy() - e0), float(np.abs(b.get_forces() - f0 @ rotation.T).max())


# --------------------------------------------------------------------------- committees


def committee_disagreement(calcs: list, frames: list) -> np.ndarray:
    """Per frame: the largest (over atoms) norm of the committee's force standard deviation (eV/Å).

    Zero when all members agree; needs at least two calculators. Forces only: a perfect crystal,
    strained or not, has zero forces for every member by symmetry and scores exactly 0 however much
    the members disagree on its energy or stress (see :func:`committee_spread`).
    """
    return _force_spread([predict(c, frames) for c in _committee(calcs)], frames)


def committee_spread(calcs: list, frames: list) -> pd.DataFrame:
    """Per frame, how much a committee disagrees: ``force (eV/Å)`` as :func:`committee_disagreement`,
    ``energy (meV/atom)`` the standard deviation of the per-atom energy, ``stress (GPa)`` the largest
    standard deviation of a stress component. Energy and stress also see perfect (strained) crystals."""
    preds = [predict(c, frames) for c in _committee(calcs)]
    return pd.DataFrame({
        "force (eV/Å)": _force_spread(preds, frames),
        "energy (meV/atom)": 1e3 * np.std([p["energy"] for p in preds], axis=0),
        "stress (GPa)": np.std([p["stress"] for p in preds], axis=0).max(axis=1) / GPa,
    })


def _committee(calcs: list) -> list:
    if len(calcs) < 2:
        raise ValueError(f"a committee needs at least 2 members, got {len(calcs)}")
    return calcs


def _force_spread(preds: list[dict], frames: list) -> np.ndarray:
    forces = np.stack([p["forces"] for p in preds])  # (members, atoms, 3)
    spread = np.linalg.norm(forces.std(axis=0), axis=1)
    ends = np.cumsum([len(a) for a in frames])
    return np.array([s.max() for s in np.split(spread, ends[:-1])])


def committee_mean(preds: list[dict]) -> dict:
    """The average of several :func:`predict` results (the committee's prediction)."""
    return {k: (preds[0][k] if k == "symbols" else np.mean([p[k] for p in preds], axis=0)) for k in preds[0]}


def bootstrap_indices(n: int, size: int, seed: int) -> np.ndarray:
    """``size`` distinct indices out of ``range(n)``, drawn with a seeded generator."""
    if not 0 < size <= n:
        raise ValueError(f"need 0 < size <= n, got size={size}, n={n}")
    return np.sort(np.random.default_rng(seed).choice(n, size, replace=False))


def maxvol_grades(mtp_calc, train_frames: list, frames: list, seed: int = 0) -> np.ndarray:
    """MTP extrapolation grade of each of ``frames`` (dimensionless; > 1 = extrapolating).

    motep's ``Grader`` (the maxvol active set of Podryabinkin and Shapeev, Comput. Mater. Sci. 140,
    171 (2017); mlip-2's ``mlp calc-grade``) selects the most linearly independent rows of the energy
    Jacobian of ``train_frames`` and grades each frame by its largest expansion coefficient in them.
    ``mtp_calc`` is a calculator from :func:`mlcourse.potentials.train_mtp` or ``load_mtp``.
    """
    from motep.grade.grader import Grader

    grader = Grader(mtp_calc.engine.mtp_data, rng=np.random.default_rng(seed), mode="configuration")
    grader.update(train_frames)
    return np.array([a.calc.results["MV_grade"] for a in grader.grade(frames)])


# --------------------------------------------------------------------------- fine-tuning CHGNet


def chgnet_dataset(frames: list, shuffle: bool = False):
    """chgnet ``StructureData`` from ASE Atoms with DFT labels.

    CHGNet wants energies per atom (eV/atom), forces (eV/Å) and the stress as VASP prints it
    (kBar, + = compressive): its loader multiplies by -0.1 to get GPa with + = tensile.
    """
    from chgnet.data.dataset import StructureData
    from pymatgen.io.ase import AseAtomsAdaptor

    ref = labels(frames)
    with contextlib.redirect_stdout(io.StringIO()):
        return StructureData(
            structures=[AseAtomsAdaptor.get_structure(a) for a in frames],
            energies=list(ref["energy"]),
            forces=[a.get_forces() for a in frames],
            stresses=[-10 * a.get_stress(voigt=False) / GPa for a in frames],
            structure_ids=list(range(len(frames))),
            shuffle=shuffle,
        )


def save_chgnet(model, path: str | Path, history: dict | None = None, **settings) -> Path:
    """Save a (fine-tuned) CHGNet 0.3.0's weights, its training history and the settings that made it,
    loadable with ``torch.load(weights_only=True)`` by :func:`load_chgnet`."""
    import torch

    torch.save({"state_dict": model.state_dict(), "history": history or {}, "settings": settings}, path)
    return Path(path)


def load_chgnet(path: str | Path):
    """CHGNet 0.3.0 with the weights of a :func:`save_chgnet` file; returns (model, history, settings)."""
    import torch

    saved = torch.load(path, map_location="cpu", weights_only=True)
    model = pretrained_chgnet()
    model.load_state_dict(saved["state_dict"])
    model.eval()
    return model, saved["history"], saved["settings"]


def finetune_chgnet(train_frames: list, val_frames: list, epochs: int = 3, batch_size: int = 2,
                    learning_rate: float = 3e-4, seed: int = 0, train_composition_model: bool = True):
    """Fine-tune pretrained CHGNet 0.3.0 with chgnet's own ``Trainer`` on energy, forces and stress.

    ``train_composition_model`` refits CHGNet's per-element reference energies (AtomRef), the
    learnable version of a per-atom energy offset. Returns (model, history) where history has
    per-epoch train/val MAEs (e: eV/atom, f: eV/Å, s: GPa). Never give it test frames.
    """
    from chgnet.data.dataset import get_loader
    from chgnet.trainer import Trainer

    from .lesson import torch_seeded

    random.seed(seed)
    with torch_seeded(seed):  # torch's global random state is put back afterwards
        model = pretrained_chgnet()
        with contextlib.redirect_stdout(io.StringIO()):
            train_loader = get_loader(chgnet_dataset(train_frames), batch_size=batch_size, pin_memory=False)
            val_loader = get_loader(chgnet_dataset(val_frames), batch_size=batch_size, pin_memory=False)
            trainer = Trainer(model, targets="efs", optimizer="Adam", scheduler="CosLR", criterion="MSE",
                              epochs=epochs, learning_rate=learning_rate, use_device="cpu", print_freq=10**6,
                              torch_seed=seed, data_seed=seed)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                trainer.train(train_loader, val_loader, save_dir="", train_composition_model=train_composition_model)
    model = trainer.model
    model.eval()
    return model, {k: dict(v) for k, v in trainer.training_history.items()}

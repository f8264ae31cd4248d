"""Offline-first access to the course datasets.

Every file the course reads is listed in ``data/registry.tsv`` (name, sha256, url, licence,
citation). :func:`fetch` finds a file by looking, in order, in

1. ``$MLCOURSE_DATA_DIR`` (a relative path is taken from the folder where it was set: ``$PWD``,
   which a Jupyter kernel inherits from the shell that started Jupyter, else the working directory),
2. the repository's ``data/`` folder,
3. ``../shared/data`` beside the repository, when it exists,
4. the user cache (``pooch.os_cache("mlcourse")``),

checks its sha256, and downloads it into the user cache only when it is nowhere local and
the machine is online (set ``MLCOURSE_OFFLINE=1`` to never try). ``data/lessons.tsv`` says which
files each lesson reads (:func:`lesson_files`), so a lesson's data can be fetched or verified before
class. The loaders below return
plain objects: pandas DataFrames with pymatgen objects, or lists of ASE ``Atoms``.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import warnings
from dataclasses import dataclass
from functools import lru_cache
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pandas as pd

REPO_ROOT = Path(__file__).resolve().parent.parent
REPO_DATA = REPO_ROOT / "data"
NOTEBOOK_DIR = REPO_ROOT / "notebooks"
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
REGISTRY_FILE = REPO_DATA / "registry.tsv"
LESSONS_FILE = REPO_DATA / "lessons.tsv"
DOWNLOAD_TIMEOUT_S = 4.0


class DatasetNotFoundError(FileNotFoundError):
    """A registered dataset is in none of the searched folders and could not be downloaded."""


class DatasetCorruptError(ValueError):
    """A dataset file is present but its sha256 differs from the registry."""


@dataclass(frozen=True)
class Entry:
    name: str
    sha256: str
    url: str
    licence: str
    citation: str


@lru_cache(maxsize=1)
def registry() -> dict[str, Entry]:
    """All registered datasets, keyed by name (the file's path below a data folder)."""
    with open(REGISTRY_FILE, newline="") as fh:
        rows = csv.DictReader(fh, delimiter="\t")
        return {r["name"]: Entry(**r) for r in rows}


def cache_dir() -> Path:
    import pooch

    return Path(pooch.os_cache("mlcourse"))


def env_path(name: str) -> Path | None:
    """The folder in environment variable ``name`` as an absolute path, or None when it is not set.

    A relative value is resolved against ``$PWD`` (the shell's folder where it was set: Jupyter
    kernels inherit it, while their working directory is the notebook's folder), else the working
    directory.
    """
    raw = os.environ.get(name)
    if not raw:
        return None
    path = Path(raw).expanduser()
    return path if path.is_absolute() else Path(os.environ.get("PWD") or os.getcwd()) / path


def env_data_dir() -> Path | None:
    """``$MLCOURSE_DATA_DIR`` as an absolute path (see :func:`env_path`), or None when it is not set."""
    return env_path("MLCOURSE_DATA_DIR")


def search_dirs() -> list[tuple[Path, str]]:
    """The folders searched for data files, in order, each with a label saying why."""
    dirs, env_dir = [], env_data_dir()
    if env_dir is not None:
        dirs.append((env_dir, "$MLCOURSE_DATA_DIR"))
    dirs.append((REPO_DATA, "repository data/"))
    if SHARED_DATA.is_dir():
        dirs.append((SHARED_DATA, "shared data beside the repository"))
    dirs.append((cache_dir(), "user cache"))
    return dirs


def sha256sum(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


_verified: dict[tuple[str, int, int], str] = {}


def _checked(path: Path, entry: Entry) -> Path:
    """Return ``path`` if its sha256 matches the registry, else raise DatasetCorruptError."""
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _verified:
        _verified[key] = sha256sum(path)
    if _verified[key] != entry.sha256:
        raise DatasetCorruptError(
            f"Dataset '{entry.name}' at {path} is corrupt: sha256 {_verified[key]} "
            f"does not match the registry's {entry.sha256}. Delete the file and run "
            f"`mlcourse data fetch {entry.name}` (or restore it from ../shared/data)."
        )
    return path


def find_local(name: str) -> Path | None:
    """The first local copy of dataset ``name`` (sha256 checked), or None."""
    entry = _entry(name)
    for folder, _ in search_dirs():
        if (folder / name).is_file():
            return _checked(folder / name, entry)
    return None


def _entry(name: str) -> Entry:
    try:
        return registry()[name]
    except KeyError:
        raise KeyError(
            f"No dataset named '{name}' in {REGISTRY_FILE}. `mlcourse data list` shows the names."
        ) from None


def fetch(name: str, download: bool | None = None, progress: bool = False) -> Path:
    """Path to a verified local copy of dataset ``name``, downloading it if needed and allowed.

    ``download=None`` downloads unless ``$MLCOURSE_OFFLINE`` is set; ``progress`` shows a download bar.
    """
    entry = _entry(name)
    if os.environ.get("MLCOURSE_DATA_LOG"):  # the runner's record of what a lesson reads (tests/test_notebooks.py)
        with open(os.environ["MLCOURSE_DATA_LOG"], "a") as log:
            log.write(name + "\n")
    local = find_local(name)
    if local is not None:
        return local
    if download is None:
        download = not os.environ.get("MLCOURSE_OFFLINE")
    reason = "downloads are switched off ($MLCOURSE_OFFLINE is set)"
    if download and entry.url:
        import pooch

        target = cache_dir() / name
        try:
            pooch.retrieve(
                entry.url,
                known_hash=f"sha256:{entry.sha256}",
                fname=target.name,
                path=target.parent,
                downloader=pooch.HTTPDownloader(timeout=DOWNLOAD_TIMEOUT_S, progressbar=progress),
            )
            return _checked(target, entry)
        except Exception as exc:  # network errors come in many types; all mean "not here"
            reason = f"download from {entry.url} failed: {type(exc).__name__}: {exc}"
    elif not entry.url:
        reason = "the registry has no download URL for it"
    searched = "\n".join(f"  {folder}  ({label})" for folder, label in search_dirs())
    raise DatasetNotFoundError(
        f"Dataset '{name}' was not found. Searched:\n{searched}\nand {reason}.\n"
        f"Fix: on a machine with internet run `mlcourse data fetch {name}`, or copy the file "
        f"to <folder>/{name} under one of the folders above (for example a folder named by "
        f"$MLCOURSE_DATA_DIR)."
    )


@lru_cache(maxsize=1)
def lessons() -> dict[str, list[str]]:
    """Lesson notebook stem -> glob patterns of the registered files it reads (``data/lessons.tsv``)."""
    table: dict[str, list[str]] = {}
    with open(LESSONS_FILE, newline="") as fh:
        for row in csv.DictReader((line for line in fh if not line.startswith("#")), delimiter="\t"):
            table.setdefault(row["lesson"], []).append(row["pattern"])
    return table


def lesson_name(lesson: str) -> str:
    """The notebook stem of ``lesson``, given as ``"03"``, ``"03_interatomic_potentials"`` or a path to it."""
    key = Path(lesson).stem
    found = [stem for stem in lessons() if stem == key or stem.split("_")[0] == key]
    if len(found) != 1:
        raise KeyError(f"No lesson '{lesson}' in {LESSONS_FILE}; the lessons are "
                       f"{', '.join(stem.split('_')[0] for stem in lessons())} ({', '.join(lessons())}).")
    return found[0]


def lesson_files(lesson: str) -> list[str]:
    """The registered files that ``lesson`` (see :func:`lesson_name`) reads, in fast or full mode."""
    from fnmatch import fnmatchcase

    patterns = lessons()[lesson_name(lesson)]
    return [name for name in registry() if any(fnmatchcase(name, p) for p in patterns)]


# --------------------------------------------------------------------------- validation


def parse_formula(formula: str, entry: object = None):
    """A pymatgen ``Composition`` from ``formula``; a clear ValueError naming ``entry`` if bad."""
    from pymatgen.core import Composition

    where = f"entry {entry!r}: " if entry is not None else ""
    if not isinstance(formula, str) or not formula.strip():
        raise ValueError(f"{where}empty or non-text formula {formula!r}")
    try:
        comp = Composition(formula, strict=True)
    except Exception as exc:
        raise ValueError(f"{where}malformed formula {formula!r} ({exc})") from None
    if comp.num_atoms <= 0:
        raise ValueError(f"{where}formula {formula!r} has no atoms")
    return comp


def check_targets(targets: pd.Series) -> pd.Series:
    """Return ``targets`` as floats; ValueError naming the first entries that are NaN or not numbers."""
    values = pd.to_numeric(targets, errors="coerce")
    bad = targets.index[values.isna()]
    if len(bad):
        shown = ", ".join(f"{i!r} ({targets[i]!r})" for i in bad[:5])
        raise ValueError(f"{len(bad)} target(s) are NaN or not numbers: {shown}")
    return values.astype(float)


# --------------------------------------------------------------------------- matbench

MATBENCH_COMPOSITION_DIR = "matbench_composition/CrabNet/data/matbench"
MATBENCH_FILES = {  # matbench task -> CrabNet's CSV of it (formula,target), rows in matbench order
    "matbench_dielectric": "dielectric.csv",
    "matbench_expt_gap": "expt_gap.csv",
    "matbench_expt_is_metal": "expt_is_metal.csv",
    "matbench_glass": "glass.csv",
    "matbench_jdft2d": "jdft2d.csv",
    "matbench_log_gvrh": "elasticity_log10(G_VRH).csv",
    "matbench_log_kvrh": "elasticity_log10(K_VRH).csv",
    "matbench_mp_e_form": "mp_e_form.csv",
    "matbench_mp_gap": "mp_gap.csv",
    "matbench_mp_is_metal": "mp_is_metal.csv",
    "matbench_perovskites": "castelli.csv",
    "matbench_phonons": "phonons.csv",
    "matbench_steels": "steels_yield.csv",
}


def _task(task: str) -> str:
    task = task if task.startswith("matbench_") else f"matbench_{task}"
    if task not in MATBENCH_FILES:
        raise KeyError(f"Unknown matbench task {task!r}; known: {', '.join(MATBENCH_FILES)}")
    return task


def matbench_ids(task: str, n: int) -> list[str]:
    """Matbench's row ids (``mb-expt-gap-0001`` ...): 1-based, zero-padded to the digits of n."""
    stem = _task(task).removeprefix("matbench_").replace("_", "-")
    width = len(str(n))
    return [f"mb-{stem}-{i:0{width}d}" for i in range(1, n + 1)]


def load_matbench(task: str) -> pd.DataFrame:
    """A matbench composition task as a DataFrame indexed by matbench id.

    Columns: ``formula`` (str), ``composition`` (pymatgen Composition), ``target`` (float;
    unit per task, e.g. eV for expt_gap, MPa for steels, 0/1 for classification tasks).
    Raises ValueError naming the row for a malformed formula or a NaN target.
    """
    task = _task(task)
    df = pd.read_csv(fetch(f"{MATBENCH_COMPOSITION_DIR}/{MATBENCH_FILES[task]}"))
    df.index = pd.Index(matbench_ids(task, len(df)), name="mbid")
    df["target"] = check_targets(df["target"])
    df["composition"] = [parse_formula(f, i) for i, f in zip(df.index, df["formula"])]
    return df[["formula", "composition", "target"]]


def matbench_validation_file() -> Path:
    """``matbench_v0.1_validation.json`` from the installed matbench wheel (official folds)."""
    spec = find_spec("matbench")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "The matbench package is not installed; it ships the official folds. "
            "Install the course environment (see README)."
        )
    return Path(next(iter(spec.submodule_search_locations))) / "matbench_v0.1_validation.json"


@lru_cache(maxsize=4)
def _fold_ids(task: str) -> tuple[tuple[tuple[str, ...], tuple[str, ...]], ...]:
    with open(matbench_validation_file()) as fh:
        splits = json.load(fh)["splits"][task]
    return tuple((tuple(f["train"]), tuple(f["test"])) for f in splits.values())


def matbench_folds(task: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """The 5 official matbench folds as (train, test) arrays of 0-based row positions.

    Usable directly as ``cv=`` in scikit-learn. Row positions refer to :func:`load_matbench`.
    """
    task = _task(task)

    def positions(ids):
        return np.array([int(re.search(r"(\d+)$", i).group(1)) - 1 for i in ids])

    return check_folds([(positions(tr), positions(te)) for tr, te in _fold_ids(task)], None)


def check_folds(folds: list[tuple[np.ndarray, np.ndarray]], n_rows: int | None) -> list:
    """Return ``folds`` unchanged; ValueError naming the fold if a split is empty, overlaps or is out of range."""
    for k, (train, test) in enumerate(folds):
        for label, idx in (("train", train), ("test", test)):
            if len(idx) == 0:
                raise ValueError(f"fold {k}: the {label} split is empty")
            if n_rows is not None and (np.min(idx) < 0 or np.max(idx) >= n_rows):
                raise ValueError(f"fold {k}: {label} positions fall outside 0..{n_rows - 1}")
        if np.intersect1d(train, test).size:
            raise ValueError(f"fold {k}: {np.intersect1d(train, test).size} rows are in both train and test")
    return folds


def load_matbench_structures(task: str) -> pd.DataFrame:
    """A full matbench structure dataset (matminer's json.gz) with a pymatgen ``structure`` column.

    These files are not in ../shared/data; they are downloaded once (online) into the cache.
    """
    from matminer.utils.io import load_dataframe_from_json

    return load_dataframe_from_json(str(fetch(f"matminer/{_task(task)}.json.gz")))


# --------------------------------------------------------------------------- potentials


def load_mlearn(element: str, split: str = "training") -> list:
    """mlearn DFT data (Zuo et al. 2020) as ASE Atoms with energy (eV), forces (eV/Å) and stress attached.

    The stress is in ASE's convention: Voigt (xx, yy, zz, yz, xz, xy), eV/Å³, positive = tensile.
    mlearn's ``virial_stress`` is VASP's stress in kBar, ordered (xx, yy, zz, xy, yz, zx) and
    positive = compressive, so ``stress = -0.1 GPa * virial_stress[[0, 1, 2, 4, 5, 3]]``. Evidence: on
    the Si and Ge ``Elastic`` strain series (54 neighbouring pairs each, shears included) the DFT
    energy change equals V σ:Δε of the converted stress to 1%, whereas reading ``virial_stress`` as
    GPa, as a virial in eV or in ASE's component order misses by 25% or more.
    Each Atoms' ``info`` holds ``group`` and ``description``. Raises ValueError naming the entry
    for a bad energy, forces or stress.
    """
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.units import GPa
    from pymatgen.core import Structure
    from pymatgen.io.ase import AseAtomsAdaptor

    if split not in ("training", "test"):
        raise ValueError(f"split must be 'training' or 'test', not {split!r}")
    with open(fetch(f"mlip/mlearn/{element}/{split}.json")) as fh:
        entries = json.load(fh)
    frames = []
    for i, e in enumerate(entries):
        atoms = AseAtomsAdaptor.get_atoms(Structure.from_dict(e["structure"]))
        forces = np.asarray(e["outputs"]["forces"], dtype=float)
        virial = np.asarray(e["outputs"].get("virial_stress", []), dtype=float)
        if forces.shape != (len(atoms), 3) or virial.shape != (6,) or not np.isfinite(e["outputs"]["energy"]):
            raise ValueError(f"mlearn {element}/{split} entry {i}: bad energy, forces shape or virial_stress")
        stress = -0.1 * GPa * virial[[0, 1, 2, 4, 5, 3]]  # VASP kBar (xx,yy,zz,xy,yz,zx) -> ASE eV/Å³
        atoms.calc = SinglePointCalculator(atoms, energy=e["outputs"]["energy"], forces=forces, stress=stress)
        atoms.info.update(group=e["group"], description=e.get("description", ""))
        frames.append(atoms)
    return frames


def load_perov5(split: str = "val", n: int | None = None) -> pd.DataFrame:
    """CDVAE's Perov-5 split (``val`` or ``test``) with a pymatgen ``structure`` column parsed from CIF.

    ``n``: only the first n rows (CDVAE's CSV rows are in random order, so this is a random subset;
    parsing the CIFs is the slow part, about 2 ms a row).
    """
    from pymatgen.core import Structure

    if split not in ("val", "test"):
        raise ValueError(f"Perov-5 split must be 'val' or 'test' (train is not available), not {split!r}")
    df = pd.read_csv(fetch(f"cdvae/cdvae/data/perov_5/{split}.csv"), index_col=0, nrows=n)

    def parse(row):
        try:
            with warnings.catch_warnings():  # pymatgen notes each coordinate it rounds; harmless here
                warnings.filterwarnings("ignore", message="Issues encountered while parsing CIF")
                return Structure.from_str(row.cif, fmt="cif")
        except Exception as exc:
            raise ValueError(f"Perov-5 {split} material_id {row.material_id}: malformed CIF ({exc})") from None

    df["structure"] = [parse(r) for r in df.itertuples()]
    return df


# --------------------------------------------------------------------------- cluster expansion


def load_cuau() -> pd.DataFrame:
    """The Cu-Au EMT training set of lesson 02 (generated by data/cluster_expansion/make_cuau_emt.py).

    Columns: ``atoms`` (ASE Atoms on the ideal fcc lattice, as the cluster expansion needs),
    ``relaxed`` (the EMT-relaxed Atoms the energy belongs to), ``mixing_energy`` (eV/atom),
    ``concentration`` (Au fraction). Raises ValueError naming the row of a NaN energy or a species
    other than Cu and Au.
    """
    from ase import Atoms
    from ase.db import connect

    rows = []
    with connect(fetch("cluster_expansion/cuau_emt.db")) as db:
        for row in db.select():
            atoms = row.toatoms()
            unknown = set(atoms.get_chemical_symbols()) - {"Cu", "Au"}
            if unknown:
                raise ValueError(f"cuau_emt.db row {row.id}: unexpected species {sorted(unknown)}")
            relaxed = Atoms(atoms.get_chemical_symbols(), cell=row.data["relaxed_cell"],
                            positions=row.data["relaxed_positions"], pbc=True)
            rows.append({"atoms": atoms, "relaxed": relaxed, "mixing_energy": row.get("mixing_energy"),
                         "concentration": row.get("concentration")})
    df = pd.DataFrame(rows)
    df["mixing_energy"] = check_targets(df["mixing_energy"])
    return df


# --------------------------------------------------------------------------- transfer learning

TRANSFER_DIR = "transfer_learning/transfer-learning-material-properties"
TRANSFER_PROPERTIES = ("fe", "bg", "gv", "ph", "dc", "pz", "ebg")
TRANSFER_TEST = ("dc", "ebg", "gv", "ph", "pz")  # bg and fe have no test set upstream
TRANSFER_PT = ("bg", "fe")  # the 1000-entry pre-training sets (5k-100k not available)


def transfer_file(prop: str, split: str = "ft", size: int = 800, trial: int = 1) -> str:
    """Registry name of a transfer-learning file of Devi et al. (2024).

    ``split``: ``"ft"`` (fine-tuning trial files, sizes 10/100/200/500/800, trials 1-5), ``"pt"``
    (the 1000-entry pre-training sets, bg and fe only) or ``"test"`` (dc, ebg, gv, ph, pz only).
    """
    if prop not in TRANSFER_PROPERTIES:
        raise KeyError(f"unknown property {prop!r}; known: {', '.join(TRANSFER_PROPERTIES)}")
    if split == "ft":
        if size not in (10, 100, 200, 500, 800) or trial not in range(1, 6):
            raise ValueError(f"FT sets come in sizes 10, 100, 200, 500, 800 and trials 1-5, not {size}/{trial}")
        return f"{TRANSFER_DIR}/PAIR-WISE/DATA-JSON-TRIAL-RUNS/{prop}/{prop}_trial{trial}_{size}.json"
    if split == "pt":
        if prop not in TRANSFER_PT:
            raise ValueError(f"only {TRANSFER_PT} have a pre-training set here, not {prop!r}")
        return f"{TRANSFER_DIR}/PAIR-WISE/DATA-JSON-TRIAL-RUNS/{prop}/{prop}_1000_std_clean.json"
    if split == "test":
        if prop not in TRANSFER_TEST:
            raise ValueError(f"only {TRANSFER_TEST} have a test set upstream, not {prop!r}")
        return f"{TRANSFER_DIR}/MULTI-PROPERTY/SEPARATE-HEAD-FT/DATA-JSON-MULTI-PROP/{prop}/mp-{prop}-multi-test.json"
    raise ValueError(f"split must be 'ft', 'pt' or 'test', not {split!r}")


def load_transfer_learning(prop: str, split: str = "ft", size: int = 800, trial: int = 1) -> pd.DataFrame:
    """One transfer-learning set as a DataFrame: ``jid``, ``target`` (min-max scaled to [-1, 1],
    dimensionless; see ``mlcourse.gnn.PROPERTY_SCALES`` for the inverse) and ``structure`` (pymatgen).

    Arguments as in :func:`transfer_file`. Raises ValueError naming the jid of a NaN target or a
    malformed structure.
    """
    name = transfer_file(prop, split, size, trial)
    with open(fetch(name)) as fh:
        entries = json.load(fh)
    df = pd.DataFrame({"jid": [e["jid"] for e in entries],
                       "target": [e["target"][0] if isinstance(e["target"], list) else e["target"] for e in entries]})
    df.index = pd.Index([f"{prop}:{j}" for j in df["jid"]], name="id")
    df["target"] = check_targets(df["target"])
    df["structure"] = [jarvis_structure(e["atoms"], f"{name} jid {e['jid']}") for e in entries]
    return df


# --------------------------------------------------------------------------- JARVIS-style structures

_JARVIS_KEYS = ("lattice_mat", "coords", "elements", "cartesian")


def jarvis_structure(atoms: dict | str, entry: object = None):
    """A pymatgen Structure from a JARVIS-tools ``Atoms.to_dict()`` dict (or its Python-literal string).

    Honours the ``cartesian`` flag (Cartesian Å if true, fractional otherwise). ValueError naming
    ``entry`` for a malformed dict: missing keys, mismatched lengths, unknown elements, a singular lattice.
    """
    import ast

    from pymatgen.core import Element, Lattice, Structure

    where = f"structure {entry!r}" if entry is not None else "structure"
    if isinstance(atoms, str):
        try:
            atoms = ast.literal_eval(atoms)
        except (ValueError, SyntaxError) as exc:
            raise ValueError(f"{where}: not a JARVIS Atoms dict ({exc})") from None
    if not isinstance(atoms, dict) or any(k not in atoms for k in _JARVIS_KEYS):
        raise ValueError(f"{where}: needs the keys {_JARVIS_KEYS}")
    coords, elements = np.asarray(atoms["coords"], dtype=float), list(atoms["elements"])
    lattice = np.asarray(atoms["lattice_mat"], dtype=float)
    if coords.shape != (len(elements), 3) or not elements:
        raise ValueError(f"{where}: {len(elements)} elements but coords of shape {coords.shape}")
    if lattice.shape != (3, 3) or abs(np.linalg.det(lattice)) < 1e-6:
        raise ValueError(f"{where}: lattice_mat must be a non-singular 3×3 matrix")
    unknown = sorted({e for e in elements if not Element.is_valid_symbol(e)})
    if unknown:
        raise ValueError(f"{where}: unknown element(s) {unknown}")
    return Structure(Lattice(lattice), elements, coords, coords_are_cartesian=bool(atoms["cartesian"]))


# --------------------------------------------------------------------------- migration barriers

MIGRATION_DIR = "migration_barriers/predicting-migration-barriers"
_MIGRATION_FILES = {"train": "DATA_FILES/MODEL-3-4/RAW/RAW-Em-5-images-TRAIN.json",
                    "test": "DATA_FILES/MODEL-3-4/RAW/RAW-Em-5-images-TEST.json"}


def host_name(sys_name: str) -> str:
    """The host material of a pathway id: ``LiRuO2_2`` → ``LiRuO2`` (the ``_N`` suffix numbers pathways)."""
    head, _, tail = sys_name.rpartition("_")
    return head if head and tail.isdigit() else sys_name


def load_migration_barriers(split: str = "train") -> pd.DataFrame:
    """Migration barriers Em (eV) on the published split (Devi, Butler, Sai Gautam, arXiv:2508.06436).

    ``split`` is ``train`` (559 pathways) or ``test`` (60). Columns: ``sys_name``, ``host``, ``ion``,
    ``class``, ``formula``, ``target`` (Em, eV) and ``band``: the host supercell with the mobile ion at
    5 points of the straight line from the initial to the final site (sites 0–4; the host from site 5).
    ValueError naming the pathway for a malformed structure, a NaN barrier or a band whose first five
    sites are not one element.
    """
    if split not in _MIGRATION_FILES:
        raise ValueError(f"migration-barrier split must be 'train' or 'test', not {split!r}")
    with open(fetch(f"{MIGRATION_DIR}/{_MIGRATION_FILES[split]}")) as fh:
        entries = json.load(fh)
    rows = []
    for e in entries:
        band = jarvis_structure(e["atoms"], e.get("sys_name"))
        ions = {band[i].specie.symbol for i in range(5)}
        if len(band) < 6 or len(ions) != 1:
            raise ValueError(f"pathway {e['sys_name']!r}: sites 0-4 must be the one mobile ion, got {sorted(ions)}")
        rows.append({"sys_name": e["sys_name"], "host": host_name(e["sys_name"]), "ion": ions.pop(),
                     "class": e["class"], "formula": e["formula"], "target": e["target"], "band": band})
    frame = pd.DataFrame(rows)
    frame["target"] = check_targets(frame.set_index("sys_name")["target"]).to_numpy()
    return frame


def load_migration_endpoints() -> pd.DataFrame:
    """Initial and final supercells (mobile ion = site 0) of the 60 test pathways: ``sys_name``,
    ``initial``, ``final`` (pymatgen Structures), ``target`` (Em, eV). Only the test split has them."""
    with open(fetch(f"{MIGRATION_DIR}/DATA_FILES/MODEL-1-2/RAW/BOTH-RAW-Em-TEST.json")) as fh:
        entries = json.load(fh)
    return pd.DataFrame([{"sys_name": e["sys_name"], "initial": jarvis_structure(e["atoms_ini"], e["sys_name"]),
                          "final": jarvis_structure(e["atoms_fin"], e["sys_name"]), "target": float(e["target"])}
                         for e in entries])


def load_migration_tabulation(sheet: str = "COMPLETE-TABUATION") -> pd.DataFrame:
    """A sheet of the workbook. ``COMPLETE-TABUATION`` (619 pathways): class, composition, XC functional,
    crystal system, space group, path info, ``sys_name``, Em (eV) and the MACE-MP-0 baselines
    ``MACE-RELAX`` / ``MACE-NO-RELAX`` (eV); ``TRAINING-PREDICTIONS`` (559) and
    ``TEST-PREDICTIONS-BEST-MODEL`` (60): the paper's model predictions (eV). For comparison only —
    never as model input or for model selection."""
    sheets = ("COMPLETE-TABUATION", "TRAINING-PREDICTIONS", "TEST-PREDICTIONS-BEST-MODEL")
    if sheet not in sheets:
        raise ValueError(f"unknown sheet {sheet!r}; the workbook has {', '.join(sheets)}")
    return pd.read_excel(fetch(f"{MIGRATION_DIR}/TABULATION-GIT-HUB.xlsx"), sheet_name=sheet)

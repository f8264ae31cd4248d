"""How far is the course's MTP from converged? Test MAE against MTP level and BFGS iterations, full mode.

Trains :func:`mlcourse.potentials.train_mtp` on all 214 Si training configurations of mlearn (Zuo et al. 2020)
and tests on its 25 test configurations: the split lesson 03 uses in full mode. One cell = (level, maxiter,
weights); the cells run cheapest first, each in its own process, and each finished cell is added to the
results file at once (written to a temporary file, then renamed), so a run stopped at any point keeps every
finished cell and a restart skips them. ``weights``: "motep" (motep's and lesson 03's defaults: energy 1,
forces 0.01, stress 0.001) or "mlearn" (the defaults of mlearn's MTPotential.train, the code of Zuo et al.:
energy 1, forces 0.01, stress 0; https://github.com/materialsvirtuallab/mlearn/blob/master/mlearn/potentials/mtp.py;
the weights Zuo et al. actually used are not stated in public code). Each record names the optimiser of
:func:`mlcourse.potentials.mtp_steps` that made it; the cells of the earlier L-BFGS-B fits (before 2026-12-01
evening) are kept in ``docs/mtp_convergence_lbfgsb.json``.

Usage (cost on the 2-core box: about 1.1 CPU-s per iteration at level 8, 2.7 at level 10, 6 at level 12):
    nice -n 19 python scripts/mtp_convergence.py [--levels 8 10 12 14] [--maxiter 100 300 1000]
        [--weights motep mlearn] [--radial-basis-size 8] [--out docs/mtp_convergence.json]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = {"motep": {"energy_weight": 1.0, "forces_weight": 0.01, "stress_weight": 0.001},
           "mlearn": {"energy_weight": 1.0, "forces_weight": 0.01, "stress_weight": 0.0}}
SEED = 0  # lesson 03's seed


def cell_key(level: int, maxiter: int, weights: str, radial_basis_size: int) -> str:
    """The name of one cell of the study in the results file."""
    return f"level {level}, {maxiter} it, {weights} weights, radial basis {radial_basis_size}"


def run_cell(level: int, maxiter: int, weights: str, radial_basis_size: int) -> dict:
    """Train one MTP on the full Si training set and return its test errors, timings and loss history."""
    from importlib.metadata import version

    from mlcourse import data, potentials

    train, test = data.load_mlearn("Si", "training"), data.load_mlearn("Si", "test")
    t0, c0 = time.perf_counter(), time.process_time()
    calc, losses = potentials.train_mtp(train, level=level, max_dist=5.0, radial_basis_size=radial_basis_size,
                                        maxiter=maxiter, weights=WEIGHTS[weights], seed=SEED, progress=False)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    errors = potentials.error_table({"MTP": calc}, test).loc["MTP"]
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    return {
        "key": cell_key(level, maxiter, weights, radial_basis_size), "level": level, "maxiter": maxiter,
        "optimizer": potentials.mtp_steps(maxiter)[-2]["kwargs"]["method"] if maxiter else "LLS only",
        "weights": weights, "loss_weights": WEIGHTS[weights], "radial_basis_size": radial_basis_size, "seed": SEED,
        "n_train": len(train), "n_test": len(test),
        "energy_mae_meV_per_atom": float(errors["energy_mae"]), "energy_rmse_meV_per_atom": float(errors["energy_rmse"]),
        "force_mae_eV_per_A": float(errors["force_mae"]), "force_rmse_eV_per_A": float(errors["force_rmse"]),
        "iterations_run": max(len(losses) - 3, 0), "loss_after_linear_fit": losses[1], "final_loss": losses[-1],
        "losses": losses, "train_wall_s": round(wall, 1), "train_cpu_s": round(cpu, 1),
        "peak_rss_MB": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}",
        "load_average_1min_at_end": round(os.getloadavg()[0], 2),
        "versions": {"python": platform.python_version(), "motep": version("motep"), "numpy": version("numpy"),
                     "ase": version("ase"), "mlcourse_commit": commit},
    }


def cost(level: int, maxiter: int) -> float:
    """A rough relative cost of a cell, for the order of the cells: ×4 per two levels, × iterations."""
    return 2.0 ** level * (maxiter + 2)


def load(out: Path) -> dict:
    """The results file's content ({"note": ..., "cells": {key: record}}), empty if it does not exist."""
    if out.exists():
        return json.loads(out.read_text())
    return {"note": "scripts/mtp_convergence.py: MTP (motep, train_mtp's BFGS fit) trained on all 214 mlearn Si training "
                    "configurations, tested on its 25 test configurations; MAE in meV/atom and eV/Å. One record per "
                    "finished cell. The earlier L-BFGS-B cells are in docs/mtp_convergence_lbfgsb.json.",
            "cells": {}}


def save(out: Path, results: dict) -> None:
    """Write ``results`` to ``out`` atomically (a temporary file, then a rename)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=1) + "\n")
    os.replace(tmp, out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--levels", type=int, nargs="+", default=[8, 10, 12, 14])
    parser.add_argument("--maxiter", type=int, nargs="+", default=[100, 300, 1000])
    parser.add_argument("--weights", nargs="+", default=["motep"], choices=sorted(WEIGHTS))
    parser.add_argument("--radial-basis-size", type=int, default=8)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "mtp_convergence.json")
    parser.add_argument("--cell", help=argparse.SUPPRESS)  # internal: run one cell, print its record as JSON
    args = parser.parse_args()
    if args.cell:
        print(json.dumps(run_cell(**json.loads(args.cell))))
        return
    cells = sorted(((lv, it, w) for lv in args.levels for it in args.maxiter for w in args.weights),
                   key=lambda c: (cost(c[0], c[1]), c[2] != "motep", c))
    for level, maxiter, weights in cells:
        key = cell_key(level, maxiter, weights, args.radial_basis_size)
        if key in load(args.out)["cells"]:
            print(f"{key}: done, skipped", flush=True)
            continue
        print(f"{key}: training ...", flush=True)
        spec = json.dumps({"level": level, "maxiter": maxiter, "weights": weights,
                           "radial_basis_size": args.radial_basis_size})
        proc = subprocess.run([sys.executable, __file__, "--cell", spec], capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"{key}: failed\n{proc.stderr[-2000:]}", flush=True)
            continue
        record = json.loads(proc.stdout.strip().splitlines()[-1])
        results = load(args.out)
        results["cells"][key] = record
        save(args.out, results)
        print(f"{key}: E MAE {record['energy_mae_meV_per_atom']:.2f} meV/atom, F MAE {record['force_mae_eV_per_A']:.3f} eV/Å, "
              f"{record['train_wall_s']:.0f} s", flush=True)


if __name__ == "__main__":
    main()

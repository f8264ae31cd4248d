"""Long Monte Carlo runs of lesson 02, cached in ``mc_results.json`` beside this script.

The notebook analyses the cached file in fast mode and reruns this script in full mode. Run from
the repository root (about 10 minutes on 2 cores)::

    python data/cluster_expansion/run_mc.py [--out PATH]

What it runs, all on the Cu-Au EMT training set (``cuau_emt.db``):
1. a cluster expansion (LASSO, cutoffs in SETTINGS) and, for the comparison, a pairs-only one, both
   fitted on the structures that stayed close to the fcc lattice on relaxation;
2. canonical mchammer MC at Cu3Au composition, cooling then heating: energy, heat capacity and
   first-shell short-range order against temperature;
3. semi-grand canonical mchammer MC: Au fraction and mixing energy against Δμ at two temperatures;
4. the teaching swap MC of ``mlcourse.lattice`` against mchammer on the pairs-only expansion: mean
   energy ± block error and sweeps per second at a few temperatures.
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
from ase.build import bulk

from mlcourse import data, lattice

SETTINGS = {
    "a": 3.8,  # Å, the ideal fcc lattice of the training set
    "cutoffs": [10.0, 6.0],  # Å; below half the 6×6×6 supercell so no cluster sees its own image
    "fit_method": "lasso",
    "max_drmax": 0.15,  # Å; structures that relaxed further (or with high anisotropic strain) are not fitted
    "pair_cutoffs": [8.0],
    "pair_fit_method": "ardr",
    "repeat": 6,  # conventional cells per direction: 864 sites
    "x_au": 0.25,  # Cu3Au
    "temperatures": list(range(600, 75, -25)),  # K, cooling order
    "n_sweeps": 300,
    "sgc_temperatures": [300.0, 600.0],
    "dmus": [round(x, 3) for x in np.linspace(-0.25, 0.25, 21)],  # eV, μ_Au − μ_Cu
    "sgc_sweeps": 100,
    "compare_temperatures": [400.0, 700.0, 1000.0],
    "compare_sweeps": 300,
    "seed": 0,
}


def run(settings: dict) -> dict:
    start = time.perf_counter()
    cuau = data.load_cuau()
    prim = bulk("Cu", "fcc", a=settings["a"])
    distortion = [lattice.relaxation_distortion(a, prim) for a in cuau.relaxed]
    train = cuau[[d <= settings["max_drmax"] and not strained for d, strained in distortion]]
    ce, cve = lattice.fit_cluster_expansion(train.atoms, train.mixing_energy, prim, settings["cutoffs"], settings["fit_method"])
    pair_ce, pair_cve = lattice.fit_cluster_expansion(train.atoms, train.mixing_energy, prim, settings["pair_cutoffs"],
                                                      settings["pair_fit_method"])
    sup = bulk("Cu", "fcc", a=settings["a"], cubic=True).repeat(settings["repeat"])
    n = len(sup)
    rng = np.random.default_rng(settings["seed"])
    start_cfg = sup.copy()
    start_cfg.symbols[rng.permutation(n)[: round(settings["x_au"] * n)]] = "Au"

    cooling, cooled = lattice.canonical_scan(ce, start_cfg, settings["temperatures"], settings["n_sweeps"],
                                             seed=settings["seed"], progress=True)
    heating, _ = lattice.canonical_scan(ce, cooled, settings["temperatures"][::-1], settings["n_sweeps"],
                                        seed=settings["seed"] + 1000, progress=True)
    sgc = {str(T): lattice.sgc_scan(ce, sup, T, settings["dmus"], settings["sgc_sweeps"], seed=settings["seed"],
                                    progress=True).to_dict("list")
           for T in settings["sgc_temperatures"]}

    n_pair_shells = len(pair_ce.get_cluster_space_copy()) - 2  # parameters minus zerolet and singlet
    shells = lattice.neighbor_shells(sup.positions, sup.cell.array, n_pair_shells)
    e0, h, J, residual = lattice.pair_model_from_ce(pair_ce, sup, shells, plus="Au")
    sigma = np.where(np.array(start_cfg.get_chemical_symbols()) == "Au", 1.0, -1.0)
    compare = []
    discard = settings["compare_sweeps"] // 5
    for T in settings["compare_temperatures"]:
        t0 = time.perf_counter()
        e, _ = lattice.canonical_swap_mc(sigma, shells, J, lattice.K_B * T, settings["compare_sweeps"], seed=settings["seed"])
        t_teach = time.perf_counter() - t0
        t0 = time.perf_counter()
        ref, _ = lattice.canonical_scan(pair_ce, start_cfg, [T], settings["compare_sweeps"], seed=settings["seed"])
        t_mch = time.perf_counter() - t0
        compare.append({"temperature": T,
                        "teaching": e0 + h * sigma.mean() + e[discard:].mean(), "teaching_err": lattice.block_error(e[discard:]),
                        "mchammer": float(ref.energy[0]), "mchammer_err": float(ref.energy_err[0]),
                        "teaching_sweeps_per_s": settings["compare_sweeps"] / t_teach,
                        "mchammer_sweeps_per_s": settings["compare_sweeps"] / t_mch})
    return {
        "settings": settings,
        "n_train": len(train), "cv_rmse": cve.rmse_validation, "n_parameters": len(cve.parameters),
        "n_nonzero": int(np.count_nonzero(cve.parameters)),
        "pair_cv_rmse": pair_cve.rmse_validation, "pair_model": {"E0": e0, "h": h, "J": list(J), "residual": residual},
        "cooling": cooling.to_dict("list"), "heating": heating.to_dict("list"), "sgc": sgc, "compare": compare,
        "wall_s": time.perf_counter() - start,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("mc_results.json"))
    args = parser.parse_args()
    results = run(SETTINGS)
    args.out.write_text(json.dumps(results, indent=1))
    print(f"wrote {args.out} in {results['wall_s']:.0f} s")

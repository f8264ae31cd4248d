"""CDVAE's generation protocol in full, resumable: 10,000 crystals from the registered Perov-5 model,
scored against the whole Perov-5 test split (3,785 crystals) with CDVAE's metrics (validity, COV-R /
COV-P with δ_struc = 0.2 and δ_comp = 4, Wasserstein distances of density and number of elements) and
the nearest-neighbour-distance Wasserstein distance (:mod:`mlcourse.metrics`).

The crystals are made and fingerprinted in chunks (``--chunk``, default 500, each from its own seed
``--seed + k``); every chunk is written to ``--out`` as it finishes (``chunk_KKK.json``: the structures,
their validity flags and fingerprints), and after each chunk ``results_partial.json`` holds the metrics
of all chunks done so far. Rerunning the command skips the chunks already on disk, so a stopped run
resumes where it stopped; ``results.json`` is written when all chunks are done. The reference
fingerprints are cached by :func:`mlcourse.metrics.reference_fingerprints` (sha256 of the test split).

Cost on one CPU core (2026-12-01, development box): sampling 0.056 CPU-s per crystal (measured,
batches of 100), CrystalNN about 0.1 s per crystal (the estimate in :data:`mlcourse.metrics.STRUCTURES_PER_WORKER`),
so roughly 10 min of sampling and 17 min of fingerprints per 10,000 crystals, plus about 6 min for the
reference fingerprints once; measured end to end: 40 min (2026-12-01, predictor only, beside other jobs)
and 26 min (2026-12-02, ``--corrector 0.3``, which doubles the sampling cost, on a faster box), one worker;
``--workers`` processes share the fingerprinting. Run from the repository root, at low priority:

    nice -n 10 python data/generative/cdvae_full_protocol.py --out build/cdvae_full [--n 10000] [--workers 2]
        [--temperature 1.0] [--corrector 0.0]

The sampler settings are those of ``CrystalDiffusion.sample`` (defaults: the model's own distribution);
``--n 500 --chunk 500`` with other settings, each into its own ``--out``, is a quick sweep of them
(COV-P, a fraction of the generated crystals, needs few samples; COV-R grows with their number).
"""

import argparse
import json
import os
from pathlib import Path

import numpy as np
import torch

from mlcourse import data, generative, metrics


SAMPLER = {"temperature": 1.0, "corrector": 0.0}  # model.sample's defaults: the model's own distribution


def chunk_path(out: Path, k: int) -> Path:
    return out / f"chunk_{k:03d}.json"


def make_chunk(model, k: int, size: int, seed: int, workers: int, out: Path, sampler: dict) -> None:
    """Sample ``size`` crystals with seed ``seed + k`` and the ``sampler`` settings (temperature, corrector of
    ``model.sample``), fingerprint them and write chunk k atomically."""
    samples = model.sample(n=size, seed=seed + k, progress=False, **sampler)
    s_fps = metrics.structure_fingerprints(samples, workers, progress=False)
    c_fps = metrics.scale_composition_fingerprints([metrics.composition_fingerprint(s.composition) for s in samples])
    rows = [{"structure": s.as_dict(), "struct_valid": bool(metrics.structure_validity(s)),
             "comp_valid": bool(metrics.composition_validity(s.composition)),
             "struct_fp": None if f is None else f.tolist(), "comp_fp": c.tolist()}
            for s, f, c in zip(samples, s_fps, c_fps)]
    tmp = chunk_path(out, k).with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"chunk": k, "seed": seed + k, "sampler": sampler, "rows": rows}))
    os.replace(tmp, chunk_path(out, k))  # whole or not at all


def score(rows: list, reference: list, ref_fps: tuple, n_target: int) -> dict:
    """CDVAE's metrics of the crystals in ``rows`` (all chunks done so far) against the reference."""
    from pymatgen.core import Structure

    sc, cc = metrics.COV_CUTOFFS["perov_5"]
    s_valid = np.array([r["struct_valid"] for r in rows])
    c_valid = np.array([r["comp_valid"] for r in rows])
    valid = s_valid & c_valid
    out = {"n_generated": len(rows), "n_planned": n_target, "n_reference": len(reference),
           "struct_valid": float(s_valid.mean()), "comp_valid": float(c_valid.mean()), "valid": float(valid.mean())}
    gen_s = [None if r["struct_fp"] is None else np.array(r["struct_fp"]) for r in rows]
    gen_c = [np.array(r["comp_fp"]) for r in rows]
    out |= metrics.coverage(gen_s, gen_c, *ref_fps, struc_cutoff=sc, comp_cutoff=cc, n_generated=len(rows))
    kept = [Structure.from_dict(r["structure"]) for r, v in zip(rows, valid) if v]
    if kept:
        out |= metrics.property_wasserstein(kept, reference)
        out["wdist_nn_distance"] = metrics.nn_distance_wasserstein(kept, reference)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="folder for the chunks and results")
    ap.add_argument("--n", type=int, default=10_000, help="crystals to generate (CDVAE: 10,000)")
    ap.add_argument("--chunk", type=int, default=500, help="crystals per chunk")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=1, help="processes for the CrystalNN fingerprints")
    ap.add_argument("--n-ref", type=int, default=None, help="test crystals (default: all 3,785)")
    ap.add_argument("--temperature", type=float, default=SAMPLER["temperature"], help="of model.sample: < 1 sharpens the atom types")
    ap.add_argument("--corrector", type=float, default=SAMPLER["corrector"], help="of model.sample: Langevin corrector step (0: none)")
    args = ap.parse_args()
    if args.n < 1 or args.chunk < 1:
        raise SystemExit(f"--n and --chunk must be positive, not {args.n} and {args.chunk}")
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    sampler = {"temperature": args.temperature, "corrector": args.corrector}
    model = generative.CrystalDiffusion.load(data.fetch("generative/perov5_diffusion.pt"))
    reference = list(data.load_cdvae("perov_5", "test", n=args.n_ref).structure)
    ref_fps = metrics.reference_fingerprints(reference, progress=True, workers=args.workers)
    sizes = [min(args.chunk, args.n - k * args.chunk) for k in range((args.n + args.chunk - 1) // args.chunk)]
    rows = []
    for k, size in enumerate(sizes):
        if not chunk_path(args.out, k).is_file():
            make_chunk(model, k, size, args.seed, args.workers, args.out, sampler)
        done = json.loads(chunk_path(args.out, k).read_text())
        made = done.get("sampler", SAMPLER)  # chunks written before the settings were: the defaults
        if len(done["rows"]) != size or done["seed"] != args.seed + k or made != sampler:
            raise SystemExit(f"{chunk_path(args.out, k)} holds {len(done['rows'])} crystals from seed {done['seed']} "
                             f"sampled with {made}, not {size} from seed {args.seed + k} with {sampler}: another run's "
                             "chunk; use another --out")
        rows += done["rows"]
        partial = score(rows, reference, ref_fps, args.n) | {"sampler": sampler}
        (args.out / "results_partial.json").write_text(json.dumps(partial, indent=1))
        print(f"chunk {k + 1}/{len(sizes)}: {len(rows)} crystals, " + ", ".join(
            f"{m} {partial[m]:.4f}" for m in ("struct_valid", "comp_valid", "cov_recall", "cov_precision") if m in partial))
    (args.out / "results.json").write_text(json.dumps(partial, indent=1))
    print(f"wrote {args.out / 'results.json'}")


if __name__ == "__main__":
    main()

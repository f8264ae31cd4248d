"""Lesson 07 with the network that should win (issue 16, item 4): MODEL-3's design with the ALIGNN-style network.

MODEL-3 (Devi, Butler, Sai Gautam, arXiv:2508.06436): an ALIGNN pre-trained on several properties at once
(MPT) and fine-tuned on the 5-image band of each pathway (the host with the mobile ion at five points of
its hop, ``data.load_migration_barriers``); R² 0.703, MAE 0.261 eV on the 60 test pathways. Here the
starting networks are issue 16's registered ALIGNNs (``gnn.ALIGNN`` at its defaults: hidden 64, 2 ALIGNN
+ 2 edge-gated layers, smaller than the paper's 256 and 4 + 4), trained by
``data/transfer_learning/alignn_pairwise.py``: its trial-1 MPT (fe, bg, gv, ph, dc, pz; ``alignn_mpt_no_ebg.pt``)
and its trial-1 PT fe (``alignn_pt_fe.pt``). The designs, as lesson 07's CGCNN ones, in the order they are trained:
MPT (MODEL-3's design), from scratch, MPT with attention pooling, PT(fe); every layer trainable (a new head), lesson 07's
full-mode settings (notebooks/07_migration_barriers.toml: epochs, band batch; AdamW lr 1e-3, patience 25 as
the notebook), validation = 10 % of the training HOSTS (all their pathways), the split lesson 07 uses. The
model is chosen on that validation split only: the design with the lowest validation MAE, or the mean of
all designs if that is lower (the stretch aim allows an ensemble chosen on training data); the test set
is scored for every design but never used to choose.

Each design is one task (``training.run_tasks``): its result JSON (validation and test predictions,
metrics, epochs, seconds) and, while it trains, a checkpoint after every epoch in OUT, so a stopped run
resumes within a fit, and two workers (one per core) can share OUT::

    OMP_NUM_THREADS=1 python data/migration_barriers/alignn_band.py OUT            # one per core
    python data/migration_barriers/alignn_band.py OUT --summary data/migration_barriers/alignn_band.json

On a new machine, ``--restore data/migration_barriers/alignn_band.json`` first refills OUT with the registered
designs, so only the missing ones are trained.

``--summary`` (also of a run still going: the designs finished so far; the choice once all are) also writes
the MODEL-3 design's network in float16 beside this script (``alignn_band_model3.pt``: lesson 07's fast mode
evaluates it) and copies the checkpoints of designs still training to ``alignn_band_run/`` (commit them:
``--restore`` resumes them on a new machine); then run ``python data/make_registry.py``. ``--max-atoms`` and ``--n-train`` shrink the
training set and ``--epochs`` the budget for a trial run of the script (the result records them).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.model_selection import GroupShuffleSplit

from mlcourse import data, gnn, lesson, metrics, training

HERE = Path(__file__).resolve().parent
S = lesson.settings("07_migration_barriers", "full")
SEED = 0  # lesson 07's seed (lesson.start's default)
PATIENCE = 25  # as lesson 07's networks
LR = 1e-3  # AdamW, as lesson 07's networks (gnn.fit's default)
STARTS = {"pt_fe": "transfer_learning/alignn_pt_fe.pt", "mpt": "transfer_learning/alignn_mpt_no_ebg.pt"}
MODEL3 = "band, MPT (MODEL-3 design)"
DESIGNS = {  # name: (starting network: None = from scratch, or a key of STARTS; readout); workers take them in order
    MODEL3: ("mpt", "mean"),
    "band, from scratch": (None, "mean"),
    "band + attention, MPT": ("mpt", "attention"),
    "band, PT(fe)": ("pt_fe", "mean"),
}
ENSEMBLE = "mean of all designs"
UNFINISHED = "alignn_band_run"  # beside this script: checkpoints of designs a stopped run was still training
UNPLACEABLE = "LiRuO2_1"  # its middle image sits on a Ru atom: no crystal graph (lesson 07 leaves it out too)


def task_name(design: str) -> str:
    """File-safe name of a design's task."""
    return design.replace(" ", "_").replace(",", "").replace("(", "").replace(")", "").replace("+", "plus")


def sets(max_atoms: int | None, n_train: int | None) -> dict:
    """Training pool, host-grouped fit/validation split and test set, as lesson 07 (full mode: no caps)."""
    train, test = data.load_migration_barriers("train"), data.load_migration_barriers("test")
    pool = train[train.sys_name != UNPLACEABLE]
    pool = pool if max_atoms is None else pool[pool.band.map(len) <= max_atoms]
    pool = pool if n_train is None or n_train >= len(pool) else pool.sample(n_train, random_state=SEED)
    fit_rows, val_rows = next(GroupShuffleSplit(1, test_size=0.1, random_state=SEED).split(pool, groups=pool.host))
    return {"fit": pool.iloc[fit_rows], "val": pool.iloc[val_rows], "test": test}


_GRAPHS: dict = {}


def graphs(frames: dict, split: str) -> list:
    """ALIGNN graphs (bond angles) of one split's bands, built once per process."""
    if split not in _GRAPHS:
        f = frames[split]
        _GRAPHS[split] = gnn.build_dataset(list(f.band), f.target.to_numpy(), ids=list(f.sys_name),
                                           model=gnn.ALIGNN(), progress=False)
    return _GRAPHS[split]


def start_network(design: str) -> gnn.GraphNet:
    """The network a design fine-tunes: a registered ALIGNN with a new readout and head, or a new one."""
    start, readout = DESIGNS[design]
    pretrained = gnn.load_model(data.fetch(STARTS[start or "mpt"]))
    if start is None:  # the MPT's architecture, fresh weights
        arch = {k: v for k, v in pretrained.config.items() if k not in ("n_tasks", "tasks", "readout")}
        return gnn.seeded_model(SEED, "alignn", **arch, readout=readout)
    return gnn.with_readout(pretrained, readout, seed=SEED)


def run(design: str, out: Path, frames: dict, epochs: int) -> dict:
    t0 = time.perf_counter()
    model = gnn.prepare_fine_tune(start_network(design), "all", seed=SEED)
    h = gnn.fit(model, graphs(frames, "fit"), graphs(frames, "val"), epochs=epochs, lr=LR,
                batch_size=S.gnn_batch["band"], patience=PATIENCE, seed=SEED, progress=False,
                checkpoint=out / f"{task_name(design)}.ckpt")
    gnn.save_model(model, out / f"{task_name(design)}.pt", half=False)
    pred = {split: gnn.predict(model, graphs(frames, split), batch_size=S.gnn_batch["band"]) for split in ("val", "test")}
    return {"design": design, "val_mae": float(np.mean(np.abs(pred["val"] - frames["val"].target.to_numpy())))}\
        | metrics.barrier_metrics(frames["test"].target, pred["test"]) \
        | {"val_pred": dict(zip(frames["val"].sys_name, map(float, pred["val"]))),
           "test_pred": dict(zip(frames["test"].sys_name, map(float, pred["test"]))),
           "epochs": len(h.train_loss), "best_epoch": h.best_epoch, "seconds": time.perf_counter() - t0,
           "seconds_per_epoch": h.seconds_per_epoch, "threads": torch.get_num_threads()}


def summary(out: Path, frames: dict, setup: dict) -> dict:
    """Every finished design, the mean of all of them, and the choice on the validation split."""
    res = {d: json.loads((out / f"{task_name(d)}.json").read_text()) for d in DESIGNS
           if (out / f"{task_name(d)}.json").exists()}
    y_val, y_test = frames["val"].target.to_numpy(), frames["test"].target
    rows = {d: {k: r[k] for k in ("val_mae", "r2", "mae", "rmse", "tier_small", "tier_large", "epochs", "best_epoch",
                                  "seconds")} for d, r in res.items()}
    if len(res) == len(DESIGNS):
        val = np.mean([[r["val_pred"][n] for n in frames["val"].sys_name] for r in res.values()], axis=0)
        test = np.mean([[r["test_pred"][n] for n in frames["test"].sys_name] for r in res.values()], axis=0)
        rows[ENSEMBLE] = {"val_mae": float(np.mean(np.abs(val - y_val)))} | metrics.barrier_metrics(y_test, test)
    chosen = min(rows, key=lambda d: rows[d]["val_mae"]) if len(res) == len(DESIGNS) else None
    return {"setup": setup, "network": gnn.ALIGNN().config, "starts": STARTS, "designs": rows, "chosen": chosen,
            "published": {"model": "MODEL-3 (MPT ALIGNN on the band)", "r2": 0.703, "mae": 0.261,
                          "source": "Devi, Butler, Sai Gautam, arXiv:2508.06436 (abstract)"},
            "runs": res}


def restore(out: Path, registered: Path, setup: dict) -> list[str]:
    """Refill a new run folder from a registered summary of the same setup: every finished design's result
    (and the MODEL-3 design's network from its float16 copy), so only the designs still missing are trained.
    Files already in ``out`` are kept. Returns the designs written."""
    reg = json.loads(registered.read_text())
    if {k: v for k, v in reg["setup"].items() if k in setup} != setup:
        raise SystemExit(f"{registered} is a run with {reg['setup']}, not {setup}")
    written = []
    for d, r in reg["runs"].items():
        if not (out / f"{task_name(d)}.json").exists():
            (out / f"{task_name(d)}.json").write_text(json.dumps(r, indent=1) + "\n")
            written.append(d)
    if MODEL3 in reg["runs"] and not (out / f"{task_name(MODEL3)}.pt").exists():
        gnn.save_model(gnn.load_model(HERE / "alignn_band_model3.pt"), out / f"{task_name(MODEL3)}.pt", half=False)
    for ck in sorted((HERE / UNFINISHED).glob("*.ckpt")):  # designs that were still training: resume them
        if not (out / ck.name).exists() and not (out / f"{ck.stem}.json").exists():
            shutil.copy(ck, out / ck.name)
    return written


def keep_unfinished(out: Path) -> list[str]:
    """Copy the checkpoints of the designs still training in ``out`` to UNFINISHED beside this script (and delete
    those of designs now finished), so a new machine resumes them (``--restore``). Returns the names kept."""
    kept = HERE / UNFINISHED
    for ck in kept.glob("*.ckpt"):
        if (out / f"{ck.stem}.json").exists():
            ck.unlink()
    names = []
    for ck in sorted(out.glob("*.ckpt")):
        kept.mkdir(exist_ok=True)
        shutil.copy(ck, kept / ck.name)
        names.append(ck.stem)
    return names


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--summary", type=Path, help="write the summary JSON here instead of training")
    ap.add_argument("--max-atoms", type=int, help="train only on bands of at most this many atoms (a trial run)")
    ap.add_argument("--n-train", type=int, help="train on this many pathways at most (a trial run)")
    ap.add_argument("--epochs", type=int, default=S.gnn_epochs)
    ap.add_argument("--restore", type=Path, help="first refill OUT from this registered summary JSON (a new machine)")
    a = ap.parse_args()
    setup = {"max_atoms": a.max_atoms, "n_train": a.n_train, "epochs": a.epochs, "batch": S.gnn_batch["band"],
             "lr": LR, "patience": PATIENCE, "seed": SEED}
    a.out.mkdir(parents=True, exist_ok=True)
    recorded = a.out / "setup.txt"  # a run folder holds one setup: a resumed run must not mix two
    if recorded.exists() and json.loads(recorded.read_text()) != setup:
        raise SystemExit(f"{a.out} holds a run with {recorded.read_text().strip()}, not {setup}: use another folder")
    recorded.write_text(json.dumps(setup) + "\n")
    if a.restore:
        print(f"restored {restore(a.out, a.restore, setup)} from {a.restore}")
    frames = sets(a.max_atoms, a.n_train)
    if a.summary:
        s = summary(a.out, frames, setup | {"n_fit": len(frames["fit"]), "n_val": len(frames["val"])})
        a.summary.write_text(json.dumps(s, indent=1) + "\n")
        print("checkpoints kept for a new machine:", keep_unfinished(a.out))
        if MODEL3 in s["designs"]:  # the paper's design, for lesson 07's fast mode to evaluate
            gnn.save_model(gnn.load_model(a.out / f"{task_name(MODEL3)}.pt"), HERE / "alignn_band_model3.pt", half=True)
        print(json.dumps({d: {k: round(v, 3) for k, v in r.items()} for d, r in s["designs"].items()}, indent=1),
              "\nchosen on validation:", s["chosen"])
        return
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    by_task = {task_name(d): d for d in DESIGNS}
    training.run_tasks(a.out, [(name, []) for name in by_task], lambda name: run(by_task[name], a.out, frames, a.epochs))


if __name__ == "__main__":
    main()

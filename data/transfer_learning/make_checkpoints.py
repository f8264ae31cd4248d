"""Pre-trained CGCNN checkpoints for the fast mode of lesson 06 (transfer learning).

Writes three small files (float16 weights, ~0.3 MB each) next to this script:

- ``pt_fe.pt``: pre-trained on ``fe_1000_std_clean.json`` (formation energy, 1000 entries),
- ``pt_bg.pt``: pre-trained on ``bg_1000_std_clean.json`` (PBE band gap, 1000 entries),
- ``mpt_no_ebg.pt``: multi-property pre-training (one head per property, masked L1 loss) on
  fe and bg (1000 each) and gv, ph, dc, pz (their ``trial1_800`` FT files), leaving the experimental
  band gap ebg out entirely.

Same architecture (mlcourse.gnn defaults) and settings (pt_epochs, mpt_epochs, pt_patience, mpt_sets of
notebooks/06_transfer_learning.toml) as the notebook's full mode. Then run
``python data/make_registry.py`` so that the new hashes are registered. Run from the repository root:
``OMP_NUM_THREADS=1 python data/transfer_learning/make_checkpoints.py`` (about 15 min on one core).
"""

import json
import time
from pathlib import Path

import torch

from mlcourse import data, gnn, lesson

HERE = Path(__file__).resolve().parent
SEED = 0
S = lesson.settings("06_transfer_learning", "full")


def main() -> None:
    torch.set_num_threads(1)
    log = {}
    sets = {p: gnn.graphs_of(data.load_transfer_learning(p, split, size=size, trial=1))  # warns of one fe entry
            for p, (split, size) in S.mpt_sets.items()}
    for prop in S.pt_props:
        t0 = time.perf_counter()
        model, hist = gnn.pretrain(sets[prop], seed=SEED, epochs=S.pt_epochs, patience=S.pt_patience, progress=False)
        gnn.save_model(model, HERE / f"pt_{prop}.pt", half=True)
        log[f"pt_{prop}"] = {"n": len(sets[prop]), "epochs": len(hist.train_loss), "best_epoch": hist.best_epoch,
                             "best_val_mae_normalised": min(hist.val_metric), "seconds": time.perf_counter() - t0}
        print(log[f"pt_{prop}"], flush=True)
    t0 = time.perf_counter()
    model, hist = gnn.pretrain(sets, seed=SEED, epochs=S.mpt_epochs, patience=S.pt_patience, progress=False)
    gnn.save_model(model, HERE / "mpt_no_ebg.pt", half=True)
    log["mpt_no_ebg"] = {"n": sum(map(len, sets.values())), "tasks": model.tasks, "epochs": len(hist.train_loss),
                         "best_epoch": hist.best_epoch, "best_val_mae_normalised": min(hist.val_metric),
                         "seconds": time.perf_counter() - t0}
    print(log["mpt_no_ebg"], flush=True)
    (HERE / "checkpoints_log.txt").write_text(json.dumps(log, indent=1) + "\n")


if __name__ == "__main__":
    main()

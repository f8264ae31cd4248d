"""Devi et al.'s pair-wise transfer-learning protocol with the ALIGNN-style network (issue 16).

The paper (Devi, Butler, Sai Gautam, npj Comput. Mater. 10, 300 (2024)): ALIGNN pre-trained (PT) on one
property, capped at 941 entries (the size of its smallest data set), fine-tuned (FT) with every layer
trainable ("unfreeze all") on 800 entries of another property, against a network of the same kind
trained from scratch on the same 800 entries with the same budget; mean relative change of test R²
and MAE over the PT -> FT pairs, over 5 random FT draws ("trials"). Here: PT on fe and bg (the only
properties with PT files), FT on the five with test sets (gv, ph, dc, pz, ebg): 10 pairs; the
multi-property network (MPT: fe, bg, gv, ph, dc, pz, masked loss) fine-tuned on ebg, held out of it;
and the four FT strategies on lesson 06's pair fe -> gv, strategy 4 as in the paper: only the two-body
(atom-graph) or only the three-body (line-graph) interaction layers unfrozen; and the FT-size curve of that
pair (scratch and PT -> FT at lesson 06's full-mode FT sizes).
Settings are lesson 06's full mode (notebooks/06_transfer_learning.toml); the network is
``gnn.ALIGNN`` at its defaults (hidden 64, 2 ALIGNN + 2 edge-gated layers: smaller than the paper's).

Every fit is one task whose result is a JSON file in OUT (and, while it runs, a checkpoint after every
epoch, ``gnn.fit(checkpoint=)``), so the run resumes where it stopped, within a fit too, and
several workers can share it (each claims a task with a lock file; a claim of a dead process is
taken over)::

    OMP_NUM_THREADS=1 python data/transfer_learning/alignn_pairwise.py OUT --trials 1   # one per core
    python data/transfer_learning/alignn_pairwise.py OUT --trials 1 --summary data/transfer_learning/alignn_pairwise.json

On a new machine, ``--restore data/transfer_learning/alignn_pairwise.json`` first refills OUT with the registered
fits (and the pre-trained networks that have a registered copy), so only what is missing is trained.

Trial t reads the FT files ``<p>_trial<t>_800.json`` and seeds everything with t - 1. The pre-trained
networks are saved in OUT (float32); ``--summary`` also copies trial 1's PT fe network and its MPT, in
float16, to ``alignn_pt_fe.pt`` (lesson 06's fast mode fine-tunes it) and ``alignn_mpt_no_ebg.pt`` beside
this script (and trial 2's PT fe to ``alignn_t2_pt_fe.pt``: ``COPIES``), then run ``python data/make_registry.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from mlcourse import data, gnn, lesson, metrics, training

HERE = Path(__file__).resolve().parent

S = lesson.settings("06_transfer_learning", "full")
FT_PROPS, PT_PROPS = list(S.ft_props), list(S.pt_props)
PT_CAP = 941  # the paper's PT size: its smallest data set (pz)
ARCH = dict(arch="alignn")
FT = dict(epochs=S.ft_epochs, patience=S.ft_patience, lr=S.ft_lr, batch_size=S.ft_batch, progress=False)
PT = dict(epochs=S.pt_epochs, patience=S.pt_patience, progress=False)  # as the lesson: fit's lr and batch size
MPT = dict(PT, epochs=S.mpt_epochs)
MPT_HELD_OUT = "ebg"
STRATEGY_PAIR = "fe->gv"  # lesson 06's pair for the four FT strategies ("all" is the pair-wise fit itself)
STRATEGIES = ["new_head", "last_layer", "conv-2-body", "conv-3-body"]  # conv: the paper's strategy 4, two ways
STRATEGY_PT, STRATEGY_FT = STRATEGY_PAIR.split("->")
SIZES = [n for n in S.ft_sizes if n != S.ft_size]  # the FT-size curve of STRATEGY_PAIR (ft_size: the pair-wise fits)


def size_prefix(n: int) -> str:
    """Name prefix of the FT-size curve's fits at FT size n ("" at ft_size: the pair-wise fits themselves)."""
    return "" if n == S.ft_size else f"size{n}_"


def tasks(trial: int) -> list[tuple[str, list[str]]]:
    """(name, names it needs) in the order workers take them."""
    out = [(f"t{trial}_pt_{p}", []) for p in PT_PROPS]
    out += [(f"t{trial}_scratch_{p}", []) for p in FT_PROPS]
    out += [(f"t{trial}_{pt}->{p}", [f"t{trial}_pt_{pt}"]) for pt in PT_PROPS for p in FT_PROPS]
    out += [(f"t{trial}_mpt", [])]
    out += [(f"t{trial}_mpt->{MPT_HELD_OUT}", [f"t{trial}_mpt"])]
    out += [(f"t{trial}_{s}:{STRATEGY_PAIR}", [f"t{trial}_pt_{STRATEGY_PT}"]) for s in STRATEGIES]
    out += [(f"t{trial}_{size_prefix(n)}{what}", deps) for n in SIZES
            for what, deps in ((f"scratch_{STRATEGY_FT}", []), (STRATEGY_PAIR, [f"t{trial}_pt_{STRATEGY_PT}"]))]
    return out


_GRAPHS: dict = {}
_TEMPLATE = gnn.ALIGNN()  # graphs are built for this network's cutoff and neighbours


def graphs(prop: str, split: str, trial: int = 1, cap: int | None = None, seed: int = 0, size: int = S.ft_size) -> list:
    """ALIGNN graphs of one transfer-learning file, built once (only FT files differ by trial and size)."""
    trial, size = (trial, size) if split == "ft" else (1, S.ft_size)
    key = (prop, split, trial, cap, seed, size)
    if key not in _GRAPHS:
        df = data.load_transfer_learning(prop, split, size=size, trial=trial)
        if cap is not None and len(df) > cap:
            df = df.iloc[np.sort(np.random.default_rng(seed).choice(len(df), cap, replace=False))]
        _GRAPHS[key] = gnn.graphs_of(df, model=_TEMPLATE)  # warns of the one isolated-atom fe entry
    return _GRAPHS[key]


def score(model, prop: str) -> dict:
    m = gnn.evaluate(model, graphs(prop, "test"), prop=prop if prop in data.PROPERTY_SCALES else None)
    return {k: m[k] for k in ("r2", "mae", "rmse")} | ({"mae_phys": m["mae_phys"], "unit": m["unit"]} if "unit" in m else {})


def run(name: str, out: Path) -> dict:
    trial = int(name[1:name.index("_")])
    seed = trial - 1
    what = name[name.index("_") + 1:]
    size = S.ft_size
    if what.startswith("size"):  # a point of the FT-size curve: size<n>_<fit>
        size, what = int(what[4:what.index("_")]), what[what.index("_") + 1:]
    t0 = time.perf_counter()
    ck = out / f"{name}.ckpt"  # the fit's state after every epoch: a stopped fit resumes from it
    if what.startswith("pt_"):
        p = what[3:]
        pt_set = graphs(p, "pt", cap=PT_CAP, seed=seed)
        model, h = gnn.pretrain(pt_set, seed=seed, model_kwargs=ARCH, checkpoint=ck, **PT)
        gnn.save_model(model, out / f"{name}.pt", half=False)
        res = {"n": len(pt_set)}
    elif what == "mpt":
        sets = {p: graphs(p, split, trial, cap=PT_CAP, seed=seed) for p, (split, _) in S.mpt_sets.items()}
        model, h = gnn.pretrain(sets, seed=seed, model_kwargs=ARCH, checkpoint=ck, **MPT)
        gnn.save_model(model, out / f"{name}.pt", half=False)
        res = {"n": sum(map(len, sets.values())), "tasks": model.tasks}
    elif what.startswith("scratch_"):
        p = what[8:]
        model, h = gnn.train_from_scratch(graphs(p, "ft", trial, size=size), seed=seed, model_kwargs=ARCH, checkpoint=ck, **FT)
        res = score(model, p)
    else:
        strategy, pair = what.split(":") if ":" in what else ("new_head" if what.startswith("mpt") else "all", what)
        pt, p = pair.split("->")
        pre = gnn.load_model(out / f"t{trial}_{pt if pt == 'mpt' else 'pt_' + pt}.pt")
        conv = strategy[len("conv-"):] if strategy.startswith("conv-") else None
        model, h = gnn.fine_tune(pre, graphs(p, "ft", trial, size=size), "conv" if conv else strategy, conv_layers=conv,
                                 seed=seed, checkpoint=ck, **FT)
        res = score(model, p) | {"strategy": strategy,
                                 "trainable_parameters": sum(q.numel() for q in model.parameters() if q.requires_grad)}
    return res | {"epochs": len(h.train_loss), "best_epoch": h.best_epoch, "best_val_mae_normalised": min(h.val_metric),
                  "seconds": time.perf_counter() - t0, "threads": torch.get_num_threads()}


def work(out: Path, trials: list[int]) -> None:
    training.run_tasks(out, [t for trial in trials for t in tasks(trial)], lambda name: run(name, out))


def summary(out: Path, trials: list[int]) -> dict:
    """Per-trial results, and the paper's averages over pairs, then their mean and spread over trials."""
    per_trial = {}
    for trial in trials:
        r = {n[len(f"t{trial}_"):]: json.loads((out / f"{n}.json").read_text())
             for n, _ in tasks(trial) if (out / f"{n}.json").exists()}
        pairs = [(pt, p) for pt in PT_PROPS for p in FT_PROPS if f"{pt}->{p}" in r and f"scratch_{p}" in r]
        gains = [metrics.transfer_gains(r[f"{pt}->{p}"], r[f"scratch_{p}"]) for pt, p in pairs]
        avg = {"n_pairs": len(pairs)} | {k: float(np.mean([g[k] for g in gains])) for k in gains[0]} if pairs else {}
        if f"mpt->{MPT_HELD_OUT}" in r:
            avg["mpt_vs_scratch"] = metrics.transfer_gains(r[f"mpt->{MPT_HELD_OUT}"], r[f"scratch_{MPT_HELD_OUT}"])
        strategies = {"all": r.get(STRATEGY_PAIR)} | {s: r.get(f"{s}:{STRATEGY_PAIR}") for s in STRATEGIES}
        curve = {n: {k: r[size_prefix(n) + k]["r2"] for k in (f"scratch_{STRATEGY_FT}", STRATEGY_PAIR) if size_prefix(n) + k in r}
                 for n in sorted(S.ft_sizes)}
        per_trial[trial] = {"strategies": {s: m for s, m in strategies.items() if m is not None}, "fits": r,
                            "size_curve_r2": {n: c for n, c in curve.items() if c},
                            "gains": {f"{pt}->{p}": g for (pt, p), g in zip(pairs, gains)}, "average": avg}
    full = [t["average"] for t in per_trial.values() if t["average"].get("n_pairs") == len(PT_PROPS) * len(FT_PROPS)]
    over = {k: {"mean": float(np.mean([a[k] for a in full])), "std": float(np.std([a[k] for a in full])),
                "n_trials": len(full)} for k in ("delta_r2", "r2_gain_pct", "mae_change_pct")} if full else {}
    return {"network": _TEMPLATE.config, "pt_cap": PT_CAP, "ft": FT, "pt": PT, "mpt": MPT,
            "trials": per_trial, "over_trials": over}


# run file -> registered float16 copy: lesson 06 fine-tunes trial 1's PT fe, lesson 07 is to start from its MPT;
# trial 2's PT fe lets a new machine finish that trial's strategies and size curve without pre-training again
COPIES = {"t1_pt_fe.pt": "alignn_pt_fe.pt", "t1_mpt.pt": "alignn_mpt_no_ebg.pt", "t2_pt_fe.pt": "alignn_t2_pt_fe.pt"}


def restore(out: Path, registered: Path) -> list[str]:
    """Refill a new run folder from a registered summary: every fit's result JSON, and the pre-trained networks
    that have a registered copy (float16, read back as float32). A pre-training without a copy whose network
    an unfinished fit still needs is left out, so that it is trained again first. Files already in ``out`` are
    kept. Returns the names written."""
    written = []
    for trial, t in json.loads(registered.read_text())["trials"].items():
        needed = {d for n, deps in tasks(int(trial)) if n[len(f"t{trial}_"):] not in t["fits"] for d in deps}
        for fit, res in t["fits"].items():
            name = f"t{trial}_{fit}"
            model, copy = out / f"{name}.pt", COPIES.get(f"{name}.pt")
            if copy and not model.exists():
                gnn.save_model(gnn.load_model(HERE / copy), model, half=False)
            if name in needed and not model.exists():
                continue
            if not (out / f"{name}.json").exists():
                (out / f"{name}.json").write_text(json.dumps(res, indent=1) + "\n")
                written.append(name)
    return written


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--trials", type=int, nargs="+", default=[1])
    ap.add_argument("--summary", type=Path, help="write the summary JSON here instead of training")
    ap.add_argument("--restore", type=Path, help="first refill OUT from this registered summary JSON (a new machine)")
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    if a.restore:
        print(f"restored {len(restore(a.out, a.restore))} fits from {a.restore}")
    if a.summary:
        s = summary(a.out, a.trials)
        a.summary.write_text(json.dumps(s, indent=1) + "\n")
        for name, copy in COPIES.items():
            if (a.out / name).exists():
                gnn.save_model(gnn.load_model(a.out / name), HERE / copy, half=True)
        print(json.dumps({t: v["average"] for t, v in s["trials"].items()} | {"over_trials": s["over_trials"]}, indent=1))
        return
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    work(a.out, a.trials)


if __name__ == "__main__":
    main()

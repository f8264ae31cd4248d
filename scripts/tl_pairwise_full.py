"""Lesson 06, sections 3, 4 and 7 with full-mode settings, from the pre-trained checkpoints.

The full-mode notebook pre-trains its models first (about 30 min on a shared 2-core machine); this
script runs only the headline comparison with the same code and full-mode settings (the lesson's table,
notebooks/06_transfer_learning.toml: FT size 800, trial 1, unfreeze all, up to 120 epochs with patience
20, whole test sets), starting from the checkpoints in
data/transfer_learning/ (made by the same `gnn.pretrain` calls). Prints and writes JSON:
``python scripts/tl_pairwise_full.py out.json [threads]``. With a third argument ``extras`` it runs
sections 5 and 6 instead: the four FT strategies for PT fe -> FT gv at FT size 800, and the FT-size
curve (10, 100, 200, 500, 800; trial 1) for scratch and PT fe -> FT gv.
"""

import json
import sys
import time

import numpy as np
import torch

from mlcourse import data, gnn, lesson, metrics

SEED = 0
S = lesson.settings("06_transfer_learning", "full")
FT_PROPS, PT_PROPS = S.ft_props, S.pt_props
FT = dict(epochs=S.ft_epochs, patience=S.ft_patience, lr=S.ft_lr, batch_size=S.ft_batch, progress=False)


def score(model, prop, test):
    m = gnn.evaluate(model, test, prop=prop if prop in data.PROPERTY_SCALES else None)
    return {k: m[k] for k in ("r2", "mae", "rmse")} | ({"mae_phys": m["mae_phys"], "unit": m["unit"]} if "unit" in m else {})


def main(out: str) -> None:
    torch.set_num_threads(int(sys.argv[2]) if len(sys.argv) > 2 else 1)
    t0 = time.perf_counter()
    ft = {p: gnn.graphs_of(data.load_transfer_learning(p, "ft", size=S.ft_size, trial=1)) for p in FT_PROPS}
    test = {p: gnn.graphs_of(data.load_transfer_learning(p, "test")) for p in FT_PROPS}
    pre = {p: gnn.load_model(data.fetch(f"transfer_learning/pt_{p}.pt")) for p in PT_PROPS}
    mpt = gnn.load_model(data.fetch("transfer_learning/mpt_no_ebg.pt"))
    res = {"scratch": {}, "pairwise": {}, "settings": FT | {"ft_size": S.ft_size, "trial": 1}}
    for p in FT_PROPS:
        model, h = gnn.train_from_scratch(ft[p], seed=SEED, **FT)
        res["scratch"][p] = score(model, p, test[p]) | {"epochs": len(h.train_loss)}
        print("scratch", p, res["scratch"][p], f"{time.perf_counter() - t0:.0f} s", flush=True)
        for pt in PT_PROPS:
            model, h = gnn.fine_tune(pre[pt], ft[p], "all", seed=SEED, **FT)
            res["pairwise"][f"{pt}->{p}"] = score(model, p, test[p]) | {"epochs": len(h.train_loss)}
            print(pt, "->", p, res["pairwise"][f"{pt}->{p}"], f"{time.perf_counter() - t0:.0f} s", flush=True)
        with open(out, "w") as fh:  # partial results after each property
            json.dump(res, fh, indent=1)
    model, h = gnn.fine_tune(mpt, ft["ebg"], "new_head", seed=SEED, **FT)
    res["mpt->ebg"] = score(model, "ebg", test["ebg"]) | {"epochs": len(h.train_loss)}
    print("MPT -> ebg", res["mpt->ebg"], flush=True)
    gains = [metrics.transfer_gains(res["pairwise"][f"{pt}->{p}"], res["scratch"][p]) for pt in PT_PROPS for p in FT_PROPS]
    res["average"] = {k: float(np.mean([g[k] for g in gains])) for k in gains[0]}
    res["seconds"] = time.perf_counter() - t0
    print(res["average"], f"{res['seconds']:.0f} s", flush=True)
    with open(out, "w") as fh:
        json.dump(res, fh, indent=1)


def extras(out: str) -> None:
    torch.set_num_threads(int(sys.argv[2]) if len(sys.argv) > 2 else 1)
    t0 = time.perf_counter()
    test = gnn.graphs_of(data.load_transfer_learning("gv", "test"))
    pre = gnn.load_model(data.fetch("transfer_learning/pt_fe.pt"))
    res = {"strategies (fe->gv, FT 800)": {}, "ft size (gv)": {}, "settings": FT | {"trial": 1}}
    ft800 = gnn.graphs_of(data.load_transfer_learning("gv", "ft", size=S.ft_size, trial=1))
    for strategy in gnn.STRATEGIES:
        model, h = gnn.fine_tune(pre, ft800, strategy, seed=SEED, **FT)
        res["strategies (fe->gv, FT 800)"][strategy] = score(model, "gv", test) | {"epochs": len(h.train_loss)}
        print(strategy, res["strategies (fe->gv, FT 800)"][strategy], f"{time.perf_counter() - t0:.0f} s", flush=True)
    for n in S.ft_sizes:
        g = ft800 if n == S.ft_size else gnn.graphs_of(data.load_transfer_learning("gv", "ft", size=n, trial=1))
        m_s, _ = gnn.train_from_scratch(g, seed=SEED, **FT)
        m_f, _ = gnn.fine_tune(pre, g, "all", seed=SEED, **FT)
        res["ft size (gv)"][n] = {"scratch": score(m_s, "gv", test), "fe->gv": score(m_f, "gv", test)}
        print(n, res["ft size (gv)"][n], f"{time.perf_counter() - t0:.0f} s", flush=True)
        with open(out, "w") as fh:
            json.dump(res, fh, indent=1)
    res["seconds"] = time.perf_counter() - t0
    with open(out, "w") as fh:
        json.dump(res, fh, indent=1)


if __name__ == "__main__":
    extras(sys.argv[1]) if sys.argv[3:4] == ["extras"] else main(sys.argv[1])

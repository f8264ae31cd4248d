"""One training loop for the course's networks: the graph networks (:func:`mlcourse.gnn.fit`), the
interatomic potentials (:func:`mlcourse.potentials.train_potential`) and the diffusion model
(:meth:`mlcourse.generative.CrystalDiffusion.fit`).

The loop knows nothing about graphs, atoms or crystals. Each family passes small callables:
``batches()``, the batches of one epoch in order; ``loss(batch)``, a loss tensor and the batch's
weight in the epoch's mean loss (its number of structures, or 1 for a plain mean over batches); and
optionally ``validate()``, one number per epoch, lower is better (an error on held-out data).
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm


@dataclass
class History:
    """What one training run did, epoch by epoch (epochs count from 0)."""

    train_loss: list[float] = field(default_factory=list)  # weighted mean of the batch losses of each epoch
    val_metric: list[float] = field(default_factory=list)  # validate() after each epoch; empty without it
    seconds: list[float] = field(default_factory=list)  # wall time of each epoch (s), validation included
    best_epoch: int = -1  # the epoch whose state the model holds at the end
    stopped_early: bool = False  # True when ``patience`` epochs passed without a new lowest val_metric

    @property
    def seconds_per_epoch(self) -> float:
        """Mean wall time of an epoch (s)."""
        return float(np.mean(self.seconds)) if self.seconds else float("nan")


def train(model: nn.Module, optimizer: torch.optim.Optimizer, batches: Callable[[], Iterable],
          loss: Callable[[object], tuple[torch.Tensor, float]], epochs: int,
          validate: Callable[[], float] | None = None, patience: int | None = None,
          clip_grad: float | None = None, step_scheduler=None, epoch_scheduler=None,
          generator: torch.Generator | None = None, checkpoint: str | Path | None = None,
          progress: bool = True) -> History:
    """Train ``model`` in place for up to ``epochs`` epochs; returns the :class:`History`.

    Every batch: one ``optimizer`` step on ``loss(batch)`` (gradient norm clipped to ``clip_grad`` if
    given), then ``step_scheduler.step()``. After every epoch: ``epoch_scheduler.step()``, then
    ``validate()``. With ``validate`` the model ends in the state of the epoch with the lowest value,
    and training stops after ``patience`` epochs without a new lowest one (``None``: never); without
    it the model ends in its last state. Either way it ends in eval mode.

    ``checkpoint`` (a path): after every epoch the training state (model, optimizer, schedulers, the
    random state of ``generator`` (the one ``batches`` draws from) and of torch, history, best state)
    is written there, and a later call with the same path resumes from it and gives the same result
    as a run without interruption. A finished run's checkpoint returns its result at once.
    """
    parts = {"model": model, "optimizer": optimizer, "step_scheduler": step_scheduler,
             "epoch_scheduler": epoch_scheduler}
    hist, best_state = History(), None
    if checkpoint is not None and Path(checkpoint).exists():
        hist, best_state = _load_checkpoint(checkpoint, parts, generator)
    start = len(hist.train_loss)
    stop = start if hist.stopped_early else epochs
    bar = tqdm(total=stop, initial=start, desc="epochs", leave=False, disable=not progress)
    for epoch in range(start, stop):
        t0 = time.perf_counter()
        model.train()
        total, count = 0.0, 0
        for batch in batches():
            optimizer.zero_grad()
            value, weight = loss(batch)
            value.backward()
            if clip_grad is not None:
                nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
            optimizer.step()
            if step_scheduler is not None:
                step_scheduler.step()
            total += float(value.detach()) * weight
            count += weight
        if count == 0:
            raise ValueError("no training batches: the training set is empty")
        if epoch_scheduler is not None:
            epoch_scheduler.step()
        hist.train_loss.append(total / count)
        if validate is None:
            hist.best_epoch = epoch
        else:
            hist.val_metric.append(validate())
            best = hist.val_metric[hist.best_epoch] if hist.best_epoch >= 0 else math.inf
            if hist.val_metric[-1] < best:
                hist.best_epoch, best_state = epoch, copy.deepcopy(model.state_dict())
            elif patience is not None and epoch - hist.best_epoch >= patience:
                hist.stopped_early = True
        hist.seconds.append(time.perf_counter() - t0)
        if checkpoint is not None:
            _save_checkpoint(checkpoint, parts, generator, hist, best_state)
        bar.update()
        bar.set_postfix(loss=f"{hist.train_loss[-1]:.4g}", val=f"{hist.val_metric[-1]:.4g}" if validate else "-")
        if hist.stopped_early:
            break
    bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return hist


def _save_checkpoint(path: str | Path, parts: dict, generator: torch.Generator | None, hist: History,
                     best_state: dict | None) -> None:
    state = {name: part.state_dict() for name, part in parts.items() if part is not None}
    state |= {"generator": None if generator is None else generator.get_state(), "torch_rng": torch.get_rng_state(),
              "history": asdict(hist), "best_state": best_state}
    tmp = Path(f"{path}.tmp")  # written whole, then renamed: an interrupted save leaves the last checkpoint intact
    torch.save(state, tmp)
    tmp.replace(path)


def _load_checkpoint(path: str | Path, parts: dict, generator: torch.Generator | None) -> tuple[History, dict | None]:
    state = torch.load(path, map_location="cpu", weights_only=True)
    for name, part in parts.items():
        if part is not None:
            part.load_state_dict(state[name])
    if generator is not None:
        generator.set_state(state["generator"])
    torch.set_rng_state(state["torch_rng"])
    return History(**state["history"]), state["best_state"]


# --------------------------------------------------------------------------- long protocols: resumable tasks


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


def claim(out: Path, name: str) -> bool:
    """Take task ``name`` for this process (a lock file ``<name>.claim`` holding its pid); False when another
    live process holds it. A claim of a dead process is taken over."""
    lock = out / f"{name}.claim"
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        if _alive(int(lock.read_text() or 0)):
            return False
        lock.unlink(missing_ok=True)  # its worker died: take it over
        return claim(out, name)
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    return True


def run_tasks(out: str | Path, todo: list[tuple[str, list[str]]], run: Callable[[str], dict],
              poll_s: float = 20.0) -> None:
    """Work through named tasks, each ``(name, names it needs)``, in order, until every one has its result.

    A task's result is the dict ``run(name)`` returns, written to ``out/<name>.json``; a task with a result is
    done, so a stopped protocol resumes where it stopped (a fit that checkpoints to ``out/<name>.ckpt`` resumes
    within itself: the checkpoint is deleted with the result). Several processes can share ``out``: each
    claims a task (:func:`claim`) and waits ``poll_s`` seconds when everything ready is claimed by another.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    while True:
        done = {p.stem for p in out.glob("*.json")}
        left = [(n, deps) for n, deps in todo if n not in done]
        if not left:
            return
        ready = [n for n, deps in left if all(d in done for d in deps)]
        for name in ready:
            if claim(out, name):
                res = run(name)
                tmp = out / f"{name}.json.tmp"
                tmp.write_text(json.dumps(res, indent=1) + "\n")
                tmp.replace(out / f"{name}.json")
                (out / f"{name}.ckpt").unlink(missing_ok=True)
                (out / f"{name}.claim").unlink(missing_ok=True)
                print(name, {k: v for k, v in res.items() if k in ("r2", "mae", "epochs", "seconds")}, flush=True)
                break
        else:
            time.sleep(poll_s)  # everything ready is claimed by another worker: wait for its result

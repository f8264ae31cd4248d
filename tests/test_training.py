"""mlcourse.training: the one training loop, on a tiny linear regression."""

import math

import pytest
import torch
from torch import nn

from mlcourse import training

torch.set_num_threads(1)


class Interrupted(Exception):
    pass


def problem(seed: int = 0, interrupt_after: int | None = None):
    """A linear model, its optimiser and schedulers, and the loop's callables for y = 3 x1 - 2 x2 + noise.

    Batches are drawn from ``gen``; the loss also draws from torch's global generator (as dropout would).
    ``interrupt_after``: raise Interrupted at that many calls of the loss (a crash in mid-epoch).
    """
    torch.manual_seed(seed)
    model = nn.Linear(2, 1)
    x = torch.randn(40, 2)
    y = x @ torch.tensor([[3.0], [-2.0]]) + 0.1 * torch.randn(40, 1)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    step_sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.05, total_steps=8 * 6)
    epoch_sched = torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5)
    calls = []

    def batches():
        order = torch.randperm(40, generator=gen)
        return [order[k:k + 7] for k in range(0, 40, 7)]  # 6 batches, the last one of 5

    def loss(idx):
        calls.append(len(idx))
        if interrupt_after is not None and len(calls) > interrupt_after:
            raise Interrupted
        keep = (torch.rand(len(idx)) > 0.1).float()[:, None]  # a global-RNG draw, like dropout
        return (((model(x[idx]) - y[idx]) ** 2) * keep).mean(), len(idx)

    def validate():
        with torch.no_grad():
            return float(((model(x) - y) ** 2).mean())

    kw = dict(validate=validate, clip_grad=1.0, step_scheduler=step_sched, epoch_scheduler=epoch_sched, generator=gen,
              progress=False)
    return model, opt, batches, loss, kw, calls


def test_resuming_from_a_checkpoint_gives_the_uninterrupted_result(tmp_path):
    model, opt, batches, loss, kw, _ = problem()
    hist = training.train(model, opt, batches, loss, 8, **kw)

    path = tmp_path / "state.pt"
    model1, opt1, batches1, loss1, kw1, _ = problem(interrupt_after=6 * 3 + 2)  # crash in epoch 3 (from 0)
    with pytest.raises(Interrupted):
        training.train(model1, opt1, batches1, loss1, 8, checkpoint=path, **kw1)
    model2, opt2, batches2, loss2, kw2, calls = problem()  # a fresh process would start like this
    resumed = training.train(model2, opt2, batches2, loss2, 8, checkpoint=path, **kw2)

    assert len(calls) == 6 * 5  # epochs 3 to 7 only: epochs 0-2 came from the checkpoint
    assert torch.equal(model2.weight, model.weight) and torch.equal(model2.bias, model.bias)
    assert resumed.train_loss == hist.train_loss and resumed.val_metric == hist.val_metric
    assert resumed.best_epoch == hist.best_epoch and len(resumed.seconds) == 8
    # a finished run's checkpoint returns its result without training
    model3, opt3, batches3, loss3, kw3, calls3 = problem()
    again = training.train(model3, opt3, batches3, loss3, 8, checkpoint=path, **kw3)
    assert calls3 == [] and again.train_loss == hist.train_loss and torch.equal(model3.weight, model.weight)


def test_early_stopping_stops_after_patience_and_restores_the_best_state(tmp_path):
    model, opt, batches, loss, kw, _ = problem()
    scores = iter([3.0, 2.0, 1.0, 1.5, 1.2, 0.5, 0.1])
    states = []

    def validate():
        states.append({k: v.clone() for k, v in model.state_dict().items()})
        return next(scores)

    path = tmp_path / "state.pt"
    hist = training.train(model, opt, batches, loss, 7, **(kw | {"validate": validate}), patience=2, checkpoint=path)
    assert hist.stopped_early and hist.best_epoch == 2
    assert hist.val_metric == [3.0, 2.0, 1.0, 1.5, 1.2] and len(hist.train_loss) == 5
    assert all(torch.equal(v, states[2][k]) for k, v in model.state_dict().items())
    assert not torch.equal(states[4]["weight"], states[2]["weight"])  # so the best state was put back
    # resuming a run that stopped early trains no further and gives the best state again
    model2, opt2, batches2, loss2, kw2, calls = problem()
    again = training.train(model2, opt2, batches2, loss2, 7, **(kw2 | {"validate": None}), patience=2, checkpoint=path)
    assert calls == [] and again == hist and torch.equal(model2.weight, states[2]["weight"])


def test_without_validation_the_last_state_is_kept_and_the_epoch_loss_is_weighted():
    model = nn.Sequential(nn.Linear(1, 1), nn.Dropout(0.5))
    opt = torch.optim.SGD(model.parameters(), lr=0.0)  # lr 0: the batch losses below stay what they are

    def loss(batch):
        value, weight = batch
        return model[0].weight.sum() * 0 + value, weight

    hist = training.train(model, opt, lambda: [(torch.tensor(1.0), 3), (torch.tensor(4.0), 1)], loss, 2, progress=False)
    assert hist.train_loss == [pytest.approx((1 * 3 + 4 * 1) / 4)] * 2  # weighted by the batches' weights
    assert hist.val_metric == [] and hist.best_epoch == 1 and not hist.stopped_early
    assert len(hist.seconds) == 2 and 0 < hist.seconds_per_epoch < 60 and not model.training


def test_an_empty_training_set_raises():
    model = nn.Linear(1, 1)
    with pytest.raises(ValueError, match="no training batches"):
        training.train(model, torch.optim.SGD(model.parameters(), lr=0.1), lambda: [], None, 3, progress=False)
    assert math.isnan(training.History().seconds_per_epoch)


def test_run_tasks_respects_dependencies_resumes_and_takes_over_a_dead_claim(tmp_path):
    import json
    import subprocess
    import sys

    ran = []

    def run(name):
        ran.append(name)
        if name == "b":  # b needs a's result, so a is done when b runs
            assert (tmp_path / "a.json").exists()
        return {"value": len(ran)}

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / "b.claim").write_text(dead.stdout.strip())  # a worker that died while it held b
    (tmp_path / "c.json").write_text(json.dumps({"value": 0}))  # c finished in an earlier run
    todo = [("b", ["a"]), ("a", []), ("c", [])]
    training.run_tasks(tmp_path, todo, run, poll_s=0.01)
    assert ran == ["a", "b"]  # c was not run again; b waited for a although listed first
    assert json.loads((tmp_path / "b.json").read_text()) == {"value": 2}
    assert not list(tmp_path.glob("*.claim")) and not list(tmp_path.glob("*.tmp"))
    training.run_tasks(tmp_path, todo, run, poll_s=0.01)  # everything done: nothing runs
    assert ran == ["a", "b"]
    assert training.claim(tmp_path, "x")  # a fresh claim succeeds ...
    assert not training.claim(tmp_path, "x")  # ... and a live process's claim is not taken twice

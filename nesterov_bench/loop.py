"""The one training loop, shared by every optimizer so the comparison is fair by construction.

The loop owns batches, steps, the evaluation schedule and the divergence stop. It does not know
where metrics go: it hands each record to a callback (the run store and the W&B mirror listen).
``fit`` trains one model; ``fit_members`` is the same loop for K members trained side by side as one
vectorized program (``population.Population``): ``fit`` is ``fit_members`` with one member.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from .schedules import Schedules
from .tasks import Data, Split, Task
from .train_config import TrainConfig

#: record(step, epoch, split, {metric: value}, time_s)
Record = Callable[[int, float, str, dict[str, float], float], None]


@dataclass
class Outcome:
    status: str  # "completed" | "diverged"
    steps: int
    epochs: float
    train_time_s: float  # time spent in training steps, evaluation excluded
    final: dict[str, float]  # "split/metric" -> value at the last evaluation
    reason: str | None = None


class _Stopwatch:
    """Accumulates training time only; evaluation runs with the watch stopped.

    On CUDA each read synchronises the device (a host sync point), so it is read only at log points.
    """

    def __init__(self, device: torch.device):
        self.sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        self.total, self.started = 0.0, None

    def start(self) -> None:
        self.sync()
        self.started = time.perf_counter()

    def stop(self) -> float:
        self.sync()
        self.total += time.perf_counter() - self.started
        return self.total


def _article_decay_step(model: nn.Module, optimizer: torch.optim.Optimizer, decay: float,
                        epoch: int) -> None:
    """The second article's extra step, exactly as written after each ``optimizer.step()``::

        weight_decay_factor = weight_decay * (epoch - 1)   # epoch from range(num_epochs): 0, 1, ...
        optimizer.zero_grad()
        for param in model.parameters():
            param.data -= weight_decay_factor * param.data
        optimizer.step()

    In epoch 0 the factor is -decay, so every step *grows* the weights by (1 + decay); in epoch 1 it
    is 0; afterwards it shrinks them ever harder. The second ``step()`` follows ``zero_grad()``, which
    sets gradients to None, so every optimizer skips it (it would move the weights again along the
    momentum buffer only if gradients were zeroed instead, ``set_to_none=False``).
    """
    factor = decay * (epoch - 1)
    optimizer.zero_grad(set_to_none=True)
    with torch.no_grad():
        for p in model.parameters():
            p.sub_(factor * p)
    optimizer.step()


def _gather(t: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``t[idx]`` (idx of shape (B,) or (K, B)), through ``index_select``: the same values, about
    2.5x faster than advanced indexing for a mini-batch of MNIST on a CPU."""
    if idx.dim() == 1:
        return t.index_select(0, idx)
    return t.index_select(0, idx.reshape(-1)).view(*idx.shape, *t.shape[1:])


def _add_gradient_noise(members: Members, factor: torch.Tensor, generators: list[torch.Generator]) -> None:
    """Add xi_k = F z_k (z_k ~ N(0, I) from member k's generator, drawn in float64 on the CPU) to member
    k's gradient: the one parameter of a model (the quadratic's x), (1, d), or stacked, (K, 1, d)."""
    (p,) = list(members.module.parameters())
    z = torch.stack([torch.randn(factor.shape[0], generator=g, dtype=torch.float64) for g in generators])
    p.grad.add_((z @ factor.T).to(p.grad.device, p.grad.dtype).view_as(p.grad))


def members_per_draw(generators: list[torch.Generator]) -> int:
    """P when the members come in blocks of P whose batch generators are in one state (the members of
    one seed, listed seed by seed, as ``members.member_configs`` lists them), so each block draws its
    batches once; 1 otherwise (every member draws its own)."""
    states = [g.get_state() for g in generators]
    p = next((j for j, st in enumerate(states) if not torch.equal(st, states[0])), len(states))
    same = all(torch.equal(states[b], states[b + j]) for b in range(0, len(states), p) for j in range(p)
               ) if len(states) % p == 0 else False
    return p if same else 1


@dataclass(frozen=True)
class Budget:
    """A run's schedule on a training split of ``n`` examples, as ``fit_members`` follows it (for a run
    that does not stop early): its batches, steps and evaluations."""

    full_batch: bool
    batch_size: int
    steps_per_epoch: int  # the last batch of an epoch may be smaller (no drop_last)
    total_steps: int
    mid_epoch: frozenset[int]  # steps within an epoch (1-based) after which an extra evaluation runs
    evaluations: int  # evaluation passes, the one before the first step and the last included
    test_evaluations: int  # of which the test split is evaluated in (train.eval_test)

    @classmethod
    def of(cls, n: int, tc: TrainConfig) -> Budget:
        full_batch = tc.batch_size is None or tc.batch_size >= n
        bs = n if full_batch else tc.batch_size
        spe = math.ceil(n / bs)
        total = tc.epochs * spe if tc.max_steps is None else min(tc.epochs * spe, tc.max_steps)
        mid = frozenset(round(k * spe / tc.evals_per_epoch) for k in range(1, tc.evals_per_epoch)) - {0, spe}
        epochs, rest = divmod(total, spe)  # whole epochs, and the steps of a last one cut short
        # before the first step; each whole epoch's mid-epoch points and its end (every eval_every-th);
        # a cut-short epoch's mid-epoch points before its last step; and the last step, always
        evaluations = (1 + epochs * len(mid) + epochs // tc.eval_every + sum(m < rest for m in mid)
                       + (rest > 0 or epochs % tc.eval_every != 0))
        return cls(full_batch, bs, spe, total, mid, evaluations, 1 if tc.eval_test == "last" else evaluations)


def evaluation_splits(data: Data, tc: TrainConfig) -> dict[str, Split]:
    """What each evaluation scores: the training split's first ``train.eval_train_size`` examples (a
    fixed subset of the already-shuffled split, the same for every run), then the task's validation and
    test splits."""
    train = data.train
    ets = len(train) if tc.eval_train_size is None else min(tc.eval_train_size, len(train))
    return {"train": Split(train.x[:ets], train.y[:ets]), **data.evaluation_splits()}


def fit(
    task: Task,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    data: Data,
    tc: TrainConfig,
    *,
    batch_generator: torch.Generator,
    record: Record,
    progress: bool = False,
) -> Outcome:
    """Train ``model`` for ``tc.epochs`` epochs; evaluate before the first step and every
    ``tc.eval_every`` epochs; stop early, status ``diverged``, when a loss is NaN or infinite."""
    return fit_members(task, Single(task, model), optimizer, data, tc,
                       batch_generators=[batch_generator], records=[record], progress=progress)[0]


class Members(Protocol):
    """What ``fit_members`` trains: K members, with their losses computed together."""

    stacked: bool  # True: batches are (S, B, ...), one per group of members (a Population); False: (B, ...)
    members: tuple[nn.Module, ...]  # member k as an ordinary module (evaluation)
    module: nn.Module  # what the optimizer's parameters belong to

    def losses(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The loss to differentiate, and each member's loss (detached, shape (K,))."""
        ...


class Single:
    """One model, as ``Members`` (population.Population is the vectorized one)."""

    stacked = False  # batches are (B, ...), not (S, B, ...)

    def __init__(self, task: Task, model: nn.Module):
        self.task, self.module, self.members = task, model, (model,)

    def losses(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The loss to differentiate, and each member's loss (detached, shape (K,))."""
        loss = self.task.loss(self.module(x), y)
        return loss, loss.detach().reshape(1)


def fit_members(
    task: Task,
    members: Members,
    optimizer: torch.optim.Optimizer,
    data: Data,
    tc: TrainConfig,
    *,
    batch_generators: list[torch.Generator],
    records: list[Record],
    progress: bool = False,
) -> list[Outcome]:
    """The loop, for K members trained side by side (a ``Single`` model or a
    ``population.Population``); one generator (batch order) and one record callback per member.

    Each member follows exactly the schedule a run of its own would: the same steps, records and
    evaluations; a member whose loss turns non-finite stops being recorded (status ``diverged``)
    while the others go on. Training time is the members' shared time. Members that would draw the
    same batches (``members_per_draw``; all of them, full batch) are handed one batch between them.
    """
    k_members = len(members.members)
    train = data.train
    n = len(train)
    budget = Budget.of(n, tc)
    full_batch, bs, steps_per_epoch = budget.full_batch, budget.batch_size, budget.steps_per_epoch
    total_steps, mid_epoch = budget.total_steps, budget.mid_epoch
    eval_splits = evaluation_splits(data, tc)
    watch = _Stopwatch(train.x.device)
    # train.precision=bf16: every forward pass (training and evaluation) under bf16 autocast; the
    # parameters, their gradients and the optimizer's state stay float32
    amp = (torch.autocast(train.x.device.type, dtype=torch.bfloat16) if tc.precision == "bf16"
           else contextlib.nullcontext())
    schedules = Schedules(tc.lr_schedule, tc.momentum_schedule, total_steps)
    # gradient noise (the noisy quadratic): member k's own stream, seeded from its batch-order seed
    noise = None if data.grad_noise is None else [
        torch.Generator().manual_seed(int(np.random.SeedSequence([g.initial_seed(), 2]).generate_state(1)[0]))
        for g in batch_generators]
    finals: list[dict[str, float]] = [{} for _ in range(k_members)]
    outcomes: list[Outcome | None] = [None] * k_members  # set when a member stops early
    # a population's batches: one per group of members that draw the same (S groups of P)
    per_draw = members_per_draw(batch_generators) if members.stacked else 1
    draws = batch_generators[::per_draw]
    step = 0

    def alive() -> list[int]:
        return [k for k in range(k_members) if outcomes[k] is None]

    def stop(k: int, reason: str) -> None:
        outcomes[k] = Outcome("diverged", step, step / steps_per_epoch, watch.total, finals[k], reason)

    def evaluate(epoch: float, reason: str) -> bool:
        """Record every live member's metrics on every split; stop those with a non-finite loss.
        False when no member is left."""
        splits = eval_splits if tc.eval_test != "last" or step == total_steps else {
            name: split for name, split in eval_splits.items() if name != "test"}
        for k in alive():
            member = members.members[k]
            member.eval()
            ok = True
            for name, split in splits.items():
                with amp:
                    metrics = task.evaluate(member, split, tc.eval_batch_size, data)
                records[k](step, epoch, name, metrics, watch.total)
                finals[k].update({f"{name}/{m}": v for m, v in metrics.items()})
                ok = ok and math.isfinite(metrics["loss"])
            member.train()
            if not ok:
                stop(k, reason)
        return bool(alive())

    # the suite's Optimizer.update is step() without torch.optim's per-step wrapper; any other optimizer: step
    update = getattr(optimizer, "update", optimizer.step)
    bar = tqdm(total=total_steps, disable=not progress, unit="step", dynamic_ncols=True, leave=False)
    going = evaluate(0.0, "non-finite loss at initialisation")
    running, count = None, 0  # summed in the loss's own dtype (a float64 run logs float64 means)
    for epoch in range(tc.epochs if going else 0):
        watch.start()
        batches: tuple[torch.Tensor, ...] = ()
        if not full_batch:
            # The batches are drawn on the CPU so their order does not depend on the device: a permutation
            # per epoch, or (sampling=replacement) each step's bs examples independently and uniformly.
            perms = [torch.randint(n, (steps_per_epoch * bs,), generator=g) if tc.sampling == "replacement"
                     else torch.randperm(n, generator=g) for g in draws]
            for k in range(k_members):  # the rest of a group: left where their own draws would leave them
                if k % per_draw:
                    batch_generators[k].set_state(draws[k // per_draw].get_state())
            perm = (torch.stack(perms) if members.stacked else perms[0]).to(train.x.device)
            batches = perm.split(bs, dim=-1)  # each step's indices, (B,) or (S, B): views, made at once
        for i in range(steps_per_epoch):
            if full_batch:
                x, y = train.x, train.y
                if members.stacked:  # one batch, shared by every member
                    x, y = x[None], y[None]
            else:
                x, y = _gather(train.x, batches[i]), _gather(train.y, batches[i])
            with amp:
                loss, per_member = members.losses(x, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if noise is not None:
                _add_gradient_noise(members, data.grad_noise, noise)
            if schedules.active():
                schedules.apply(optimizer, step)
            update()
            if tc.epoch_decay:
                _article_decay_step(members.module, optimizer, tc.epoch_decay, epoch)
            step += 1
            running = per_member.detach().clone() if running is None else running.add_(per_member)
            count += 1
            # an epoch's end is a log point, except where every step is an epoch (full batch: log_every)
            last = (i == steps_per_epoch - 1 and not full_batch) or step == total_steps
            if step % tc.log_every == 0 or last or i + 1 in mid_epoch:
                means = (running / count).tolist()  # host sync, once per log interval
                elapsed = watch.stop()
                for k in alive():
                    records[k](step, step / steps_per_epoch, "train", {"batch_loss": means[k]}, elapsed)
                    if not math.isfinite(means[k]):
                        stop(k, f"non-finite training loss at step {step}")
                bar.update(count)
                bar.set_postfix(loss=f"{means[0]:.4g}", epoch=epoch + 1, refresh=False)
                running.zero_()
                count = 0
                going = bool(alive()) and step < total_steps
                if going and i + 1 in mid_epoch:
                    going = evaluate(step / steps_per_epoch, f"non-finite evaluation loss at step {step}")
                if not going:
                    break
                watch.start()
        else:
            watch.stop()
        if not alive():
            break
        if (epoch + 1) % tc.eval_every == 0 or step == total_steps:
            if not evaluate(step / steps_per_epoch, f"non-finite evaluation loss at step {step}"):
                break
        if step == total_steps:
            break
    bar.close()
    return [o if o is not None else Outcome("completed", step, step / steps_per_epoch, watch.total, finals[k])
            for k, o in enumerate(outcomes)]

"""make bench: the suite's speed on the CPU, each figure beside a baseline timed in the same process.

    .venv/bin/python scripts/bench.py [--quick] [--out results/bench]

Writes ``<out>/<section>.json`` for each section below (lists of rows: device,
torch version, threads, measured figure, baseline, ratio, goal, pass) and ``<out>/README_table.md``, one
Markdown table rendered from those JSON files only (for the README's owner to paste). Speeds are printed
and recorded, never asserted.

What is timed
-------------
1. ``loop``: training steps/s on mnist_logreg, mnist_mlp and mnist_cnn (the task's own batch size, the
   suite's Nesterov settings lr=0.01, momentum=0.9, the suite's thread count, deterministic mode on as in
   a run), three contenders on the same architecture:

   * suite: ``loop.fit`` itself, the real loop (seeded permutation, batches by indexing the whole
     dataset held as one tensor, ``optimizers.build``'s Nesterov), with ``max_steps`` = the timed steps.
     Its figure is ``Outcome.train_time_s``, fit's own stopwatch, which excludes evaluation. Evaluation
     cannot be switched off (fit evaluates before the first step and after the last one), so it is made
     as small as the API allows: no val/test splits, ``eval_train_size=1``, ``log_every`` and
     ``eval_every`` larger than the run, so there is one host sync, at the end.
   * articles' loop: ``DataLoader(MNIST(transform=ToTensor()), batch_size, shuffle=True)`` (no workers,
     as the articles; the second article's extra ``Normalize`` is left out, which favours the baseline),
     ``zero_grad(); loss = CrossEntropyLoss()(model(x), y); backward(); step()`` with
     ``torch.optim.SGD(nesterov=True)``. Timed from the iterator's creation (it shuffles, as fit's epoch
     start draws its permutation; a new one per epoch) to the last step.
   * roofline: the model's forward, loss and backward alone on eight pre-made batches, no optimizer and
     no data work: what any loop's step costs at least.

   Goals: >= 10x the articles' loop on mnist_logreg (tiny model: the loop's overhead is the cost);
   >= 70% of the roofline on mnist_mlp and mnist_cnn. Both ratios are reported for every task.
2. ``optimizer_step``: time of one ``step()`` on mnist_logreg's, mnist_mlp's and mnist_cnn's parameters
   with fixed random gradients, gd/momentum/nesterov/adam: the suite's rules (``optimizers.build``)
   against torch.optim's default (on the CPU that is torch's per-tensor for-loop, not foreach: foreach is
   the default on CUDA only), with torch's foreach and fused kernels also timed and reported. Goal: the
   suite at most 10% slower than the default.
3. ``population``: K members of one (task, optimizer) trained as one vectorized program
   (``loop.fit_members`` over a ``population.Population``, as ``python -m nesterov_bench.members`` does),
   per step, against one member alone (the goal's baseline) and, in the notes, against K runs one at a
   time. Two kinds of population: *seeds* (K seeds, each its own batches: a final stage's members) and
   *map* (one seed, a 16 learning rates x K/16 momenta grid sharing each batch: a tuning stage's, or a
   stability map's). Goals on the CPU: 16 seeds of linreg or quadratic cost at most 3x one member; a
   64-member map of quadratic at most 4x. mnist_logreg's 64-member map is reported (in a profile,
   its 64 members' matrix products and softmax alone take ~8x one member's whole step), as are
   mnist_mlp and mnist_cnn (K = 4): where vectorizing saves less than 10%, ``members`` trains one at a
   time: ``population.vectorizes`` reads each task's last row here (``members.vectorize=auto``); each row's
   notes say what it decides.
4. ``threads``: the suite's loop (as in 1) on mnist_logreg and mnist_mlp with 1 and 2 threads.
5. ``layout``: the paper profile's fmnist_cnn (its CPU size) with ``task.memory_format=channels_last``
   against the default layout: the suite's loop (as in 1), and evaluations of its validation split.
   Reported, no goal.
6. ``pooling``: the paper profile's fmnist_cnn network with the suite's max-pool (``tasks/pool.py``:
   torch's channels-last kernel on NCHW activations, the same numbers bit for bit) against the same
   network with ``nn.MaxPool2d``: a training step's forward and backward (the batch size of a run), and an
   evaluation forward pass (the evaluation batch size), on generated images. Goal: not slower (>= 1x).
7. ``precision``: ``train.precision=bf16`` (forward passes under bf16 autocast) against float32: the
   suite's loop (as in 1) on mnist_mlp and mnist_cnn at their default sizes, and on mnist_mlp and
   fmnist_cnn at the paper profile's (quarter-width networks: what switching ``paper`` to bf16 would
   give its training steps). Reported, no goal: bf16
   changes a run's numbers (its runs have their own directories), and its speed is the CPU's -- the notes
   name the CPU's bf16 instructions (``/proc/cpuinfo``), without which bf16 is emulated.

How
---
Each contender runs a fixed number of steps once untimed (warm-up: allocator, lazy init, caches), then
``repeats`` timed rounds of the same number of steps; the contenders of one measurement take turns within
each round, so a change of load on the shared machine hits them alike. A figure is the median of its
rounds. ``--quick`` runs two steps, one round: it checks the plumbing, its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torchvision
from torchvision import transforms

from nesterov_bench import optimizers
from nesterov_bench.config import Settings, resolve
from nesterov_bench.config import compose as compose_config
from nesterov_bench.env import environment
from nesterov_bench.loop import fit, fit_members
from nesterov_bench.population import SAVING, Population, build_optimizer
from nesterov_bench.rules import RULES
from nesterov_bench.store import replace_generated
from nesterov_bench.tasks import Data
from nesterov_bench.tasks.pool import MaxPool2d
from nesterov_bench.train import configure_torch

REPO = Path(__file__).resolve().parents[1]
DATA = [f"data.root={REPO / 'data'}", f"data.source={REPO.parent / 'shared' / 'data'}"]
SECTIONS = ("loop", "optimizer_step", "population", "threads", "layout", "pooling",
            "precision")  # <out>/<section>.json
#: layout: the paper profile's CNN (fmnist_cnn at its CPU size), default layout vs channels last
LAYOUT_TASK, LAYOUT_STEPS = ["task=fmnist_cnn", "profile=paper", "experiment=tune", "trial=0"], 12
POOLING_STEPS = 20  # pooling: the same CNN, the suite's max-pool vs nn.MaxPool2d (forward+backward steps)
#: timed steps per round (0.1 to 3 s per contender and round on one core; the whole run about 2.5 min)
LOOP_STEPS = {"mnist_logreg": 1500, "mnist_mlp": 60, "mnist_cnn": 12}
OPT_STEPS = {"mnist_logreg": 2000, "mnist_mlp": 200, "mnist_cnn": 60}
REPEATS = 5
LOOP_GOALS = {"mnist_logreg": ("articles' loop", 10.0), "mnist_mlp": ("roofline", 0.7),
              "mnist_cnn": ("roofline", 0.7)}
OPT_GOAL = 1.10  # suite time / torch default time at most
#: population: (task, members K, kind, timed steps per round, goal on K members' time / one member's, or
#: None). Kind "seeds": K seeds, each its own batches; "map": one seed, 16 lrs x K/16 momenta (or K lrs).
#: A task's last row decides members.vectorize=auto (population.vectorizes).
POP = [("linreg", 16, "seeds", 300, 3.0), ("quadratic", 16, "seeds", 300, 3.0),
       ("quadratic", 64, "map", 300, 4.0), ("mnist_logreg", 64, "map", 150, None),
       ("mnist_mlp", 4, "map", 12, None), ("mnist_cnn", 4, "map", 3, None)]


def timed_rounds(contenders: dict, steps: int, repeats: int) -> dict[str, list[float]]:
    """Seconds of ``fn(steps)`` per round for each contender: one warm-up call each, then ``repeats``
    rounds in which the contenders take turns. ``fn(steps)`` runs the steps and returns their time."""
    for fn in contenders.values():
        fn(steps)
    times: dict = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, fn in contenders.items():
            times[name].append(fn(steps))
    return times


def settings(task: str, device: str = "cpu", data: list[str] = DATA) -> Settings:
    return resolve(compose_config([f"task={task}", "optimizer=nesterov", f"device={device}", *data]))


def timed_budget(s: Settings, steps: int):
    """The task's TrainConfig cut to ``steps`` steps with evaluation made as small as fit allows."""
    return dataclasses.replace(s.train, epochs=10**6, max_steps=steps, log_every=10**9,
                               eval_every=10**9, evals_per_epoch=1, eval_train_size=1)


def suite_loop(s: Settings, data: Data) -> Callable[[int], float]:
    """``loop.fit`` on one model and optimizer; each call continues training for ``steps`` steps."""
    model = s.task.build_model().to(s.device)
    opt = optimizers.build(model.parameters(), s.opt)
    gen = torch.Generator().manual_seed(0)
    train_only = dataclasses.replace(data, val=None, test=None)  # fit's two evaluations see one example

    def run(steps: int) -> float:
        tc = timed_budget(s, steps)
        out = fit(s.task, model, opt, train_only, tc, batch_generator=gen, record=lambda *a: None)
        if out.status != "completed" or out.steps != steps:
            raise RuntimeError(f"fit stopped early: {out.status} after {out.steps} steps ({out.reason})")
        return out.train_time_s

    return run


def articles_loop(s: Settings) -> Callable[[int], float]:
    """The articles' loop: a DataLoader over torchvision's MNIST with ToTensor, SGD(nesterov=True)."""
    dataset = torchvision.datasets.MNIST(str(REPO / "data"), train=True, transform=transforms.ToTensor())
    loader = torch.utils.data.DataLoader(dataset, batch_size=s.train.batch_size, shuffle=True)
    model = s.task.build_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=s.opt.lr, momentum=s.opt.momentum, nesterov=True)
    criterion = torch.nn.CrossEntropyLoss()

    def run(steps: int) -> float:
        t0 = time.perf_counter()
        epochs = itertools.chain.from_iterable(itertools.repeat(loader))  # a new shuffle per epoch
        for inputs, targets in itertools.islice(epochs, steps):
            optimizer.zero_grad()
            loss = criterion(model(inputs), targets)
            loss.backward()
            optimizer.step()
        return time.perf_counter() - t0

    return run


def roofline(s: Settings, data: Data) -> Callable[[int], float]:
    """The model's forward, loss and backward on pre-made batches: no optimizer, no data work."""
    sync = torch.cuda.synchronize if s.device.type == "cuda" else (lambda: None)
    model = s.task.build_model().to(s.device)
    bs, gen = s.train.batch_size, torch.Generator().manual_seed(0)
    idx = torch.randperm(len(data.train), generator=gen)[: 8 * bs].view(8, bs)
    batches = [(data.train.x[i.to(s.device)], data.train.y[i.to(s.device)]) for i in idx]

    def run(steps: int) -> float:
        t0 = time.perf_counter()
        for x, y in itertools.islice(itertools.cycle(batches), steps):
            model.zero_grad(set_to_none=True)
            s.task.loss(model(x), y).backward()
        sync()
        return time.perf_counter() - t0

    return run


def optimizer_steppers(task: str, rule: str) -> dict[str, Callable[[int], float]]:
    """``step()`` of the suite's rule and of torch.optim's (default, foreach, fused), each on its own
    copy of the task's parameters holding the same random gradients."""
    torch.manual_seed(0)
    base = [p.detach() for p in settings(task).task.build_model().parameters()]
    grads = [torch.randn_like(p) for p in base]
    hp = {"gd": {"lr": 0.01}, "momentum": {"lr": 0.01, "momentum": 0.9},
          "nesterov": {"lr": 0.01, "momentum": 0.9}, "adam": {"lr": 1e-3}}[rule]

    def params() -> list[torch.Tensor]:
        ps = [p.clone().requires_grad_() for p in base]
        for p, g in zip(ps, grads, strict=True):
            p.grad = g.clone()
        return ps

    def torch_opt(**kw) -> torch.optim.Optimizer:
        if rule == "adam":
            return torch.optim.Adam(params(), **hp, **kw)
        return torch.optim.SGD(params(), **hp, nesterov=rule == "nesterov", **kw)

    opts = {"suite": optimizers.build(params(), {"name": rule, **hp}), "torch default": torch_opt(),
            "torch foreach": torch_opt(foreach=True)}
    try:
        opts["torch fused"] = torch_opt(fused=True)
        opts["torch fused"].step()
    except (RuntimeError, TypeError):  # no fused kernel for this optimizer on this device
        del opts["torch fused"]

    def stepper(opt: torch.optim.Optimizer) -> Callable[[int], float]:
        def run(steps: int) -> float:
            t0 = time.perf_counter()
            for _ in range(steps):
                opt.step()
            return time.perf_counter() - t0
        return run

    return {name: stepper(opt) for name, opt in opts.items()}


def row(env: dict, section: str, task: str, measurement: str, unit: str, measured: list[float],
        baseline_name: str, baseline: list[float], goal: tuple[str, float] | None = None,
        notes: str = "") -> dict:
    """One result: the median of the measured rounds, of the baseline's (timed in the same rounds), their
    ratio, and the goal on the ratio, e.g. ``(">=", 10.0)`` (None: reported only)."""
    m, b = statistics.median(measured), statistics.median(baseline)
    passed = None if goal is None else (m / b >= goal[1] if goal[0] == ">=" else m / b <= goal[1])
    return {"section": section, "task": task, "measurement": measurement,
            "device": f"{env['device_name']} ({env['cpu_count']} cores)", "device_type": "cpu",
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "unit": unit, "measured": m, "baseline_name": baseline_name, "baseline": b, "ratio": m / b,
            "goal": f"ratio {goal[0]} {goal[1]:g}" if goal else None, "pass": passed,
            "rounds": {"measured": measured, "baseline": baseline}, "notes": notes}


def bench_loop(env: dict, steps: dict[str, int], repeats: int) -> list[dict]:
    rows = []
    for task, n in steps.items():
        s = settings(task)
        data = s.task.load_data(s.cfg["data"], torch.device("cpu"))
        t = timed_rounds({"suite": suite_loop(s, data), "articles": articles_loop(s),
                          "roofline": roofline(s, data)}, n, repeats)
        rate = {k: [n / x for x in v] for k, v in t.items()}
        goal_on, goal = LOOP_GOALS[task]
        vs_art = row(env, "loop", task, "suite loop vs articles' loop", "steps/s", rate["suite"],
                     "articles' loop", rate["articles"],
                     (">=", goal) if goal_on == "articles' loop" else None,
                     f"batch {s.train.batch_size}, Nesterov, {n} steps/round")
        vs_roof = row(env, "loop", task, "suite loop vs roofline", "steps/s", rate["suite"],
                      "roofline", rate["roofline"],
                      (">=", goal) if goal_on == "roofline" else None,
                      "roofline: forward+backward only")
        rows += [vs_art, vs_roof]
        print(f"loop    {task:13s} suite {vs_art['measured']:8.1f} steps/s | articles' loop "
              f"{vs_art['baseline']:8.1f} -> {vs_art['ratio']:6.2f}x | roofline {vs_roof['baseline']:8.1f} "
              f"-> {vs_roof['ratio']:5.1%} of it", flush=True)
    return rows


def bench_optimizer(env: dict, steps: dict[str, int], repeats: int) -> list[dict]:
    rows = []
    for task, n in steps.items():
        for rule in RULES:  # the compared four
            ms = {k: [1e3 * x / n for x in v]
                  for k, v in timed_rounds(optimizer_steppers(task, rule), n, repeats).items()}
            med = {k: statistics.median(v) for k, v in ms.items()}
            others = ", ".join(f"{k.removeprefix('torch ')} {v:.3f} ms (suite {med['suite'] / v:.2f}x)"
                               for k, v in med.items() if k not in ("suite", "torch default"))
            r = row(env, "optimizer_step", task, f"{rule} step vs torch.optim", "ms/step", ms["suite"],
                    "torch.optim default", ms["torch default"],
                    ("<=", OPT_GOAL), f"torch {others}")
            rows.append(r)
            print(f"step    {task:13s} {rule:9s} suite {r['measured']:7.3f} ms | torch default "
                  f"{r['baseline']:7.3f} ms -> {r['ratio']:5.2f}x | {others}", flush=True)
    return rows


def members_loop(s: Settings, data: Data, k: int, kind: str) -> Callable[[int], float]:
    """``loop.fit_members`` on a population of ``k`` members, as ``python -m nesterov_bench.members``
    trains them; each call continues ``steps`` steps. ``seeds``: seeds 0..k-1 at lrs 1/k..1x the task's
    default; ``map``: seed 0 (one batch for all), lrs 1/16..1x the default x momenta 0.3, 0.5, 0.8, 0.9
    (the first varying fastest; all stable)."""
    pop = Population(s.task, [s.task.build_model().to(s.device) for _ in range(k)])
    if kind == "seeds":
        cfgs = [dataclasses.replace(s.opt, lr=s.opt.lr * (i + 1) / k) for i in range(k)]
    else:
        n_lr = min(k, 16)
        cfgs = [dataclasses.replace(s.opt, lr=s.opt.lr * (i % n_lr + 1) / n_lr,
                                    momentum=(0.3, 0.5, 0.8, 0.9)[(i // n_lr) % 4]) for i in range(k)]
    opt = build_optimizer(pop, cfgs)
    gens = [torch.Generator().manual_seed(i if kind == "seeds" else 0) for i in range(k)]
    train_only = dataclasses.replace(data, val=None, test=None)

    def run(steps: int) -> float:
        tc = timed_budget(s, steps)
        out = fit_members(s.task, pop, opt, train_only, tc, batch_generators=gens,
                          records=[lambda *a: None] * k)
        if any(o.steps != steps for o in out):
            raise RuntimeError(f"fit_members stopped early: {[o.reason for o in out]}")
        return out[0].train_time_s

    return run


def bench_population(env: dict, plan: list[tuple], repeats: int) -> list[dict]:
    """K members as one vectorized program vs one member alone (the goal's baseline) and vs K runs one
    at a time (K x one member: what vectorizing must beat to be used)."""
    rows = []
    for task, k, kind, n, goal in plan:
        s = settings(task)
        data = s.task.load_data(s.cfg["data"], torch.device("cpu"))
        t = timed_rounds({"members": members_loop(s, data, k, kind), "one": suite_loop(s, data)}, n, repeats)
        ms = {name: [1e3 * x / n for x in v] for name, v in t.items()}
        one = statistics.median(ms["one"])
        vs_separate = statistics.median(ms["members"]) / (k * one)
        what = f"{k} members ({'one seed, a grid' if kind == 'map' else f'{k} seeds'}) vs 1 member"
        r = row(env, "population", task, what, "ms/step", ms["members"],
                "1 member", ms["one"], ("<=", goal) if goal else None,
                f"vs {k} runs one at a time: {vs_separate:.2f}x their time; members.vectorize=auto: "
                + ("vectorized" if vs_separate <= 1 - SAVING else "one at a time"))
        rows.append(r)
        print(f"members {task:13s} {k} {kind:5s} {r['measured']:8.3f} ms/step | 1 member {one:8.3f} ms/step "
              f"-> {r['ratio']:5.2f}x | vs {k} one at a time {vs_separate:5.2f}x", flush=True)
    return rows


def with_threads(run: Callable[[int], float], k: int) -> Callable[[int], float]:
    def timed(steps: int) -> float:
        torch.set_num_threads(k)
        return run(steps)
    return timed


def bench_threads(env: dict, steps: dict[str, int], repeats: int) -> list[dict]:
    rows = []
    for task, n in steps.items():
        s = settings(task)
        run = suite_loop(s, s.task.load_data(s.cfg["data"], torch.device("cpu")))
        t = timed_rounds({1: with_threads(run, 1), 2: with_threads(run, 2)}, n, repeats)
        rate = {k: [n / x for x in v] for k, v in t.items()}
        spread = "; ".join(f"{k} thread(s): {min(v):.1f}-{max(v):.1f}" for k, v in rate.items())
        r = {**row(env, "threads", task, "suite loop, 2 threads vs 1", "steps/s", rate[2], "1 thread",
                   rate[1], None, f"rounds {spread}"), "threads": 2}
        torch.set_num_threads(s.cfg["threads"])
        rows.append(r)
        print(f"threads {task:13s} 1 thread {r['baseline']:8.1f} steps/s | 2 threads {r['measured']:8.1f} "
              f"steps/s -> {r['ratio']:5.2f}x ({spread})", flush=True)
    return rows


def evaluation(s: Settings, data: Data) -> Callable[[int], float]:
    """``task.evaluate`` of a fresh model on the validation split, ``n`` times (a run's evaluations)."""
    model = s.task.build_model()

    def run(n: int) -> float:
        t0 = time.perf_counter()
        for _ in range(n):
            s.task.evaluate(model, data.val, s.train.eval_batch_size, data)
        return time.perf_counter() - t0
    return run


def bench_layout(env: dict, steps: int, repeats: int) -> list[dict]:
    """task.memory_format=channels_last against the default layout on the paper profile's CNN: training
    steps (the suite loop, as in 1) and evaluations of the validation split. Reported, no goal: a profile
    that turns it on changes its runs' numbers within float rounding, a deviation to log."""
    rows = []
    both = {f: settings("fmnist_cnn", data=[*DATA, *LAYOUT_TASK, f"task.memory_format={f}"])
            for f in ("null", "channels_last")}
    data = both["null"].task.load_data(both["null"].cfg["data"], torch.device("cpu"))
    for what, make, n, unit in (("training steps", suite_loop, steps, "steps/s"),
                                ("evaluations of the validation split", evaluation, max(1, steps // 6),
                                 "evals/s")):
        t = timed_rounds({f: make(s, data) for f, s in both.items()}, n, repeats)
        rate = {f: [n / x for x in v] for f, v in t.items()}
        r = row(env, "layout", "fmnist_cnn", f"{what}, channels last vs default", unit, rate["channels_last"],
                "default layout", rate["null"], None,
                f"paper profile's size (width {both['null'].cfg['task']['width']:g}, batch "
                f"{both['null'].train.batch_size}, {len(data.val)} validation images)")
        rows.append(r)
        print(f"layout  fmnist_cnn    {what}: default {r['baseline']:8.2f} {unit} | channels last "
              f"{r['measured']:8.2f} -> {r['ratio']:5.2f}x", flush=True)
    return rows


def bf16_instructions() -> str:
    """The CPU's bf16 instruction-set flags (avx512_bf16, amx_bf16, ...), from /proc/cpuinfo."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        flags = next(line for line in lines if line.startswith("flags"))
    except (OSError, StopIteration):
        return "unknown"
    return ", ".join(sorted(f for f in flags.split(":", 1)[1].split() if "bf16" in f)) or "none"


#: A task at the paper profile's size (its budget file sets the quarter-width networks and data subsets).
PAPER_SIZE = ["profile=paper", "experiment=tune", "trial=0"]


def bench_precision(env: dict, steps: dict[str, int], repeats: int) -> list[dict]:
    """train.precision=bf16 against float32: training steps of the suite's loop (as in 1), at the tasks'
    default sizes (``steps``: task -> steps per round) and at the paper profile's."""
    rows, has = [], bf16_instructions()
    cases = [(task, [], n, "default size") for task, n in steps.items()]
    paper = {"mnist_mlp": steps["mnist_mlp"], "fmnist_cnn": steps["mnist_cnn"]}
    cases += [(task, PAPER_SIZE, n, "paper profile's size") for task, n in paper.items()]
    for task, size, n, label in cases:
        both = {p: settings(task, data=[*DATA, *size, f"train.precision={p}"]) for p in ("null", "bf16")}
        data = both["null"].task.load_data(both["null"].cfg["data"], torch.device("cpu"))
        t = timed_rounds({p: suite_loop(s, data) for p, s in both.items()}, n, repeats)
        rate = {p: [n / x for x in v] for p, v in t.items()}
        r = row(env, "precision", task, f"training steps, bf16 autocast vs float32 ({label})", "steps/s",
                rate["bf16"], "float32", rate["null"], None,
                f"batch {both['null'].train.batch_size}; {env['device_name']}, bf16 instructions: {has}")
        rows.append(r)
        print(f"precision {task:11s} {label:20s} float32 {r['baseline']:8.2f} steps/s | bf16 "
              f"{r['measured']:8.2f} -> {r['ratio']:5.2f}x ({has})", flush=True)
    return rows


def bench_pooling(env: dict, steps: int, repeats: int) -> list[dict]:
    """The paper profile's fmnist_cnn with the suite's max-pool against the same layers (shared weights)
    with nn.MaxPool2d: training steps (forward and backward) and evaluation forward passes."""
    s = settings("fmnist_cnn", data=[*DATA, *LAYOUT_TASK])
    torch.manual_seed(0)
    suite = s.task.build_model()
    plain = torch.nn.Sequential(*(torch.nn.MaxPool2d(m.kernel_size, m.stride, m.padding)
                                  if isinstance(m, MaxPool2d) else m for m in suite))
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(s.train.batch_size, *s.task.shape, generator=g), torch.arange(s.train.batch_size) % 10
    x_eval = torch.randn(s.train.eval_batch_size, *s.task.shape, generator=g)

    def training(model: torch.nn.Module) -> Callable[[int], float]:
        def run(n: int) -> float:
            t0 = time.perf_counter()
            for _ in range(n):
                model.zero_grad(set_to_none=True)
                s.task.loss(model(x), y).backward()
            return time.perf_counter() - t0
        return run

    def evaluating(model: torch.nn.Module) -> Callable[[int], float]:
        def run(n: int) -> float:
            t0 = time.perf_counter()
            with torch.no_grad():
                for _ in range(n):
                    model(x_eval)
            return time.perf_counter() - t0
        return run

    rows = []
    for what, make, batch in (("training steps", training, s.train.batch_size),
                              ("evaluation passes", evaluating, s.train.eval_batch_size)):
        t = timed_rounds({"suite": make(suite), "torch": make(plain)}, steps, repeats)
        rate = {k: [steps / v for v in vs] for k, vs in t.items()}
        r = row(env, "pooling", "fmnist_cnn", f"{what}, suite's max-pool vs nn.MaxPool2d", "passes/s",
                rate["suite"], "nn.MaxPool2d", rate["torch"], (">=", 1.0),
                f"paper profile's network (width {s.cfg['task']['width']:g}), batch {batch}, the same "
                "numbers bit for bit")
        rows.append(r)
        print(f"pooling fmnist_cnn    {what}: nn.MaxPool2d {r['baseline']:8.2f} passes/s | suite "
              f"{r['measured']:8.2f} -> {r['ratio']:5.2f}x", flush=True)
    return rows


def _fmt(v: float) -> str:
    return f"{v:.3f}" if v < 10 else f"{v:.1f}"


def markdown(rows: list[dict]) -> str:
    """The README table, from the JSON rows alone."""
    lines = ["| section | task | measurement | threads | suite | baseline | ratio | goal | pass | notes |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        passed = {True: "yes", False: "**no**", None: "-"}[r["pass"]]
        lines.append(f"| {r['section']} | {r['task']} | {r['measurement']} | {r['threads']} | "
                     f"{_fmt(r['measured'])} {r['unit']} | {_fmt(r['baseline'])} ({r['baseline_name']}) | "
                     f"{r['ratio']:.2f}x | {r['goal'] or 'report'} | {passed} | {r['notes']} |")
    device = {(r["device"], r["torch"]) for r in rows}
    foot = "; ".join(f"{d}, torch {t}" for d, t in sorted(device))
    return "\n".join(lines) + f"\n\nMeasured by `make bench` on {foot}.\n"


def read_rows(out: Path) -> list[dict]:
    return [r for section in SECTIONS for r in json.loads((out / f"{section}.json").read_text())]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="two steps, one round: plumbing only (tests)")
    ap.add_argument("--out", type=Path, default=REPO / "results" / "bench")
    ap.add_argument("--sections", default=",".join(SECTIONS),
                    help=f"comma list of sections to run (default all: {','.join(SECTIONS)}); the table is "
                         "made from every section's file in --out")
    ap.add_argument("--readme", type=Path, default=None,
                    help="also put the table between this README's generated:bench markers")
    args = ap.parse_args()
    loop_steps, opt_steps, pop, repeats = LOOP_STEPS, OPT_STEPS, POP, REPEATS
    if args.quick:
        loop_steps, opt_steps, repeats = dict.fromkeys(LOOP_STEPS, 2), dict.fromkeys(OPT_STEPS, 2), 1
        pop = [(task, 2, kind, 2, goal) for task, _, kind, _, goal in POP]
    s = settings("mnist_logreg")
    configure_torch(s)  # threads (the suite's per-run setting: 1) and deterministic mode, as a run sets them
    env = environment(torch.device("cpu"))
    print(f"{env['device_name']} ({env['cpu_count']} cores), torch {torch.__version__}, "
          f"{torch.get_num_threads()} thread(s), median of {repeats} round(s) after a warm-up", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    thread_steps = {k: loop_steps[k] for k in ("mnist_logreg", "mnist_mlp")}
    precision_steps = {k: loop_steps[k] for k in ("mnist_mlp", "mnist_cnn")}
    benches = {"loop": lambda: bench_loop(env, loop_steps, repeats),
               "optimizer_step": lambda: bench_optimizer(env, opt_steps, repeats),
               "population": lambda: bench_population(env, pop, repeats),
               "threads": lambda: bench_threads(env, thread_steps, repeats),
               "layout": lambda: bench_layout(env, 2 if args.quick else LAYOUT_STEPS, repeats),
               "pooling": lambda: bench_pooling(env, 2 if args.quick else POOLING_STEPS, repeats),
               "precision": lambda: bench_precision(env, precision_steps, repeats)}
    chosen = args.sections.split(",")
    if unknown := set(chosen) - set(SECTIONS):
        ap.error(f"unknown section {sorted(unknown)[0]!r}; choose from {', '.join(SECTIONS)}")
    results = {name: benches[name]() for name in SECTIONS if name in chosen}
    for section, rows in results.items():
        (args.out / f"{section}.json").write_text(json.dumps(rows, indent=2) + "\n")
    table = markdown(read_rows(args.out))
    (args.out / "README_table.md").write_text(table)
    print("\n" + table)
    print(f"wrote {', '.join(f'{s}.json' for s in SECTIONS)} and README_table.md in {args.out}")
    if args.readme and replace_generated(args.readme, "bench", table):
        print(f"updated the bench table in {args.readme}")


if __name__ == "__main__":
    main()

"""make gpu-check: what only a GPU can answer, in one run of a few minutes on one CUDA GPU.

    python3 scripts/gpu_check.py [--out results/bench] [--budget-s 420] [--data-source gpu_bundle/data]

Sections, each written to ``<out>/gpu.json`` as soon as it finishes (a section that fails records its
error and the next one runs):

1. ``correctness``: through the suite's own run path (``train.run_all``, ``device=cuda``,
   deterministic algorithms on as in every run): the same config and seed trained twice give bit-identical
   metrics (mnist_cnn, mnist_mlp), and, for contrast, how far two runs part with ``deterministic=false``
   (``determinism_off``); K members trained as one vectorized population equal the same runs
   trained one at a time, within float tolerance (quadratic, mnist_mlp).
2. ``per_step``: milliseconds per training step of every task with data (``loop.fit_members``, as a run
   trains, evaluation made as small as the loop allows) at K = 1, 10 and 16 members; goal: 16 mnist_mlp
   members within 2x one member. The MLP and the CNNs also at ``train.precision=bf16``, one member, against
   their float32 step.
3. ``throughput``: fmnist_cnn (DeepOBS 2c2d, batch 128) forward + backward + the suite's Nesterov step
   on a resident batch, eager, under a captured CUDA graph and under ``torch.compile``, in float32 (IEEE,
   no TF32) and bf16 autocast: samples/s, and achieved FLOP/s as a share of this GPU's matrix-product peak
   measured in the same process (8192^3 products in float32 and bf16).
4. ``baseline``: DeepOBS's fmnist_2c2d baseline (batch 128, 100 epochs; SGD momentum 92.38% and Adam
   92.29% test accuracy) through the run path, each optimizer's three learning rates as one population;
   the epochs are cut to what the time left allows, and the report says so.

Runs without W&B (``wandb.mode=disabled``; wandb is never imported). Needs CUDA: without it, one line
and exit status 2 (``--allow-cpu --quick`` runs the plumbing on a CPU, for tests).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

import torch  # noqa: E402

#: DeepOBS's fmnist_2c2d baselines (Schneider et al. 2019, batch 128, 100 epochs), test accuracy.
DEEPOBS = {"momentum": 0.9238, "adam": 0.9229}
BASELINE_LRS = {"momentum": [0.003, 0.01, 0.03], "adam": [1e-4, 3e-4, 1e-3]}
PER_STEP_TASKS = ("linreg", "quadratic", "mnist_logreg", "mnist_mlp", "mnist_cnn", "fmnist_cnn")
MEMBERS = (1, 10, 16)
BF16_TASKS = ("mnist_mlp", "mnist_cnn", "fmnist_cnn")  # per_step also times these at train.precision=bf16


class Report:
    """The sections' results, rewritten to ``path`` after each one; a clock against the budget."""

    def __init__(self, path: Path, budget_s: float):
        self.path, self.budget_s, self.t0 = path, budget_s, time.perf_counter()
        self.data: dict = {"sections": {}}

    def left(self) -> float:
        return self.budget_s - (time.perf_counter() - self.t0)

    def section(self, name: str, fn, *args) -> None:
        t = time.perf_counter()
        print(f"--- {name} ({self.left():.0f} s of the budget left)", flush=True)
        try:
            result = {"ok": True, **fn(*args)}
        except Exception as e:  # noqa: BLE001 -- a failed section is reported, the next one runs
            traceback.print_exc()
            result = {"ok": False, "error": f"{type(e).__name__}: {e}".splitlines()[0]}
        result["seconds"] = time.perf_counter() - t
        self.data["sections"][name] = result
        self.path.write_text(json.dumps(self.data, indent=2, default=str) + "\n")


#: --quick: image tasks on a few hundred images (the plumbing, on a CPU)
QUICK_IMAGES = ["task.train_size=512", "task.val_size=256", "task.test_size=256"]


def overrides(args, task: str, optimizer: str = "nesterov", *extra: str) -> list[str]:
    small = QUICK_IMAGES if args.quick and task.startswith(("mnist", "fmnist")) else []
    return [f"task={task}", f"optimizer={optimizer}", f"device={args.device}", "wandb.mode=disabled",
            f"data.root={args.data_root}", f"data.source={args.data_source}", "progress=false", *small,
            *extra]


def settings(args, task: str, optimizer: str = "nesterov", *extra: str):
    from nesterov_bench.config import compose, resolve
    return resolve(compose(overrides(args, task, optimizer, *extra)))


def metrics(record: dict) -> list[float]:
    import pandas as pd
    return pd.read_parquet(Path(record["run_dir"]) / "metrics.parquet").value.tolist()


def correctness(args) -> dict:
    from nesterov_bench.config import resolve
    from nesterov_bench.members import member_configs
    from nesterov_bench.train import run_all
    steps = 20 if args.quick else 300
    out: dict = {"determinism": {}, "determinism_off": {}, "members_equal_single": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for (key, det), task in itertools.product((("determinism", "true"), ("determinism_off", "false")),
                                                  ("mnist_cnn", "mnist_mlp")):
            runs = [run_all([settings(args, task, "nesterov", f"results_dir={tmp}/{key}{i}", "seed=0",
                                      f"deterministic={det}", f"train.max_steps={steps}",
                                      "train.evals_per_epoch=4")])[0]
                    for i in (0, 1)]
            a, b = (metrics(r) for r in runs)
            out[key][task] = {"values": len(a), "identical": a == b,
                              "max_abs_diff": max(abs(x - y) for x, y in zip(a, b, strict=True))}
            print(f"{key} {task}: {out[key][task]}", flush=True)
        for task in ("quadratic", "mnist_mlp"):
            base = settings(args, task, "nesterov", f"train.max_steps={steps}").cfg
            cfg = {**base, "members": {**base["members"], "seeds": [0, 1, 2, 3]}}
            recs = {mode: run_all([resolve({**c, "results_dir": f"{tmp}/members-{mode}"})
                                   for c in member_configs(cfg)], vectorized=mode) for mode in (True, False)}
            out["members_equal_single"][task] = {"members": 4, "steps": steps,
                                                 **compare(recs[True], recs[False])}
            print(f"members {task}: {out['members_equal_single'][task]}", flush=True)
    return out


def compare(vectorized: list[dict], single: list[dict]) -> dict:
    """Member-by-member metrics of two sets of runs, against the CPU tests' tolerance
    (tests/test_population.py: |a - b| <= 1e-6 + 2e-5 |b|), per metric."""
    import pandas as pd

    def frame(recs: list[dict]) -> pd.DataFrame:
        return pd.concat(pd.read_parquet(Path(r["run_dir"]) / "metrics.parquet").assign(member=k)
                         for k, r in enumerate(recs))

    keys = ["member", "step", "split", "metric"]
    both = frame(vectorized).merge(frame(single), on=keys, suffixes=("_v", ""))
    both["abs"] = (both.value_v - both.value).abs()
    both["beyond"] = both["abs"] > 1e-6 + 2e-5 * both.value.abs()
    per_metric = {}
    for (split, metric), g in both.groupby(["split", "metric"]):
        per_metric[f"{split}/{metric}"] = {
            "max_abs_diff": float(g["abs"].max()),
            "max_rel_diff": float((g["abs"] / g.value.abs().clip(lower=1e-30)).max()),
            "first_step_beyond": int(g.step[g.beyond].min()) if g.beyond.any() else None,
            "value_range": [float(g.value.min()), float(g.value.max())]}
    return {"values": len(both), "within_cpu_tolerance": not both.beyond.any(), "per_metric": per_metric}


def per_step(args) -> dict:
    import bench
    rows = []
    ks = (1, 2) if args.quick else MEMBERS
    repeats = 1 if args.quick else 5
    for task, precision in [*((t, None) for t in PER_STEP_TASKS), *((t, "bf16") for t in BF16_TASKS)]:
        s = settings(args, task, "nesterov", *([f"train.precision={precision}"] if precision else []))
        data = s.task.load_data(s.cfg["data"], s.device)
        steps = 3 if args.quick else 60
        name = f"{task}{f' {precision}' if precision else ''}"
        for k in ks if precision is None else (1,):
            fn = bench.suite_loop(s, data) if k == 1 else bench.members_loop(s, data, k, "map")
            row = {"task": task, "members": k, **({"precision": precision} if precision else {})}
            try:
                times = bench.timed_rounds({"x": fn}, steps, repeats)["x"]
                ms = 1e3 * statistics.median(times) / steps
                rows.append({**row, "ms_per_step": ms, "batch": s.train.batch_size})
                print(f"per step {name:18s} K={k:2d}: {ms:8.3f} ms", flush=True)
            except Exception as e:  # noqa: BLE001 -- e.g. out of memory: report it, go on
                rows.append({**row, "error": f"{type(e).__name__}: {e}".splitlines()[0]})
                print(f"per step {name:18s} K={k:2d}: {rows[-1]['error']}", flush=True)
        del data
    one = {r["task"]: r["ms_per_step"] for r in rows
           if r["members"] == 1 and "ms_per_step" in r and "precision" not in r}
    for r in rows:
        if "ms_per_step" in r and r["task"] in one:
            r["vs_float32" if "precision" in r else "vs_one_member"] = r["ms_per_step"] / one[r["task"]]
    mlp16 = next((r.get("vs_one_member") for r in rows
                  if r["task"] == "mnist_mlp" and r["members"] == max(ks) and "precision" not in r), None)
    return {"rows": rows, "goal": "16 mnist_mlp members <= 2x one member",
            "mnist_mlp_16_vs_1": mlp16, "pass": None if mlp16 is None else mlp16 <= 2.0}


def matmul_peak(device: torch.device, dtype: torch.dtype, n: int) -> float:
    """FLOP/s of an n x n x n matrix product (mean of 10 after 3 warm-ups)."""
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    for _ in range(3):
        a @ b
    sync(device)
    t = time.perf_counter()
    for _ in range(10):
        a @ b
    sync(device)
    return 10 * 2 * n**3 / (time.perf_counter() - t)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def throughput(args) -> dict:
    from torch.utils.flop_counter import FlopCounterMode

    from nesterov_bench import optimizers
    from nesterov_bench.env import set_fp32_precision
    from nesterov_bench.tasks.vision import two_conv_two_dense
    device = torch.device(args.device)
    set_fp32_precision()
    n = 1024 if args.quick else 8192
    peak = {"float32": matmul_peak(device, torch.float32, n), "bf16": matmul_peak(device, torch.bfloat16, n)}
    print(f"matmul peak: float32 {peak['float32'] / 1e12:.1f} TFLOP/s, "
          f"bf16 {peak['bf16'] / 1e12:.1f} TFLOP/s", flush=True)
    batch = 128
    x = torch.randn(batch, 1, 28, 28, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    rows = []
    for precision in ("float32", "bf16"):
        for mode in ("eager", "cuda_graph", "compile"):
            if mode == "cuda_graph" and device.type != "cuda":
                continue
            torch.manual_seed(0)
            model = two_conv_two_dense().to(device)
            opt = optimizers.build(model.parameters(), {"name": "nesterov", "lr": 0.01, "momentum": 0.9})
            net = torch.compile(model) if mode == "compile" else model

            def step(net=net, opt=opt, precision=precision):
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
                    loss = torch.nn.functional.cross_entropy(net(x), y)
                loss.backward()
                opt.step()
                return loss

            try:
                t_setup = time.perf_counter()
                for p in model.parameters():  # gradients stay allocated: a captured graph reuses them
                    p.grad = torch.zeros_like(p)
                if mode == "cuda_graph":
                    side = torch.cuda.Stream()
                    side.wait_stream(torch.cuda.current_stream())
                    with torch.cuda.stream(side):
                        for _ in range(3):
                            step()
                    torch.cuda.current_stream().wait_stream(side)
                    graph = torch.cuda.CUDAGraph()
                    with torch.cuda.graph(graph):
                        step()
                    run = graph.replay
                else:
                    run = step
                    for _ in range(3):
                        step()
                sync(device)
                setup_s = time.perf_counter() - t_setup
                iters = 5 if args.quick else 300
                t = time.perf_counter()
                for _ in range(iters):
                    run()
                sync(device)
                per = (time.perf_counter() - t) / iters
                with FlopCounterMode(display=False) as fc:
                    step()
                flops = fc.get_total_flops()
                row = {"precision": precision, "mode": mode, "ms_per_step": 1e3 * per,
                       "samples_per_s": batch / per, "flop_per_step": flops, "tflop_s": flops / per / 1e12,
                       "share_of_peak": flops / per / peak[precision], "setup_s": setup_s}
            except Exception as e:  # noqa: BLE001 -- one mode failing must not hide the others
                row = {"precision": precision, "mode": mode,
                       "error": f"{type(e).__name__}: {e}".splitlines()[0]}
            rows.append(row)
            print(f"throughput {precision:7s} {mode:10s}: " + (
                f"{row['samples_per_s']:10.0f} samples/s, {row['tflop_s']:6.2f} TFLOP/s "
                f"({row['share_of_peak']:.2%} of peak), set-up {row['setup_s']:.1f} s"
                if "error" not in row else row["error"]), flush=True)
    return {"task": "fmnist_cnn (2c2d)", "batch": batch, "peak_flop_s": peak, "rows": rows}


def baseline(args, report: Report) -> dict:
    from nesterov_bench.config import resolve
    from nesterov_bench.members import member_configs
    from nesterov_bench.train import run_all
    # probe the speed with 50 steps, then as many epochs (up to 100) as the time left allows
    epochs = 1 if args.quick else 100
    results: dict = {"deepobs": DEEPOBS, "optimizers": {}}
    with tempfile.TemporaryDirectory() as tmp:
        probe = settings(args, "fmnist_cnn", "momentum", "train.max_steps=50", f"results_dir={tmp}/probe")
        rec = run_all([probe])[0]
        per_step = rec["train_time_s"] / max(rec["steps"], 1)  # the loop's own clock: training steps only
        steps_per_epoch = -(-50000 // 128)
        # 2 optimizers; their 3-member populations (and evaluations) at most 2x one run's step
        affordable = int(0.85 * report.left() / 2 / (2 * per_step * steps_per_epoch))
        epochs = max(1, min(epochs, affordable))
        results.update(epochs=epochs, epochs_wanted=100, probe_ms_per_step=1e3 * per_step)
        print(f"baseline: {1e3 * per_step:.2f} ms/step (one run) -> {epochs} epochs", flush=True)
        for opt, lrs in BASELINE_LRS.items():
            extra = [f"train.epochs={epochs}", "train.evals_per_epoch=1", f"results_dir={tmp}/{opt}",
                     *(["train.max_steps=20"] if args.quick else [])]
            base = settings(args, "fmnist_cnn", opt, *extra).cfg
            cfg = {**base, "members": {**base["members"], "lrs": lrs}}
            recs = run_all([resolve(c) for c in member_configs(cfg)], vectorized=True)
            runs = [{"lr": r["config"]["optimizer"]["lr"], "status": r["status"],
                     "val_accuracy": r["final"].get("val/accuracy"),
                     "test_accuracy": r["final"].get("test/accuracy"), "train_time_s": r.get("train_time_s")}
                    for r in recs]
            best = max(runs, key=lambda r: r["val_accuracy"] or -1)
            results["optimizers"][opt] = {"runs": runs, "chosen_lr": best["lr"],
                                          "test_accuracy": best["test_accuracy"],
                                          "gap_to_deepobs": best["test_accuracy"] - DEEPOBS[opt]}
            print(f"baseline {opt}: {runs}", flush=True)
    return results


def markdown(report: dict, correctness: dict | None = None) -> str:
    """The README's GPU block, from gpu.json alone (``correctness``: a later run's section, if any)."""
    env, sec = report["environment"], report["sections"]
    corr = correctness or sec.get("correctness", {})
    lines = [f"Measured by `make gpu-check` on one {env['device_name']} (torch {env['torch']}, "
             f"float32 without TF32 unless marked bf16), {report['total_s']:.0f} s.", ""]
    for key, how in (("determinism", ""), ("determinism_off", " with deterministic=false")):
        for task, d in corr.get(key, {}).items():
            lines.append(f"- same config and seed twice{how}, {task}: "
                         + ("bit-identical" if d["identical"] else f"differ by up to {d['max_abs_diff']:.3g}")
                         + f" ({d['values']} values)")
    for task, d in corr.get("members_equal_single", {}).items():
        head = f"- {d['members']} members vectorized vs one at a time, {task}, {d['steps']} steps: "
        beyond = {m: v for m, v in d.get("per_metric", {}).items() if v["first_step_beyond"] is not None}
        if not beyond:
            lines.append(head + "equal within the CPU tests' tolerance (|a - b| <= 1e-6 + 2e-5 |b|)")
            continue
        first = min(beyond.items(), key=lambda kv: kv[1]["first_step_beyond"])
        worst = ", ".join(f"{m} {v['max_abs_diff']:.2g} ({v['max_rel_diff']:.2%})" for m, v in beyond.items()
                          if m.startswith("test/"))
        lines.append(head + f"part beyond the CPU tests' tolerance from step {first[1]['first_step_beyond']} "
                     f"({first[0]}); largest differences {worst or '-'}")
    if "rows" in sec.get("per_step", {}):
        rows = sec["per_step"]["rows"]
        ks = sorted({r["members"] for r in rows})
        lines += ["", "| task | " + " | ".join(f"K={k} ms/step (x one member)" for k in ks) + " |",
                  "|---|" + "---|" * len(ks)]
        for task, precision in dict.fromkeys((r["task"], r.get("precision")) for r in rows):
            cells = []
            for k in ks:
                r = next((r for r in rows if (r["task"], r.get("precision"), r["members"])
                          == (task, precision, k)), {})
                versus = (f"{r.get('vs_one_member', 1):.2f}x" if not precision
                          else f"{r.get('vs_float32', math.nan):.2f}x float32")
                ms = r.get("ms_per_step")
                cells.append(f"{ms:.2f} ({versus})" if ms is not None else r.get("error", "-"))
            lines.append(f"| {task}{f' ({precision})' if precision else ''} | " + " | ".join(cells) + " |")
        p = sec["per_step"]
        lines.append(f"\nGoal {p['goal']}: {p['mnist_mlp_16_vs_1']:.2f}x, "
                     + ("met." if p["pass"] else "missed."))
    if "rows" in sec.get("throughput", {}):
        t = sec["throughput"]
        peak = ", ".join(f"{k} {v / 1e12:.0f} TFLOP/s" for k, v in t["peak_flop_s"].items())
        lines += ["", f"{t['task']}, batch {t['batch']}, forward + backward + Nesterov step (peak measured "
                  f"here by 8192^3 products: {peak}):", "",
                  "| precision | mode | samples/s | TFLOP/s | share of peak |", "|---|---|---|---|---|"]
        for r in t["rows"]:
            lines.append(f"| {r['precision']} | {r['mode']} | " + (
                f"{r['samples_per_s']:,.0f} | {r['tflop_s']:.2f} | {r['share_of_peak']:.1%} |"
                if "error" not in r else f"{r['error']} | | |"))
    if "optimizers" in sec.get("baseline", {}):
        b = sec["baseline"]
        lines += ["", f"DeepOBS fmnist_2c2d baseline (batch 128; {b['epochs']} of its {b['epochs_wanted']} "
                  "epochs, as the time allowed; lr chosen by validation accuracy from three):", ""]
        for opt, d in b["optimizers"].items():
            lines.append(f"- {opt}: lr {d['chosen_lr']:g}, test accuracy {d['test_accuracy']:.2%} vs DeepOBS "
                         f"{b['deepobs'][opt]:.2%} ({100 * d['gap_to_deepobs']:+.2f} points)")
    return "\n".join(lines) + "\n"


def write_readme(readme: Path, table: str) -> None:
    from nesterov_bench.store import replace_generated

    if not replace_generated(readme, "gpu", table):
        raise SystemExit(f"error: {readme} has no generated:gpu markers")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=REPO / "results" / "bench")
    ap.add_argument("--budget-s", type=float, default=420.0, help="the baseline's epochs fit in what is left")
    ap.add_argument("--data-root", default=str(REPO / "data"))
    bundled = REPO / "gpu_bundle" / "data"  # make gpu-bundle's copy; else the suite's offline mirror
    ap.add_argument("--data-source",
                    default=str(bundled if bundled.is_dir() else REPO.parent / "shared" / "data"))
    ap.add_argument("--sections", default="correctness,per_step,throughput,baseline")
    ap.add_argument("--allow-cpu", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--quick", action="store_true", help="a few steps each: plumbing only")
    ap.add_argument("--render", type=Path, default=None, metavar="GPU_JSON",
                    help="no GPU work: write the README's GPU block (--readme) from this gpu.json")
    ap.add_argument("--correctness", type=Path, default=None, metavar="JSON",
                    help="with --render: take the correctness section from this later run's file")
    ap.add_argument("--readme", type=Path, default=None)
    args = ap.parse_args()
    if args.render:
        later = args.correctness and json.loads(args.correctness.read_text())["sections"]["correctness"]
        table = markdown(json.loads(args.render.read_text()), later)
        print(table)
        if args.readme:
            write_readme(args.readme, table)
        return
    if not torch.cuda.is_available() and not args.allow_cpu:
        print("error: make gpu-check needs a CUDA GPU and torch sees none here", file=sys.stderr)
        sys.exit(2)
    args.device = "cuda" if torch.cuda.is_available() else "cpu"
    args.out.mkdir(parents=True, exist_ok=True)
    report = Report(args.out / ("gpu.json" if args.device == "cuda" else "gpu_plumbing.json"), args.budget_s)
    from nesterov_bench.env import environment, set_fp32_precision
    if args.device == "cuda":
        set_fp32_precision()
    report.data["environment"] = environment(torch.device(args.device))
    print(f"{report.data['environment']['device_name']}, torch {torch.__version__}", flush=True)
    chosen = args.sections.split(",")
    for name, fn, fargs in (("correctness", correctness, (args,)), ("per_step", per_step, (args,)),
                            ("throughput", throughput, (args,)), ("baseline", baseline, (args, report))):
        if name in chosen:
            report.section(name, fn, *fargs)
    report.data["total_s"] = time.perf_counter() - report.t0
    report.path.write_text(json.dumps(report.data, indent=2, default=str) + "\n")
    print(f"wrote {report.path} in {report.data['total_s']:.0f} s")


if __name__ == "__main__":
    main()

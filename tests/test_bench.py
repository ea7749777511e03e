"""make bench's plumbing, not its speeds (no timed unit tests): `scripts/bench.py --quick` writes every
section's rows with their baseline, ratio and goal, and the Markdown table is rendered from that JSON."""

import importlib.util
import json
import math
import subprocess
import sys

import pytest

from .conftest import REPO

KEYS = {"section", "task", "measurement", "device", "device_type", "torch", "threads", "unit", "measured",
        "baseline_name", "baseline", "ratio", "goal", "pass", "rounds", "notes"}


def _bench_module():
    spec = importlib.util.spec_from_file_location("bench", REPO / "scripts" / "bench.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_bench_quick_writes_rows_and_the_table_from_them(tmp_path):
    proc = subprocess.run([sys.executable, "scripts/bench.py", "--quick", "--out", str(tmp_path)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    bench = _bench_module()
    rows = []
    for section in bench.SECTIONS:
        section_rows = json.loads((tmp_path / f"{section}.json").read_text())
        assert section_rows and {r["section"] for r in section_rows} == {section}
        rows += section_rows
    for r in rows:
        assert set(r) == KEYS, r
        assert r["device"] and r["torch"] and r["threads"] >= 1 and r["measured"] > 0 and r["baseline"] > 0
        assert math.isclose(r["ratio"], r["measured"] / r["baseline"])
        assert (r["goal"] is None) == (r["pass"] is None)  # a goal is always judged
        assert r["pass"] in (True, False, None)
    goals = {(r["task"], r["measurement"]): r["goal"] for r in rows}
    assert goals["mnist_logreg", "suite loop vs articles' loop"] == "ratio >= 10"
    assert goals["mnist_mlp", "suite loop vs roofline"] == "ratio >= 0.7"
    assert goals["mnist_cnn", "suite loop vs roofline"] == "ratio >= 0.7"
    assert goals["mnist_mlp", "nesterov step vs torch.optim"] == "ratio <= 1.1"
    assert goals["linreg", "2 members (2 seeds) vs 1 member"] == "ratio <= 3"
    assert goals["quadratic", "2 members (one seed, a grid) vs 1 member"] == "ratio <= 4"
    assert goals["mnist_cnn", "2 members (one seed, a grid) vs 1 member"] is None
    assert {(r["task"], r["threads"]) for r in rows if r["section"] == "threads"} == {
        ("mnist_logreg", 2), ("mnist_mlp", 2)}
    assert {(r["task"], r["measurement"], r["goal"]) for r in rows if r["section"] == "layout"} == {
        ("fmnist_cnn", "training steps, channels last vs default", None),
        ("fmnist_cnn", "evaluations of the validation split, channels last vs default", None)}
    assert {(r["task"], r["measurement"], r["goal"]) for r in rows if r["section"] == "pooling"} == {
        ("fmnist_cnn", "training steps, suite's max-pool vs nn.MaxPool2d", "ratio >= 1"),
        ("fmnist_cnn", "evaluation passes, suite's max-pool vs nn.MaxPool2d", "ratio >= 1")}
    assert {(r["task"], r["measurement"], r["goal"]) for r in rows if r["section"] == "precision"} == {
        *((t, "training steps, bf16 autocast vs float32 (default size)", None)
          for t in ("mnist_mlp", "mnist_cnn")),
        *((t, "training steps, bf16 autocast vs float32 (paper profile's size)", None)
          for t in ("mnist_mlp", "fmnist_cnn"))}
    table = (tmp_path / "README_table.md").read_text()
    assert table == bench.markdown(bench.read_rows(tmp_path))
    assert sum(line.startswith("| ") for line in table.splitlines()) == len(rows) + 1  # header + rows
    assert table in proc.stdout  # and printed


def test_bench_refuses_an_unknown_section(tmp_path):
    proc = subprocess.run([sys.executable, "scripts/bench.py", "--sections", "loop,nope", "--out",
                           str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "unknown section 'nope'" in proc.stderr
    assert not list(tmp_path.iterdir())


# --- make gpu-check: its refusal without CUDA, its plumbing on a CPU, and the README block it writes --------

def _gpu_check(*args: str, timeout: int = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "scripts/gpu_check.py", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this host has CUDA")
def test_gpu_check_without_cuda_is_one_line_and_exit_2(tmp_path):
    proc = _gpu_check("--out", str(tmp_path / "out"))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: make gpu-check needs a CUDA GPU and torch sees none here"]
    assert not (tmp_path / "out").exists()


def test_readme_gpu_block_is_the_render_of_the_committed_measurements(tmp_path):
    """The README's GPU rows are generated from results/bench/gpu*.json, never typed."""
    readme = tmp_path / "README.md"
    readme.write_text((REPO / "README.md").read_text())
    bench = REPO / "results" / "bench"
    proc = _gpu_check("--render", str(bench / "gpu.json"), "--correctness",
                      str(bench / "gpu_correctness.json"), "--readme", str(readme))
    assert proc.returncode == 0, proc.stderr
    assert readme.read_text() == (REPO / "README.md").read_text()
    assert "<!-- generated:gpu:start -->\nMeasured by `make gpu-check` on one" in readme.read_text()


@pytest.mark.slow
def test_gpu_check_plumbing_on_the_cpu(tmp_path):
    """--allow-cpu --quick runs every section's code on a CPU (the numbers mean nothing): each section
    reports ok and its fields, so a GPU node's one run is not spent on a typo."""
    proc = _gpu_check("--allow-cpu", "--quick", "--out", str(tmp_path), "--sections",
                      "correctness,per_step,baseline", "--data-source", str(REPO.parent / "shared" / "data"),
                      timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((tmp_path / "gpu_plumbing.json").read_text())
    sections = report["sections"]
    assert all(s["ok"] for s in sections.values()), {k: s.get("error") for k, s in sections.items()}
    assert sections["correctness"]["determinism"]["mnist_mlp"]["identical"]
    assert set(sections["correctness"]["determinism_off"]) == {"mnist_cnn", "mnist_mlp"}
    assert sections["correctness"]["members_equal_single"]["quadratic"]["within_cpu_tolerance"]
    assert {r["members"] for r in sections["per_step"]["rows"]} == {1, 2}  # (1, 10, 16 on a GPU)
    bf16 = [r for r in sections["per_step"]["rows"] if r.get("precision") == "bf16"]
    assert {(r["task"], r["members"]) for r in bf16} == {(t, 1) for t in ("mnist_mlp", "mnist_cnn",
                                                                             "fmnist_cnn")}
    assert all(r["vs_float32"] > 0 for r in bf16)
    assert set(sections["baseline"]["optimizers"]) == {"momentum", "adam"}

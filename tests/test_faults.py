"""Nothing lost, nothing wrong: bad input, faults and determinism, as a matrix.

Each row of the README's "What happens when things go wrong" table that had no test of its own is
shown here. Bad input goes through ``nesterov_bench.train.main`` -- the function that
``python -m nesterov_bench.train`` runs -- in this process, so the whole matrix takes seconds (a
fresh interpreter costs ~5 s of imports per row; ``tests/test_cli.py`` runs a sample of the same
rows as real processes). Faults that need a process of their own (SIGKILL, a kernel write error, a
read-only file system, W&B in online mode) run the real command line.

A read-only place and a full disk are made for real where the kernel allows it: a private mount
namespace (``unshare -rm``) with a read-only or tiny tmpfs, which vanishes with the process; without
``unshare``, a non-root user gets a ``chmod 555`` folder instead, and root skips.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import io
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from nesterov_bench import store
from nesterov_bench.analyze.load import load
from nesterov_bench.select import select
from nesterov_bench.train import main

from .conftest import DATA, REPO, SMALL_IMAGES, train

MIRROR = REPO.parent / "shared" / "data"
LINREG = ["task=linreg", "train.epochs=1"]


def entry(*argv: str) -> tuple[int, list[str], str]:
    """Run the command line's entry point in this process: (exit status, stderr lines, stdout).

    Of repeated ``key=value`` overrides the last one is kept (Hydra refuses repeats).
    """
    last = {a.split("=", 1)[0]: a for a in argv if not a.startswith("-")}
    argv = [a for a in argv if a.startswith("-") or last[a.split("=", 1)[0]] is a]
    out, err = io.StringIO(), io.StringIO()
    saved = sys.argv
    sys.argv = ["nesterov_bench.train", *argv]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main()
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    finally:
        sys.argv = saved
    return code, [ln for ln in err.getvalue().splitlines() if ln.strip()], out.getvalue()


def assert_refused(code: int, lines: list[str], expected: str, *untouched: Path) -> None:
    """Exit status 2, exactly one line on stderr, ``error: `` + the setting named, nothing created."""
    assert code == 2, lines
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert expected in lines[0], lines[0]
    for path in untouched:
        assert not path.exists(), f"{path} was created"


# --- bad input: one line, exit 2, no run directory ----------------------------------------------

CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")

BAD_INPUT = {
    "unknown task": (["task=mnist_logregg"], "unknown task 'mnist_logregg'; choose one of"),
    "unknown optimizer": (["optimizer=nag"], "unknown optimizer 'nag'; choose one of"),
    "unknown experiment": (["experiment=tunee"], "unknown experiment 'tunee'; choose one of"),
    "unknown profile": (["profile=quik"], "unknown profile 'quik'; choose one of"),
    "misspelled key": (["train.epoch=3"], "unknown setting train.epoch (did you mean train.epochs?)"),
    "misspelled top-level key": (["sed=1"], "unknown setting sed (did you mean seed?)"),
    "misspelled optimizer key": (["optimizer.lrr=0.1"], "(did you mean optimizer.lr?)"),
    "added key": (["+train.foo=1"], "unknown setting train.foo"),
    "key of another optimizer": (["optimizer=nesterov", "optimizer.betas=[0.9,0.99]"],
                                 "unknown setting optimizer.betas"),
    "unknown task setting": (["task=quadratic", "+task.dimension=3"], "task.dimension"),
    "not key=value": (["lr"], "key=value"),
    "lr 0": (["optimizer.lr=0"], "optimizer.lr must be a positive number, got 0"),
    "lr negative": (["optimizer.lr=-0.1"], "optimizer.lr must be a positive number, got -0.1"),
    "lr not a number": (["optimizer.lr=abc"], "optimizer.lr must be a positive number, got 'abc'"),
    "lr nan": (["optimizer.lr=nan"], "optimizer.lr must be a positive number, got nan"),
    "lr inf": (["optimizer.lr=inf"], "optimizer.lr must be a positive number, got inf"),
    "momentum 1": (["optimizer=momentum", "optimizer.momentum=1.0"],
                   "optimizer.momentum must be a number in [0, 1), got 1.0"),
    "momentum negative": (["optimizer=momentum", "optimizer.momentum=-0.1"],
                          "optimizer.momentum must be a number in [0, 1), got -0.1"),
    "momentum above 1": (["optimizer=nesterov", "optimizer.momentum=1.5"],
                         "optimizer.momentum must be a number in [0, 1), got 1.5"),
    "nesterov momentum 0": (["optimizer=nesterov", "optimizer.momentum=0"], "Nesterov needs momentum > 0"),
    "adam beta1 1": (["optimizer=adam", "optimizer.betas=[1.0,0.999]"],
                     "optimizer.betas must be two numbers in [0, 1)"),
    "adam beta2 1": (["optimizer=adam", "optimizer.betas=[0.9,1.0]"],
                     "optimizer.betas must be two numbers in [0, 1)"),
    "adam beta negative": (["optimizer=adam", "optimizer.betas=[-0.1,0.999]"],
                           "optimizer.betas must be two numbers in [0, 1)"),
    "epochs 0": (["train.epochs=0"], "train.epochs must be a positive integer, got 0"),
    "epochs negative": (["train.epochs=-2"], "train.epochs must be a positive integer, got -2"),
    "epochs fractional": (["train.epochs=1.5"], "train.epochs must be a positive integer, got 1.5"),
    "batch size 0": (["train.batch_size=0"], "train.batch_size must be a positive integer or 'full'"),
    "batch size negative": (["train.batch_size=-8"], "train.batch_size must be a positive integer"),
    "batch larger than the data": (["train.batch_size=5000"],
                                   "train.batch_size=5000 is larger than the training split (1000"),
    "batch larger than the image subset": (
        ["task=mnist_cnn", "data.generated=true", "task.train_size=100", "task.val_size=100",
         "train.batch_size=101"], "train.batch_size=101 is larger than the training split (100"),
    "precision unknown": (["train.precision=fp16"],
                          "train.precision must be bf16 or null (float32), got 'fp16'"),
    "bf16 on a float64 task": (["task=quadratic", "task.dtype=float64", "train.precision=bf16"],
                               "train.precision=bf16 would change nothing: autocast leaves float64 alone"),
    "seed not a number": (["seed=abc"], "seed must be a non-negative integer, got 'abc'"),
    "seed fractional": (["seed=1.5"], "seed must be a non-negative integer, got 1.5"),
    "seed negative": (["seed=-1"], "seed must be a non-negative integer, got -1"),
    "device unknown": (["device=tpu"], "device must be auto, cpu or cuda, got 'tpu'"),
    "wandb mode unknown": (["wandb.mode=sometimes"], "wandb.mode must be one of"),
    "experiment_name ..": (["experiment_name=.."], "experiment_name must be a folder name"),
    "stage ..": (["stage=.."], "stage must be a folder name"),
    "hidden stage": (["stage=.hidden"], "stage must be a folder name"),
    "empty results_dir": (["results_dir="], "results_dir must name a folder"),
    "device=cuda without CUDA": pytest.param(["device=cuda"], "device=cuda but torch sees no CUDA GPU",
                                             marks=CUDA),
    "one bad value in a sweep": (["-m", "optimizer.lr=0.1,-1"], "optimizer.lr must be a positive number"),
    "sweep without -m": (["seed=0,1"], "add -m to sweep"),
    "data root missing, no mirror": (["task=mnist_logreg", "data.root={tmp}/nodata",
                                      "data.source={tmp}/nomirror"], "MNIST not found"),
    "data root under a file": (["task=mnist_logreg", "data.root={tmp}/a_file/data",
                                "data.source={tmp}/mirror"], "data.root: cannot create"),
    "results root under a file": (["results_dir={tmp}/a_file/results"], "set results_dir to a writable"),
    "results root under a file, sweep": (["-m", "seed=0,1", "results_dir={tmp}/a_file/results"],
                                         "set results_dir to a writable folder"),
}


@pytest.mark.parametrize("argv,expected", BAD_INPUT.values(), ids=BAD_INPUT.keys())
def test_bad_input_is_one_line_exit_2_and_nothing_created(tmp_path, argv, expected):
    (tmp_path / "a_file").write_text("not a folder")
    (tmp_path / "mirror" / "MNIST" / "raw").mkdir(parents=True)  # a mirror to copy from, were root writable
    results = tmp_path / "results"
    argv = [a.format(tmp=tmp_path) for a in argv]
    task = [] if any(a.startswith("task=") for a in argv) else ["task=linreg"]
    code, lines, _ = entry(f"results_dir={results}", "wandb.mode=disabled", *DATA, *task, *argv)
    assert_refused(code, lines, expected, results, tmp_path / "nodata", tmp_path / "a_file" / "results")


def _mnist_copy(dest: Path) -> Path:
    raw = dest / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for f in (MIRROR / "MNIST" / "raw").glob("*.gz"):
        shutil.copy(f, raw / f.name)
    with open(raw / "t10k-labels-idx1-ubyte.gz", "r+b") as f:  # one flipped stretch: md5 differs
        f.seek(100)
        f.write(b"\x00\x01\x02")
    return raw


@pytest.mark.parametrize("where", ["data root", "offline mirror"])
def test_corrupted_archive_is_one_line_naming_it_and_nothing_created(tmp_path, where):
    results = tmp_path / "results"
    if where == "data root":
        root, source = tmp_path / "root", tmp_path / "nomirror"
        _mnist_copy(root)
    else:
        root, source = tmp_path / "root", tmp_path / "mirror"
        _mnist_copy(source)
    code, lines, _ = entry(f"results_dir={results}", "wandb.mode=disabled", "task=mnist_logreg",
                           f"data.root={root}", f"data.source={source}")
    fix = "delete it and rerun" if where == "data root" else "replace it with the original archive"
    assert_refused(code, lines, "t10k-labels-idx1-ubyte.gz is corrupted (md5 differs", results)
    assert fix in lines[0]


# --- a read-only place, a full disk: made for real in a private mount namespace ------------------

@functools.cache
def _unshare() -> bool:
    if not shutil.which("unshare"):
        return False
    try:
        return subprocess.run(["unshare", "-rm", "true"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def cli_in_namespace(mount: str, env: dict[str, str], *args: str,
                     after: str = ":") -> subprocess.CompletedProcess:
    """``python -m nesterov_bench.train ARGS`` after the shell command ``mount`` (with $MNT, $SRC...
    from ``env``), in a private mount namespace; ``after`` runs once the command has exited, inside."""
    script = f'{mount} || exit 99; "$@"; rc=$?; {after}; exit $rc'
    return subprocess.run(["unshare", "-rm", "sh", "-c", script, "sh", sys.executable, "-m",
                           "nesterov_bench.train", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "WANDB_MODE": "disabled", **env})


def read_only_cli(place: Path, *args: str, holding: Path | None = None) -> subprocess.CompletedProcess:
    """The command line with ``place`` read-only (holding a copy of ``holding``'s files, if given)."""
    place.mkdir(parents=True, exist_ok=True)
    if _unshare():
        mount = ('mount --bind "$SRC" "$MNT" && mount -o remount,bind,ro "$MNT"' if holding
                 else 'mount -t tmpfs -o ro,size=64k tmpfs "$MNT"')
        proc = cli_in_namespace(mount, {"MNT": str(place), "SRC": str(holding or place)}, *args)
        assert proc.returncode != 99, proc.stderr
        return proc
    if os.geteuid() == 0 or holding is not None:
        pytest.skip("no unshare here, and a chmod'ed folder does not stop root")
    place.chmod(0o555)
    try:
        return subprocess.run([sys.executable, "-m", "nesterov_bench.train", *args], cwd=REPO,
                              capture_output=True, text=True, timeout=300)
    finally:
        place.chmod(0o755)


@pytest.mark.parametrize("what", ["results root", "results root, sweep", "data root"])
def test_read_only_place_is_one_line_and_nothing_created(tmp_path, what):
    place, results = tmp_path / "ro", tmp_path / "ro" / "results"
    if what == "data root":
        results = tmp_path / "results"
        args = ["task=mnist_logreg", f"data.root={place / 'data'}", f"data.source={MIRROR}"]
    else:
        args = ["task=linreg", *(["-m", "seed=0,1"] if "sweep" in what else [])]
    proc = read_only_cli(place, f"results_dir={results}", "wandb.mode=disabled", *args)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    expected = "data.root: cannot create" if what == "data root" else "set results_dir to a writable folder"
    assert_refused(proc.returncode, lines, expected, results)


def test_read_only_data_root_that_holds_the_data_is_used(tmp_path):
    """Nothing needs writing there, so it is no error (a shared, read-only dataset folder)."""
    from nesterov_bench.data import stage_mnist_like
    place = tmp_path / "ro"
    shared = REPO.parent / "shared" / "data"  # staged here first: a fresh clone's data root is empty
    stage_mnist_like("MNIST", REPO / "data", shared if shared.is_dir() else None, download=False)
    proc = read_only_cli(place, f"results_dir={tmp_path / 'results'}", "wandb.mode=disabled",
                         "task=mnist_logreg", f"data.root={place}", "data.source=null", *SMALL_IMAGES,
                         "train.max_steps=2", holding=REPO / "data")
    assert proc.returncode == 0, proc.stderr[-2000:]
    (run_dir,) = (tmp_path / "results").glob("runs/*/*/*/*/*/seed=0")
    assert store.is_finished(run_dir)


def _limit_file_size(limit: int):
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


@pytest.mark.parametrize("fault", ["file size limit (EFBIG)", "disk full (ENOSPC)"])
def test_write_error_while_saving_is_one_line_marks_the_run_failed_and_leaves_no_partial_file(
        tmp_path, fault):
    """A real write error from the kernel while metrics.parquet is written: the run is recorded
    ``failed`` (never counted as finished), no partial file is left, one line says so, exit 1."""
    results = tmp_path / "results"
    # ten epochs logged at every step: metrics.parquet is ~12 KB, the failure record ~3 KB
    args = [f"results_dir={results}", "wandb.mode=disabled", "task=linreg", "device=cpu", "train.epochs=10",
            "train.log_every=1"]
    if fault.startswith("disk full"):
        if not _unshare():
            pytest.skip("no unshare here to mount a small tmpfs")
        results.mkdir()
        # two 4 KiB pages: run.json fits, metrics.parquet does not; the tree is copied out at the end
        proc = cli_in_namespace('mount -t tmpfs -o size=8k tmpfs "$MNT" && mkdir "$COPY"',
                                {"MNT": str(results), "COPY": str(tmp_path / "copy")}, *args,
                                after='cp -a "$MNT/." "$COPY/"')
        results = tmp_path / "copy"
    else:
        proc = subprocess.run([sys.executable, "-m", "nesterov_bench.train", *args], cwd=REPO,
                              capture_output=True, text=True, timeout=300, preexec_fn=_limit_file_size(8000),
                              env={**os.environ, "WANDB_MODE": "disabled"})
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr[-3000:]
    assert lines[0].startswith("error: could not save the run in ") and "a rerun redoes it" in lines[0]
    (run_dir,) = results.glob("runs/*/*/*/*/*/seed=0")
    assert sorted(p.name for p in run_dir.iterdir()) == [".lock", "run.json"]  # no partial, no temp file
    assert store.read_run(run_dir)["status"] == "failed" and not store.is_finished(run_dir)
    if fault.startswith("file size"):
        assert train(results, *args[2:])["status"] == "completed"  # the rerun redoes it
        assert store.is_finished(run_dir)


# --- SIGKILL mid-epoch ----------------------------------------------------------------------------

def test_sigkill_mid_epoch_then_rerun_redoes_the_run_exactly(tmp_path):
    """A run killed mid-epoch leaves no record; the rerun trains it whole, to the same numbers as a
    run that was never interrupted. (A sweep killed half way: tests/test_protocol.py.)"""
    args = ["task=linreg", "device=cpu", "train.batch_size=1", "train.epochs=10",
            "train.log_every=500"]  # 1000 steps an epoch
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "nesterov_bench.train", f"results_dir={killed}",
                             "wandb.mode=disabled", *args], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 240
    while not list(killed.glob("runs/*/*/*/*/*/seed=0/.lock")) and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # the lock is taken just before training; 10,000 steps take seconds
    assert proc.poll() is None, "the run ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    (run_dir,) = killed.glob("runs/*/*/*/*/*/seed=0")
    assert not store.is_finished(run_dir) and not (run_dir / "metrics.parquet").exists()
    rerun = train(killed, *args)
    assert rerun["status"] == "completed" and rerun["steps"] == 10 * 1000
    assert sorted(p.name for p in run_dir.iterdir()) == [".lock", "metrics.parquet", "run.json"]
    train(tmp_path / "clean", *args)
    (clean,) = (tmp_path / "clean").glob("runs/**/metrics.parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(run_dir / "metrics.parquet").drop(columns="time_s"),
                                  pd.read_parquet(clean).drop(columns="time_s"), check_exact=True)


# --- NaN/Inf: diverged, the sweep goes on, the selection ranks it last ----------------------------

def test_diverging_run_in_a_sweep_is_kept_and_ranked_last(tmp_path):
    code, lines, _ = entry("-m", f"results_dir={tmp_path}", "wandb.mode=disabled", "task=linreg",
                           "optimizer=momentum", "experiment_name=blowup", "stage=tune", "train.epochs=2",
                           "train.log_every=1", "space.lr=[1e6,0.01]", "trial=0,1")  # the diverging one first
    assert code == 0, lines
    records = {r["config"]["optimizer"]["lr"]: r
               for r in map(store.read_run, {p.parent for p in tmp_path.glob("runs/**/run.json")})}
    assert records[1e6]["status"] == "diverged" and "non-finite" in records[1e6]["reason"]
    assert records[0.01]["status"] == "completed"  # the sweep went on after the divergence
    (diverged,) = tmp_path.glob("runs/blowup/tune/linreg/momentum/lr=1e+06*/seed=0")
    df = pd.read_parquet(diverged / "metrics.parquet")
    assert len(df[df.metric == "batch_loss"]) == records[1e6]["steps"] > 0  # its metrics so far
    _, choices, _ = select(tmp_path, "blowup")
    chosen = choices["linreg"]["momentum"]
    assert chosen["final"]["lr"] == 0.01 and not chosen["trials"]["0"]["stable"]
    assert chosen["final"]["next_to_diverged"]


def test_multirun_flag_may_follow_the_overrides(tmp_path):
    code, lines, _ = entry(f"results_dir={tmp_path}", "wandb.mode=disabled", *LINREG, "-m", "seed=0,1")
    assert code == 0, lines
    assert len([p for p in tmp_path.glob("runs/*/*/*/*/*/seed=*") if store.is_finished(p)]) == 2


# --- W&B unavailable or misconfigured in online mode ----------------------------------------------

@contextlib.contextmanager
def refusing_server():
    """A local stand-in for the W&B server that refuses every request (401)."""

    class Refuse(http.server.BaseHTTPRequestHandler):
        def _refuse(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(401)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"errors": [{"message": "invalid api key"}]}')

        do_GET = do_POST = _refuse

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Refuse)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("problem", ["no credentials", "server refuses the key"])
def test_wandb_unavailable_in_online_mode_is_reported_once_and_the_run_completes(tmp_path, problem):
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(HOME=str(home), WANDB_CONFIG_DIR=str(home / "wandb"), WANDB_CACHE_DIR=str(home / "cache"))
    with contextlib.ExitStack() as stack:
        if problem == "server refuses the key":
            env.update(WANDB_API_KEY="0" * 40, WANDB_BASE_URL=stack.enter_context(refusing_server()))
        proc = subprocess.run([sys.executable, "-m", "nesterov_bench.train", f"results_dir={tmp_path / 'r'}",
                               "wandb.mode=online", *LINREG], cwd=REPO, capture_output=True, text=True,
                              timeout=300, env=env)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    reports = [ln for ln in output.splitlines() if "W&B online logging unavailable" in ln]
    assert len(reports) == 1 and "local files only" in reports[0], output
    assert "Traceback" not in output
    (run_dir,) = (tmp_path / "r").glob("runs/*/*/*/*/*/seed=0")
    assert store.is_finished(run_dir) and store.read_run(run_dir)["status"] == "completed"


# --- the analysis meets damaged run directories ---------------------------------------------------

def test_analysis_leaves_out_truncated_real_runs_and_keeps_the_rest(tmp_path):
    """Real run directories, one with metrics.parquet cut short, one with run.json cut short and one
    whose run.json is valid JSON of the wrong shape, one whose metrics.parquet is whole but of another
    table (the synthetic cases: tests/test_analyze.py)."""
    dirs = [Path(train(tmp_path, *LINREG, f"seed={s}")["run_dir"]) for s in range(5)]
    for d, name in ((dirs[1], "metrics.parquet"), (dirs[2], "run.json")):
        data = (d / name).read_bytes()
        (d / name).write_bytes(data[: len(data) // 2])
    (dirs[3] / "run.json").write_text("[]")
    pd.DataFrame({"step": [0], "loss": [1.0]}).to_parquet(dirs[4] / "metrics.parquet")
    loaded = load(tmp_path)
    assert list(loaded.runs.seed) == [0]
    reasons = dict(loaded.skipped)
    assert "unreadable metrics.parquet" in reasons[str(dirs[1])]
    assert "corrupt run.json" in reasons[str(dirs[2])] and "corrupt run.json" in reasons[str(dirs[3])]
    assert "metrics.parquet has columns ['step', 'loss']" in reasons[str(dirs[4])]
    assert not any(store.is_finished(d) for d in dirs[1:4])  # and training redoes them
    assert train(tmp_path, *LINREG, "seed=3")["status"] == "completed"


# --- determinism and the environment --------------------------------------------------------------

def test_environment_tells_setups_apart(tmp_path):
    one = train(tmp_path / "a", *LINREG, "device=cpu", "threads=1")["environment"]
    two = train(tmp_path / "b", *LINREG, "device=cpu", "threads=2")["environment"]
    assert (one["threads"], two["threads"]) == (1, 2)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True)
    if head.returncode == 0:  # a git checkout: the commit, and whether it had local changes
        assert one["git_commit"] == head.stdout.strip() and isinstance(one["git_dirty"], bool)
    assert one["torch"] == torch.__version__ and one["packages"]["pandas"] == pd.__version__
    assert one["device"] == "cpu" and one["device_name"] == one["cpu"]
    assert one["python"] == sys.version.split()[0]
    if torch.cuda.is_available():  # the GPU model names the device
        gpu = train(tmp_path / "c", *LINREG, "device=cuda")["environment"]
        assert gpu["device"] == "cuda" and gpu["device_name"] == torch.cuda.get_device_name(0)
        assert gpu["cuda"] == torch.version.cuda


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_same_config_and_seed_are_bit_identical_on_gpu(tmp_path):
    """GPU determinism (deterministic=true, the default): two processes, a conv net on CUDA."""
    args = ["task=mnist_cnn", "data.generated=true", "task.val_size=512", "device=cuda", "seed=3",
            "train.max_steps=20", "train.log_every=1", "train.evals_per_epoch=2", "wandb.mode=disabled"]
    frames = []
    for name in ("a", "b"):
        proc = subprocess.run([sys.executable, "-m", "nesterov_bench.train", f"results_dir={tmp_path / name}",
                               *args], cwd=REPO, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-2000:]
        (run_json,) = (tmp_path / name).glob("runs/**/run.json")
        assert json.loads(run_json.read_text())["environment"]["device"] == "cuda"
        frames.append(pd.read_parquet(run_json.parent / "metrics.parquet").drop(columns="time_s"))
    pd.testing.assert_frame_equal(frames[0], frames[1], check_exact=True)

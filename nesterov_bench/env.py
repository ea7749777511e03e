"""The environment a run was produced in: enough to tell two runs' setups apart."""

from __future__ import annotations

import functools
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import torch

PACKAGES = ("torch", "torchvision", "numpy", "hydra-core", "omegaconf", "wandb", "pandas", "pyarrow")
REPO = Path(__file__).resolve().parents[1]


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


@functools.cache
def _static() -> dict:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    commit = _git("rev-parse", "HEAD")
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "hostname": platform.node(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        # the vector kernels torch picked (AVX2, AVX512, ...): float results may differ between them
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "git_commit": commit,
        "git_dirty": None if dirty is None else bool(dirty),
        "packages": versions,
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def host() -> dict:
    """The machine and code a command ran on: CPU, its core count and vector kernels, host name, commit."""
    keep = ("hostname", "cpu", "cpu_count", "cpu_capability", "torch", "git_commit", "git_dirty")
    return {k: _static()[k] for k in keep}


def environment(device: torch.device) -> dict:
    """Versions, hardware, commit; the device is named by the GPU model on CUDA, else the CPU."""
    env = dict(_static())
    env["device"] = device.type
    env["device_name"] = torch.cuda.get_device_name(device) if device.type == "cuda" else env["cpu"]
    env["threads"] = torch.get_num_threads()
    if device.type == "cuda":  # TF32 or IEEE float32 work (train.set_fp32_precision)
        env["tf32"] = {"matmul": torch.backends.cuda.matmul.allow_tf32,
                       "conv": torch.backends.cudnn.allow_tf32}
    return env


def set_fp32_precision() -> None:
    """float32 means float32 on a GPU too: torch runs convolutions in TF32 by default (10-bit mantissa)
    while matmuls are IEEE; both are set to IEEE here (no TF32); ``environment`` records the flags.
    (Here, not in train.py: a joblib launcher pickles train.py's functions by value when it runs as
    __main__, and torch.backends.cudnn cannot be pickled.)"""
    # The flags torch has read longest: setting conv alone through the newer fp32_precision API makes
    # any later read of cudnn.allow_tf32 (by torch itself, e.g. the compiler) raise.
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


def set_determinism(on: bool) -> None:
    """torch's deterministic algorithms on or off, without the fill that comes with them: deterministic
    mode also fills each new tensor's memory (with NaN) in case an op reads memory it never wrote. No op of
    a run does, and torch's note on ``fill_uninitialized_memory`` says such a program stays deterministic
    without the fill, which cost 7% of an mnist_logreg step (make bench); repeated runs still agree bit for
    bit (tests/test_guarantees.py). (Here, not in train.py, for the reason ``set_fp32_precision`` gives:
    torch.utils.deterministic cannot be pickled.)"""
    torch.use_deterministic_algorithms(on, warn_only=False)
    torch.utils.deterministic.fill_uninitialized_memory = False

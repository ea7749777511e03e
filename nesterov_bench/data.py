"""Image datasets as whole tensors, from torchvision's files, with no silent fallback.

Where the files come from, in order: ``data.root`` (torchvision's layout, ``<root>/MNIST/raw/``),
then the offline mirror ``data.source`` (the original archives, copied into the root and checked
against torchvision's md5), then -- only with ``data.download=true`` -- the internet through
torchvision. Anything else is a ConfigError naming the path and both ways to fix it (and nothing is
created in the root). A read-only root is used as it is when it already holds the extracted files.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import math
import os
import shutil
from pathlib import Path

import torch
from torchvision import datasets
from torchvision.datasets.utils import check_integrity

from .errors import ConfigError

# The torchvision classes whose files the suite knows how to stage offline.
MIRRORED = {"MNIST": datasets.MNIST, "FashionMNIST": datasets.FashionMNIST}


def _writable_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"data.root: cannot create {path} ({e.strerror}); set data.root=DIR") from e
    if not os.access(path, os.W_OK):
        raise ConfigError(f"data.root: {path} is not writable; set data.root to a writable folder")


@contextlib.contextmanager
def _staging_lock(folder: Path):
    """Serialise staging of one dataset across processes (parallel jobs share a data root): torchvision
    extracts archives in place, and a reader must never see half an extracted file."""
    _writable_dir(folder)
    with open(folder / ".staging.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # released on close, or by the kernel if the process dies
        yield


def _idx_complete(path: Path) -> bool:
    """Whether an extracted IDX file is whole: its size matches the dimensions in its header."""
    with open(path, "rb") as f:
        header = f.read(4)
        if len(header) < 4:
            return False
        ndim = header[3]
        dims = f.read(4 * ndim)
    if len(dims) < 4 * ndim:
        return False
    size = 4 + 4 * ndim + math.prod(int.from_bytes(dims[i : i + 4], "big") for i in range(0, 4 * ndim, 4))
    return path.stat().st_size == size


def stage_mnist_like(name: str, root: Path, source: Path | None, download: bool) -> None:
    """Make sure ``<root>/<name>/raw`` holds the four archives (md5-checked) and their extracted files."""
    raw = root / name / "raw"
    files = [filename for filename, _ in MIRRORED[name].resources]
    extracted = [raw / f.removesuffix(".gz") for f in files]
    if (raw.is_dir() and not os.access(root / name, os.W_OK)
            and all(p.is_file() and _idx_complete(p) for p in extracted)):
        return  # a read-only data root that holds the data: nothing to stage (and no one staging it)
    if not download and not raw.is_dir() and (source is None or not (source / name / "raw").is_dir()):
        raise ConfigError(_not_found(name, raw, source, files))  # before creating anything in data.root
    with _staging_lock(root / name):
        _stage_mnist_like(name, root, source, download)


def _not_found(name: str, raw: Path, source: Path | None, missing: list[str]) -> str:
    where = f"the offline mirror {source / name / 'raw'}" if source is not None else "no offline mirror"
    return (f"{name} not found: {', '.join(missing)} missing in {raw} (and in {where}); copy the "
            f"original archives there or set data.source=DIR, or set data.download=true to fetch them")


def _stage_mnist_like(name: str, root: Path, source: Path | None, download: bool) -> None:
    cls = MIRRORED[name]
    raw = root / name / "raw"
    missing = []
    for filename, md5 in cls.resources:
        extracted = raw / filename.removesuffix(".gz")
        if extracted.exists():
            if _idx_complete(extracted):
                continue  # already extracted by an earlier run
            extracted.unlink()  # cut short (a killed extraction): extract it again
        archive = raw / filename
        if archive.exists():
            if not check_integrity(str(archive), md5):
                raise ConfigError(
                    f"{archive} is corrupted (md5 differs from torchvision's {md5}); delete it and rerun"
                )
            continue
        mirrored = source / name / "raw" / filename if source is not None else None
        if mirrored is not None and mirrored.exists():
            if not check_integrity(str(mirrored), md5):
                raise ConfigError(f"{mirrored} is corrupted (md5 differs from torchvision's {md5}); replace "
                                  "it with the original archive, or set data.source to another mirror")
            _writable_dir(raw)
            tmp = archive.with_name(f".{filename}.{os.getpid()}.tmp")
            shutil.copyfile(mirrored, tmp)
            os.replace(tmp, archive)  # atomic: a concurrent run never sees half a file
            continue
        missing.append(filename)
    if missing and not download:
        raise ConfigError(_not_found(name, raw, source, missing))
    _writable_dir(raw)
    try:  # extracts the archives (verifying md5 again) or, with download=true, fetches the missing ones
        cls(str(root), train=True, download=True)
    except Exception as e:  # noqa: BLE001 -- any failure here is a data problem the user must fix
        raise ConfigError(f"could not prepare {name} in {raw}: {str(e).splitlines()[0]}") from e


def missing(name: str, root: str | Path, source: str | Path | None) -> str | None:
    """Why dataset ``name`` is not at hand in ``root`` (nor in the offline mirror ``source``), or None
    when it is: a check that reads and creates nothing, for a plan to make before its first run."""
    root, source = Path(root).expanduser(), Path(source).expanduser() if source else None
    if name in MIRRORED:
        files = [f for f, _ in MIRRORED[name].resources]
        raw, mirror = root / name / "raw", source / name / "raw" if source else None
        lacking = [f for f in files if not ((raw / f).is_file() or (raw / f.removesuffix(".gz")).is_file()
                                            or (mirror is not None and (mirror / f).is_file()))]
        return _not_found(name, raw, source, lacking) if lacking else None
    folder = root / "cifar-10-batches-py"
    if name == "CIFAR10" and not folder.is_dir():
        return f"CIFAR10 not found in {folder}; set data.download=true to fetch it, or data.root=DIR"
    return None


def load_images(name: str, root: str | Path, source: str | Path | None, download: bool):
    """Return ``(train_x, train_y, test_x, test_y)``: uint8 images (N, C, H, W) and int64 labels.

    Cached per process: a sweep of many runs in one process reads each dataset once (callers must
    not modify the returned tensors in place).
    """
    return _load_images(name, str(Path(root).expanduser().resolve()),
                        str(source) if source else None, bool(download))


@functools.lru_cache(maxsize=4)
def _load_images(name: str, root: str | Path, source: str | Path | None, download: bool):
    root = Path(root).expanduser()
    source = Path(source).expanduser() if source else None
    if name in MIRRORED:
        stage_mnist_like(name, root, source, download)
        cls = MIRRORED[name]
        train, test = cls(str(root), train=True), cls(str(root), train=False)
        return train.data[:, None], train.targets, test.data[:, None], test.targets
    if name == "CIFAR10":
        _writable_dir(root)
        try:
            train = datasets.CIFAR10(str(root), train=True, download=download)
            test = datasets.CIFAR10(str(root), train=False, download=download)
        except Exception as e:  # noqa: BLE001
            raise ConfigError(
                f"CIFAR-10 not found in {root / 'cifar-10-batches-py'} ({str(e).splitlines()[0]}); "
                "set data.download=true on a machine with internet, or put torchvision's "
                "cifar-10-python.tar.gz in data.root"
            ) from e

        def to_tensors(ds):
            return torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous(), torch.tensor(ds.targets)

        return *to_tensors(train), *to_tensors(test)
    raise ValueError(f"no loader for dataset {name}")


def generated_images(shape: tuple[int, int, int], n_train: int, n_test: int, seed: int):
    """Random uint8 images and labels of a dataset's shape: for code-path tests only."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n_train + n_test, *shape), generator=g, dtype=torch.uint8)
    y = torch.randint(0, 10, (n_train + n_test,), generator=g)
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]

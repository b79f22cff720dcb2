"""MNIST-style datasets as in-memory float tensors, with a seeded validation split.

Files are read through torchvision's dataset classes (which also download them where
allowed). Before handing the root to torchvision we check the IDX files ourselves, so a
missing, truncated or corrupt file is one clear error rather than a traceback from deep
inside a parser.
"""

from __future__ import annotations

import hashlib
import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

DATA_DIR_ENV = "LATENT_MODELS_DATA_DIR"
DEFAULT_DATA_DIR = "data"

Dataset = Literal["mnist", "fashion-mnist"]
# dataset name -> (torchvision class name, folder under the root)
DATASETS: dict[Dataset, tuple[str, str]] = {
    "mnist": ("MNIST", "MNIST"),
    "fashion-mnist": ("FashionMNIST", "FashionMNIST"),
}
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions
LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension
IMAGE_SIZE = 28


class DataError(Exception):
    """A user-facing problem with the data files: missing, truncated or corrupt."""


@dataclass
class Split:
    images: torch.Tensor  # float32, (N, C, H, W) (MNIST: (N, 1, 28, 28)), values in [0, 1]
    labels: torch.Tensor  # int64, (N,)

    def __len__(self) -> int:
        return self.labels.shape[0]


@dataclass
class DataSplits:
    name: str
    root: str
    train: Split
    val: Split
    test: Split
    digest: str  # sha256 over the raw IDX files, first 16 hex digits

    def as_numpy(self) -> dict[str, tuple]:
        """{split: (images, labels)} as numpy arrays, for logging the splits as run inputs."""
        return {
            name: (split.images.numpy(), split.labels.numpy())
            for name, split in (("train", self.train), ("val", self.val), ("test", self.test))
        }

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(channels, height, width): what the models are built for."""
        return tuple(self.train.images.shape[1:])

    @property
    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}


def binarized(images: torch.Tensor, seed: int) -> torch.Tensor:
    """A fixed Bernoulli draw of the intensities: the binarized-MNIST evaluation set."""
    return torch.bernoulli(images, generator=torch.Generator().manual_seed(seed))


def resolve_data_dir(data_dir: str | None) -> Path:
    """Explicit `data_dir`, else $LATENT_MODELS_DATA_DIR, else ./data."""
    chosen = data_dir or os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR
    return Path(chosen).expanduser().resolve()


def expected_files(name: str, root: Path) -> list[Path]:
    folder = root / DATASETS[name][1] / "raw"
    return [folder / f for pair in IDX_FILES.values() for f in pair]


def _read_header(path: Path, magic: int, ndim: int) -> tuple[int, ...]:
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(4 + 4 * ndim)
    if len(head) < 4 + 4 * ndim:
        raise DataError(f"{path} is truncated: {size} bytes, too short for an IDX header")
    found, *dims = struct.unpack(f">I{ndim}I", head)
    if found != magic:
        raise DataError(
            f"{path} is not an IDX file of the expected kind: magic number {found:#010x}, "
            f"expected {magic:#010x} (is it still gzip-compressed, or corrupt?)"
        )
    n_bytes = 4 + 4 * ndim + math.prod(dims)
    if size != n_bytes:
        state = "truncated" if size < n_bytes else "longer than its header says"
        raise DataError(f"{path} is {state}: {size} bytes, header implies {n_bytes}")
    return tuple(dims)


def check_idx_files(name: str, root: Path) -> None:
    """Raise DataError naming every problem with the raw files under `root`."""
    folder = root / DATASETS[name][1] / "raw"
    for split, (images_file, labels_file) in IDX_FILES.items():
        images_dims = _read_header(folder / images_file, IMAGES_MAGIC, 3)
        (n_labels,) = _read_header(folder / labels_file, LABELS_MAGIC, 1)
        n_images, rows, cols = images_dims
        if (rows, cols) != (IMAGE_SIZE, IMAGE_SIZE):
            raise DataError(f"{folder / images_file} holds {rows}x{cols} images, expected 28x28")
        if n_images != n_labels:
            raise DataError(f"{folder}: {split} split has {n_images} images but {n_labels} labels")


def _missing_files_error(name: str, root: Path, missing: list[Path], reason: str) -> DataError:
    listing = "\n  ".join(str(p) for p in missing)
    return DataError(
        f"{name} data not found under {root} ({reason}). Expected these files:\n  {listing}\n"
        f"Point data_dir (or ${DATA_DIR_ENV}) at a folder laid out as torchvision does, "
        f"e.g. <root>/{DATASETS[name][1]}/raw/train-images-idx3-ubyte, or allow download "
        f"on a machine with internet access."
    )


def _digest(files: list[Path]) -> str:
    h = hashlib.sha256()
    for path in files:
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:16]


def _load_split(name: str, root: Path, train: bool) -> Split:
    import torchvision

    cls = getattr(torchvision.datasets, DATASETS[name][0])
    ds = cls(root=str(root), train=train, download=False)
    images = ds.data.unsqueeze(1).to(torch.float32).div_(255.0)
    return Split(images=images.contiguous(), labels=ds.targets.to(torch.int64))


def ensure_files(name: str, root: Path, download: bool) -> list[Path]:
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; expected one of {sorted(DATASETS)}")
    files = expected_files(name, root)
    missing = [p for p in files if not p.is_file()]
    if missing and download:
        import torchvision

        cls = getattr(torchvision.datasets, DATASETS[name][0])
        try:
            cls(root=str(root), train=True, download=True)
            cls(root=str(root), train=False, download=True)
        except Exception as exc:  # network errors come in many types
            raise _missing_files_error(name, root, missing, f"download failed: {type(exc).__name__}: {exc}") from None
        missing = [p for p in files if not p.is_file()]
    if missing:
        reason = "download is off" if not download else "download did not produce them"
        raise _missing_files_error(name, root, missing, reason)
    check_idx_files(name, root)
    return files


def load_splits(
    name: str = "mnist",
    data_dir: str | None = None,
    val_size: int = 5000,
    seed: int = 0,
    download: bool = True,
    limit_train: int = 0,
    limit_test: int = 0,
) -> DataSplits:
    """Load train/val/test into memory. Validation is a seeded carve-out of train.

    `limit_train` / `limit_test` (0 = all) take the first N examples, for quick runs.
    """
    root = resolve_data_dir(data_dir)
    files = ensure_files(name, root, download)
    full_train = _load_split(name, root, train=True)
    test = _load_split(name, root, train=False)
    if limit_train:
        full_train = Split(full_train.images[:limit_train], full_train.labels[:limit_train])
    if limit_test:
        test = Split(test.images[:limit_test], test.labels[:limit_test])
    n = len(full_train)
    if not 0 < val_size < n:
        raise DataError(f"val_size must be between 1 and {n - 1} for {n} training images, got {val_size}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    val_idx, train_idx = perm[:val_size], perm[val_size:]
    return DataSplits(
        name=name,
        root=str(root),
        train=Split(full_train.images[train_idx], full_train.labels[train_idx]),
        val=Split(full_train.images[val_idx], full_train.labels[val_idx]),
        test=test,
        digest=_digest(files),
    )

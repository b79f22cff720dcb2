"""The image datasets: MNIST-style ones as in-memory float tensors with a seeded validation
split, and the user's own image folders (`image_folder.py`); `load_data(cfg)` picks by
`cfg.dataset`.

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
from dataclasses import dataclass, field
from pathlib import Path

import torch

from latent_models import image_folder
from latent_models.choices import Dataset
from latent_models.errors import DataError

DATA_DIR_ENV = "LATENT_MODELS_DATA_DIR"
DEFAULT_DATA_DIR = "data"

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


@dataclass
class Split:
    images: torch.Tensor  # float32, (N, C, H, W) (MNIST: (N, 1, 28, 28)), values in [0, 1]
    labels: torch.Tensor  # int64, (N,)
    count: int = 0  # images per epoch where `images` is only a sample of them (streamed); 0: len(images)

    def __len__(self) -> int:
        return self.count or self.labels.shape[0]


@dataclass
class DataSplits:
    name: str
    root: str
    train: Split
    val: Split
    test: Split
    digest: str  # sha256 over the raw IDX files (a folder: its files and the prepared shape), first 16 hex digits
    # How training batches are drawn where they are not `train.images` indexed in memory:
    # image_folder.PatchesInMemory (fresh crops each epoch) or image_folder.Streamed (from disk).
    train_batches: object = None
    loading: str = "in-memory"  # "in-memory", "patches in memory" or "streamed": logged as data_loading
    source: str = "builtin"  # "builtin" (MNIST-style IDX files) or "folder"
    tags: dict = field(default_factory=dict)  # what the run logs about this data beside name and digest

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
    def identity(self) -> str:
        """What versions are compared on: the dataset's name (mnist), or a folder's name and digest."""
        return f"folder:{self.name}:{self.digest}" if self.source == "folder" else self.name

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


def load_data(cfg) -> DataSplits:
    """The splits a config (any with DataOptions' fields) asks for."""
    if cfg.dataset != "folder":
        data = load_splits(
            cfg.dataset, cfg.data_dir, cfg.val_size, cfg.seed, cfg.download, cfg.limit_train, cfg.limit_test
        )
        data.tags = {"data_loading": data.loading, "image_shape": "x".join(map(str, data.image_shape))}
        return data
    return load_folder(
        cfg.data_dir,
        cfg.image_size or image_folder.DEFAULT_FOLDER_IMAGE_SIZE,
        cfg.channels,
        cfg.image_policy,
        cfg.patches_per_image,
        cfg.val_fraction,
        cfg.test_fraction,
        cfg.seed,
        cfg.limit_train,
        cfg.limit_test,
        cfg.memory_budget_mb,
    )


def load_folder(
    data_dir: str,
    size: int,
    channels: str = "auto",
    policy: str = "resize",
    per_image: int = 16,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
    limit_train: int = 0,
    limit_test: int = 0,
    memory_budget_mb: float = 0,
) -> DataSplits:
    """A folder of images as splits of (C, size, size) (see image_folder). Raises DataError."""
    if not data_dir:
        raise DataError("dataset=folder needs data_dir: the folder that holds the images")
    root = Path(data_dir).expanduser().resolve()
    try:
        plan = image_folder.plan(root, channels, val_fraction, test_fraction, seed, limit_train, limit_test)
        for note in plan.notes:
            print(f"note: {note}")
        c = plan.channels
        shape = (c, size, size)
        train_files = plan.splits["train"].files
        need = image_folder.estimated_bytes(train_files, c, size, policy, per_image)
        budget = image_folder.memory_budget(memory_budget_mb)
        in_memory = need <= budget
        val = Split(*image_folder.load_split(plan.splits["val"].files, c, size, policy, per_image, seed + 1)[:2])
        test = Split(*image_folder.load_split(plan.splits["test"].files, c, size, policy, per_image, seed + 2)[:2])
        if in_memory:
            images, labels, full = image_folder.load_split(train_files, c, size, policy, per_image, seed + 3)
            train = Split(images, labels)
            if policy == "patches":
                train_batches, loading = image_folder.PatchesInMemory(full, size, per_image, seed), "patches in memory"
            else:
                train_batches, loading = None, "in-memory"
        else:  # a sample in memory (the VAE's fitted prior, the mean-image floor); the epochs stream
            per_image_bytes = max(1, need // len(train_files))
            sample = train_files[: min(len(train_files), max(256, min(2000, budget // 4 // per_image_bytes)))]
            images, labels, _ = image_folder.load_split(sample, c, size, policy, 1, seed + 3)
            streamed = image_folder.Streamed([f.path for f in train_files], c, size, policy, per_image, seed)
            train = Split(images, labels, count=len(streamed))
            train_batches, loading = streamed, "streamed"
    except image_folder.FolderError as exc:
        raise DataError(str(exc)) from None
    files = train_files + plan.splits["val"].files + plan.splits["test"].files
    print(
        f"data: {root}: {len(train_files)} train, {len(plan.splits['val'].files)} val, "
        f"{len(plan.splits['test'].files)} test images ({plan.split_by} split) as {c}x{size}x{size} by {policy}; "
        f"training images {loading} ({need / 2**20:.3g} MiB against a budget of {budget / 2**20:.3g} MiB)"
    )
    tags = {
        "data_loading": loading,
        "data_source": str(root),
        "image_shape": f"{c}x{size}x{size}",
        "image_policy": policy,
        "data_split_by": plan.split_by,
        "data_images": f"train {len(train_files)}, val {len(plan.splits['val'].files)}, "
        f"test {len(plan.splits['test'].files)}",
        "data_memory_mib": f"{need / 2**20:.1f} needed, {budget / 2**20:.0f} budget",
        "data_skipped_files": str(len(plan.skipped)),
        "data_skipped_names": ", ".join(str(p.relative_to(root)) for p in plan.skipped[:20])[:500],
        "data_converted_images": str(plan.converted),
    }
    return DataSplits(
        name=root.name or "folder",
        root=str(root),
        train=train,
        val=val,
        test=test,
        digest=image_folder.digest(root, files, shape, policy),
        train_batches=train_batches,
        loading=loading,
        source="folder",
        tags=tags,
    )

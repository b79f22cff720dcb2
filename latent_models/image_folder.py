"""A folder of the user's own images as train / validation / test splits of one shape.

Any format Pillow reads, flat or in sub-folders. The split is given by `train/`, `val/`,
`test/` sub-folders where they exist; otherwise it is drawn by image, seeded (and a missing
`val/` or `test/` is carved from `train/` by image), so crops of one photograph never land
on both sides. Beside `train/`, a sub-folder of images under any other name, or an image file
directly beside it, is refused, not left unread. Images are brought to `image_size` x `image_size` by one policy:

- `resize`: the whole image squeezed to the square (aspect ratio not kept);
- `center_crop`: the shorter side scaled to `image_size`, then the central square;
- `patches`: images stay at full size (scaled up only where a side is shorter than
  `image_size`); training draws `patches_per_image` random crops from each image, fresh every
  epoch; validation and test use fixed crops (seeded), the same in every run.

Channels: `auto` is 3 when any image is colour (by its mode), else 1; `1` converts colour to
grey (ITU-R 601 luma, Pillow's "L"); `3` replicates grey into RGB. Files Pillow cannot read
are skipped and counted (the run says how many and which); a folder with none readable is
refused. The training images stay in memory (on the device) when they fit the memory budget,
else they stream from disk through a DataLoader with worker processes; validation and test
are always held in memory.
"""

from __future__ import annotations

import hashlib
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch.nn import functional as F

SPLIT_FOLDERS = ("train", "val", "test")
# Names of sub-folders (any case) that mean a split but are not one: where no split folder exists
# they are classes like any other sub-folder, and the run says so.
SPLIT_LIKE = {"train", "training", "val", "valid", "validation", "test", "testing"}
COLOUR_MODES = {"RGB", "RGBA", "RGBX", "P", "PA", "CMYK", "YCbCr", "LAB", "HSV", "La"}
DEFAULT_FOLDER_IMAGE_SIZE = 64
STREAM_WORKERS = 4  # decoding processes when the training images stream from disk


class FolderError(Exception):
    """A user-facing problem with an image folder (raised as data.DataError by the caller)."""


def image_suffixes() -> set[str]:
    """The file endings Pillow can open here (.png, .jpg, .jpeg, .tif, .bmp, .webp, ...)."""
    from PIL import Image

    return {ext.lower() for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN}


def _image_files(folder: Path) -> Iterator[Path]:
    """Image files under `folder`, recursively, by their ending; hidden files and folders skipped."""
    suffixes = image_suffixes()
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        yield from (Path(dirpath) / f for f in filenames if _image_name(f, suffixes))


def _image_name(name: str, suffixes: set[str]) -> bool:
    """A file name the folder reads as an image: not hidden, an ending Pillow opens."""
    return not name.startswith(".") and Path(name).suffix.lower() in suffixes


def find_images(folder: Path) -> list[Path]:
    """Image files under `folder`, recursively, sorted by path; hidden files and folders skipped."""
    return sorted(_image_files(folder))


@dataclass(frozen=True)
class ImageFile:
    path: Path
    colour: bool
    size: tuple[int, int]  # (width, height), as Pillow gives it
    label: int  # index of its sub-folder within its split's folder (0 for a flat folder)


def scan(paths: list[Path], split_root: dict[Path, Path]) -> tuple[list[ImageFile], list[Path]]:
    """(readable images, unreadable files): each file's header and checksum are read, not its pixels."""
    from PIL import Image
    from PIL.ImageFile import StubImageFile

    readable, skipped = [], []
    label_of: dict[tuple[Path, Path], int] = {}
    for path in paths:
        try:
            with Image.open(path) as image:
                mode, size = image.mode, image.size
                stub = isinstance(image, StubImageFile)  # HDF5, GRIB...: Pillow names, never decodes
                image.verify()
        except Exception:  # Pillow raises many types for truncated or corrupt files
            stub = True
        if stub:
            skipped.append(path)
            continue
        root = split_root[path]
        parent = path.parent.relative_to(root)
        label_of.setdefault((root, parent), len([k for k in label_of if k[0] == root]))
        readable.append(ImageFile(path, mode in COLOUR_MODES, size, label_of[(root, parent)]))
    return readable, skipped


def decode(path: Path, channels: int) -> torch.Tensor:
    """(C, H, W) float32 in [0, 1]; 16-bit grey scaled by 65535."""
    from PIL import Image

    with Image.open(path) as image:
        image.load()
        if image.mode in ("I;16", "I;16B", "I;16L", "I") and channels == 1:
            array = np.asarray(image, dtype=np.float32) / (65535.0 if image.mode.startswith("I;16") else 1.0)
            if image.mode == "I":
                array = array / max(float(array.max()), 1.0)
            return torch.from_numpy(np.ascontiguousarray(array)).clamp_(0, 1).unsqueeze(0)
        if image.mode in ("I;16", "I;16B", "I;16L", "I"):
            image = image.point(lambda v: v / 256).convert("L")
        converted = image.convert("L" if channels == 1 else "RGB")
        array = np.asarray(converted, dtype=np.uint8)
    tensor = torch.from_numpy(array.copy())
    tensor = tensor.unsqueeze(0) if channels == 1 else tensor.permute(2, 0, 1)
    return tensor.to(torch.float32).div_(255.0)


def _resize(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    if image.shape[-2:] == (height, width):
        return image
    return (
        F.interpolate(image.unsqueeze(0), size=(height, width), mode="bilinear", antialias=True).squeeze(0).clamp_(0, 1)
    )


def at_least(image: torch.Tensor, size: int) -> torch.Tensor:
    """Scaled up (aspect kept) where a side is shorter than `size`; unchanged otherwise."""
    h, w = image.shape[-2:]
    if min(h, w) >= size:
        return image
    scale = size / min(h, w)
    return _resize(image, max(size, math.ceil(h * scale)), max(size, math.ceil(w * scale)))


def fit_to(image: torch.Tensor, size: int, policy: str) -> torch.Tensor:
    """One image brought to (C, size, size) by `resize` or `center_crop`."""
    if policy == "resize":
        return _resize(image, size, size)
    h, w = image.shape[-2:]
    scale = size / min(h, w)
    image = _resize(image, max(size, round(h * scale)), max(size, round(w * scale)))
    h, w = image.shape[-2:]
    top, left = (h - size) // 2, (w - size) // 2
    return image[:, top : top + size, left : left + size]


def random_crops(images: list[torch.Tensor], size: int, per_image: int, generator: torch.Generator) -> torch.Tensor:
    """`per_image` crops of size x size from each image, positions drawn from `generator`."""
    crops = []
    for image in images:
        h, w = image.shape[-2:]
        tops = torch.randint(0, h - size + 1, (per_image,), generator=generator).tolist()
        lefts = torch.randint(0, w - size + 1, (per_image,), generator=generator).tolist()
        crops += [image[:, t : t + size, s : s + size] for t, s in zip(tops, lefts)]
    return torch.stack(crops)


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The crops' and the stream's order of one epoch: from (seed, epoch) alone, so a resumed
    run draws what the uninterrupted one would have."""
    return torch.Generator().manual_seed(seed * 100_003 + epoch)


class PatchesInMemory:
    """Full-size training images in memory; each epoch a fresh set of random crops."""

    def __init__(self, images: list[torch.Tensor], size: int, per_image: int, seed: int):
        self.images, self.size, self.per_image, self.seed = images, size, per_image, seed

    def __len__(self) -> int:
        return len(self.images) * self.per_image

    def epoch_images(self, epoch: int) -> torch.Tensor:
        return random_crops(self.images, self.size, self.per_image, epoch_generator(self.seed, epoch))


class _StreamedImages(torch.utils.data.Dataset):
    """Decodes one training image per item in a DataLoader worker (for `patches`: one crop)."""

    def __init__(self, files: list[Path], channels: int, size: int, policy: str, per_image: int, seed: int):
        self.files, self.channels, self.size, self.policy = files, channels, size, policy
        self.per_image, self.seed, self.epoch = per_image, seed, 0

    def __len__(self) -> int:
        return len(self.files) * (self.per_image if self.policy == "patches" else 1)

    def __getitem__(self, index: int) -> torch.Tensor:
        path = self.files[index % len(self.files)]
        try:
            image = decode(path, self.channels)
        except Exception as exc:
            raise FolderError(f"{path} could not be read while streaming: {type(exc).__name__}: {exc}") from None
        if self.policy != "patches":
            return fit_to(image, self.size, self.policy)
        generator = epoch_generator(self.seed * 7919 + index, self.epoch)
        return random_crops([at_least(image, self.size)], self.size, 1, generator)[0]


class Streamed:
    """Training images read from disk each epoch by `STREAM_WORKERS` processes."""

    def __init__(self, files: list[Path], channels: int, size: int, policy: str, per_image: int, seed: int):
        self.dataset = _StreamedImages(files, channels, size, policy, per_image, seed)
        self.seed = seed

    def __len__(self) -> int:
        return len(self.dataset)

    def epoch_batches(self, epoch: int, batch_size: int, device: torch.device) -> Iterator[torch.Tensor]:
        self.dataset.epoch = epoch
        workers = min(STREAM_WORKERS, os.cpu_count() or 1)
        loader = torch.utils.data.DataLoader(
            self.dataset,
            batch_size=batch_size,
            shuffle=True,
            drop_last=True,
            generator=epoch_generator(self.seed, epoch),
            num_workers=workers,
            pin_memory=device.type == "cuda",
            persistent_workers=False,
        )
        for batch in loader:
            yield batch.to(device, non_blocking=True)


@dataclass
class FolderSplit:
    files: list[ImageFile]

    @property
    def paths(self) -> list[Path]:
        return [f.path for f in self.files]


@dataclass
class FolderPlan:
    """What was found and decided before any pixel is decoded."""

    root: Path
    splits: dict[str, FolderSplit]
    skipped: list[Path]
    channels: int
    converted: int  # images whose mode changed (colour -> grey, or grey -> RGB)
    split_by: str  # "folders" or "seeded"
    notes: list[str] = field(default_factory=list)


def _split_roots(root: Path) -> dict[str, Path]:
    return {name: root / name for name in SPLIT_FOLDERS if (root / name).is_dir()}


def _other_folders(root: Path, roots: dict[str, Path]) -> list[str]:
    """The names of `root`'s sub-folders (not hidden) other than the split folders that hold an image
    at any depth (the first file whose header Pillow reads as pixels). A split folder spelled otherwise on a
    case-insensitive file system (`Train/`) is the split folder itself, not another one."""
    return [
        d.name
        for d in sorted(root.iterdir())
        if d.is_dir()
        and not d.name.startswith(".")
        and not any(d.samefile(r) for r in roots.values())
        and any(_holds_pixels(f) for f in _image_files(d))
    ]


def _loose_images(root: Path) -> list[str]:
    """The names of the images directly in `root` (not hidden): files of an image ending whose
    header Pillow reads as pixels (not an HDF5 or GRIB file Pillow only names)."""
    suffixes = image_suffixes()
    return sorted(f.name for f in root.iterdir() if f.is_file() and _image_name(f.name, suffixes) and _holds_pixels(f))


def _holds_pixels(path: Path) -> bool:
    from PIL import Image
    from PIL.ImageFile import StubImageFile

    try:
        with Image.open(path) as image:
            return not isinstance(image, StubImageFile)
    except Exception:  # noqa: BLE001 - Pillow raises many types for what it cannot read
        return False


def plan(
    root: Path, channels: str, val_fraction: float, test_fraction: float, seed: int, limit_train: int, limit_test: int
) -> FolderPlan:
    """Find, check and split the images; choose the channels. Raises FolderError."""
    if not root.is_dir():
        raise FolderError(f"image folder {root} does not exist or is not a folder")
    roots = _split_roots(root)
    if roots and "train" not in roots:
        raise FolderError(f"{root} has {'/'.join(roots)} sub-folder(s) but no train/: add train/, or flatten it")
    others = _other_folders(root, roots)
    if roots and others:  # the splits are read from train/, val/ and test/ alone
        raise FolderError(
            f"{root}: sub-folder(s) {', '.join(f'{d}/' for d in others)} hold images that would go unused: "
            "beside train/, only val/ and test/ are read (rename them to one of those, or move them out)"
        )
    loose = _loose_images(root) if roots else []
    if loose:
        shown = ", ".join(loose[:3]) + (f" and {len(loose) - 3} more" if len(loose) > 3 else "")
        raise FolderError(
            f"{root}: {len(loose)} image file(s) beside train/ would go unused ({shown}): with split folders "
            "only train/, val/ and test/ are read (move them into one of those, or out)"
        )
    sources = roots or {"all": root}
    paths = {name: find_images(folder) for name, folder in sources.items()}
    split_root = {p: sources[name] for name, ps in paths.items() for p in ps}
    every = [p for ps in paths.values() for p in ps]
    if not every:
        raise FolderError(
            f"no image files in {root} (looked for .png, .jpg, .tif, .bmp, .webp and the other formats Pillow reads)"
        )
    readable, skipped = scan(every, split_root)
    if not readable:
        raise FolderError(
            f"no readable image in {root}: all {len(skipped)} image file(s) failed to open (e.g. {skipped[0].name})"
        )
    by_path = {f.path: f for f in readable}
    found = {name: [by_path[p] for p in ps if p in by_path] for name, ps in paths.items()}
    generator = torch.Generator().manual_seed(seed)

    def carve(pool: list[ImageFile], fraction: float, what: str) -> tuple[list[ImageFile], list[ImageFile]]:
        if len(pool) < 2:
            raise FolderError(
                f"{root}: {len(pool)} readable training image(s), too few to carve a {what} split by image "
                f"(need at least 2; or add a {what}/ sub-folder)"
            )
        n = min(len(pool) - 1, max(1, round(fraction * len(pool))))
        order = torch.randperm(len(pool), generator=generator).tolist()
        taken = sorted(order[:n])
        return [pool[i] for i in order[n:]], [pool[i] for i in taken]

    if roots:
        train = found["train"]
        test = found.get("test") if "test" in roots else None
        val = found.get("val") if "val" in roots else None
        if test is None:
            train, test = carve(train, test_fraction, "test")
        if val is None:
            train, val = carve(train, val_fraction, "val")
        split_by = "folders"
    else:
        pool = found["all"]
        if len(pool) < 3:
            raise FolderError(
                f"{root}: {len(pool)} readable image(s); a split by image needs at least 3 (train, val, test)"
            )
        train, test = carve(pool, test_fraction, "test")
        train, val = carve(train, val_fraction, "val")
        split_by = "seeded"
    for name, files in (("train", train), ("val", val), ("test", test)):
        if not files:
            raise FolderError(f"{root}: the {name} split has no readable image")
    train = sorted(train, key=lambda f: f.path)
    if limit_train:
        train = train[:limit_train]
    if limit_test:
        test = test[:limit_test]
    everything = train + val + test
    colour = sum(f.colour for f in everything)
    chosen = (3 if colour else 1) if channels == "auto" else int(channels)
    converted = colour if chosen == 1 else len(everything) - colour
    notes = []
    if not roots and (alike := [d for d in others if d.lower() in SPLIT_LIKE]):
        notes.append(
            f"{root} has no train/ sub-folder, so its sub-folders ({', '.join(f'{d}/' for d in alike)} among them) "
            "are classes and the images are split by image (seeded); name the split sub-folders train/, val/ "
            "and test/ to split by folder"
        )
    if skipped:
        shown = ", ".join(str(p.relative_to(root)) for p in skipped[:5]) + (" ..." if len(skipped) > 5 else "")
        notes.append(f"skipped {len(skipped)} unreadable file(s) in {root}: {shown}")
    if chosen == 1 and colour:
        notes.append(f"converted {colour} colour image(s) to grey (channels={channels})")
    if chosen == 3 and converted:
        notes.append(f"replicated {converted} grey image(s) into RGB (channels={channels})")
    return FolderPlan(
        root,
        {"train": FolderSplit(train), "val": FolderSplit(val), "test": FolderSplit(test)},
        skipped,
        chosen,
        converted,
        split_by,
        notes,
    )


def digest(root: Path, files: list[ImageFile], shape: tuple[int, int, int], policy: str) -> str:
    """sha256 over each file's path (relative to the folder) and bytes, and the shape and policy
    the models see, first 16 hex digits: the same folder prepared otherwise is other data."""
    h = hashlib.sha256(f"{shape}|{policy}".encode())
    for f in sorted(files, key=lambda f: f.path):
        h.update(str(f.path.relative_to(root)).encode())
        with f.path.open("rb") as stream:
            for chunk in iter(lambda: stream.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:16]


def estimated_bytes(files: list[ImageFile], channels: int, size: int, policy: str, per_image: int) -> int:
    """float32 bytes of the training images held in memory (patches: the full images plus one epoch's crops)."""
    if policy != "patches":
        return len(files) * channels * size * size * 4
    full = sum(max(w, size) * max(h, size) for w, h in (f.size for f in files))
    return (full + len(files) * per_image * size * size) * channels * 4


def memory_budget(budget_mb: float) -> int:
    """Bytes the training images may take in memory: `budget_mb`, else half of what is available now."""
    if budget_mb:
        return int(budget_mb * 2**20)
    import psutil

    return psutil.virtual_memory().available // 2


def load_split(files: list[ImageFile], channels: int, size: int, policy: str, per_image: int, seed: int):
    """(images, labels, full images) of a held-in-memory split, with any unreadable file refused
    by name. `patches`: the images are fixed crops (seeded, the same in every run on this
    folder) and the full images come back scaled up to `size` where smaller, ready to crop."""
    decoded = []
    for f in files:
        try:
            decoded.append(decode(f.path, channels))
        except Exception as exc:
            raise FolderError(f"{f.path} passed its header check but could not be decoded: {exc}") from None
    if policy == "patches":
        decoded = [at_least(x, size) for x in decoded]
        images = random_crops(decoded, size, per_image, torch.Generator().manual_seed(seed))
        labels = torch.tensor([f.label for f in files for _ in range(per_image)], dtype=torch.int64)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            images = torch.stack([fit_to(x, size, policy) for x in decoded])
        labels = torch.tensor([f.label for f in files], dtype=torch.int64)
    return images.contiguous(), labels, decoded

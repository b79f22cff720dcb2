"""A folder of the user's own images as a dataset (latent_models.image_folder, data.load_folder):
split by image, shapes by policy, channels, unreadable files, streaming, digest, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from latent_models import cli, image_folder
from latent_models.data import DataError, load_data, load_folder
from latent_models.errors import ConfigError
from latent_models.kinds.denoiser.config import AEConfig
from latent_models.kinds.vae.config import VAEConfig
from latent_models.training.loop import epoch_batches


def write_images(folder: Path, n: int, colour: int = 0, seed: int = 0, suffixes=(".png", ".jpg")) -> list[Path]:
    """`n` smooth random images of mixed sizes (28..70 px a side); the first `colour` in RGB."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        h, w = rng.integers(28, 71, 2)
        base = np.linspace(0, 1, w)[None, :, None] * rng.random(3) + 0.3 * rng.random((h, w, 3))
        array = (np.clip(base, 0, 1) * 255).astype(np.uint8)
        image = Image.fromarray(array, "RGB") if i < colour else Image.fromarray(array[..., 0], "L")
        path = folder / f"image{i:02d}{suffixes[i % len(suffixes)]}"
        image.save(path)
        paths.append(path)
    return paths


def test_a_flat_folder_is_split_by_image_seeded(tmp_path):
    write_images(tmp_path / "a", 6)
    write_images(tmp_path / "a" / "nested", 4, seed=1)  # sub-folders count too
    plans = [image_folder.plan(tmp_path / "a", "auto", 0.2, 0.2, seed, 0, 0) for seed in (0, 0, 1)]
    split = [{k: sorted(map(str, v.paths)) for k, v in p.splits.items()} for p in plans]
    assert split[0] == split[1] and split[0] != split[2]  # seeded
    assert [len(split[0][k]) for k in ("train", "val", "test")] == [6, 2, 2]
    every = [p for files in split[0].values() for p in files]
    assert len(every) == len(set(every)) == 10  # each image in exactly one split
    assert plans[0].split_by == "seeded"


def test_split_sub_folders_are_used_and_validation_is_carved_from_train(tmp_path):
    write_images(tmp_path / "train", 8)
    write_images(tmp_path / "test", 3, seed=5)
    data = load_folder(str(tmp_path), 16, val_fraction=0.25)
    assert data.sizes == {"train": 6, "val": 2, "test": 3}
    assert data.tags["data_split_by"] == "folders"
    with pytest.raises(DataError, match="no train/"):
        (tmp_path / "train").rename(tmp_path / "training")
        load_folder(str(tmp_path), 16)


def test_image_sub_folders_beside_train_other_than_val_and_test_are_refused(tmp_path, monkeypatch, capsys):
    write_images(tmp_path / "train", 6)
    write_images(tmp_path / "validation", 2, seed=1)
    write_images(tmp_path / "Train" / "deep", 1, seed=2)  # any depth; a case-insensitive file system: train/ itself
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("no images: not a split")
    write_images(tmp_path / ".cache", 1)  # hidden: never read
    opened = []
    monkeypatch.setattr(image_folder, "scan", lambda *args: opened.append(args))  # refused before the scan
    with pytest.raises(DataError) as refused:
        load_folder(str(tmp_path), 16)
    message = str(refused.value)
    assert "sub-folder(s) Train/, validation/ hold images that would go unused" in message
    assert "only val/ and test/ are read" in message
    assert "notes" not in message and ".cache" not in message and "\n" not in message and not opened
    monkeypatch.undo()
    (tmp_path / "validation").rename(tmp_path / "val")
    (tmp_path / "Train").rename(tmp_path / ".Train")  # hidden: left alone
    for image in write_images(tmp_path / "loose", 4, seed=3):
        image.rename(tmp_path / f"loose-{image.name}")  # image files directly beside train/
    (tmp_path / "loose").rmdir()
    with pytest.raises(DataError) as refused:
        load_folder(str(tmp_path), 16)
    message = str(refused.value)
    assert "4 image file(s) beside train/ would go unused (loose-" in message and "and 1 more" in message
    assert "\n" not in message
    for image in tmp_path.glob("loose-*"):
        image.unlink()
    (tmp_path / "README.txt").write_text("not an image: left alone")
    (tmp_path / "features.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(64))  # a format Pillow only names
    (tmp_path / "broken.png").write_bytes(b"not a png")
    assert load_folder(str(tmp_path), 16).sizes == {"train": 5, "val": 2, "test": 1}
    # Without train/, every sub-folder is a class and the split is seeded: split-like names are said so.
    (tmp_path / "train").rename(tmp_path / "Training")
    (tmp_path / "val").rename(tmp_path / "cats")
    capsys.readouterr()
    data = load_folder(str(tmp_path), 16)
    assert data.tags["data_split_by"] == "seeded" and sum(data.sizes.values()) == 8
    assert "no train/ sub-folder, so its sub-folders (Training/ among them) are classes" in capsys.readouterr().out


def test_policies_bring_images_to_the_square(tmp_path):
    write_images(tmp_path, 10, colour=4)
    for policy in ("resize", "center_crop"):
        data = load_folder(str(tmp_path), 16, policy=policy)
        assert data.image_shape == (3, 16, 16) and data.train_batches is None and data.loading == "in-memory"
        assert len(data.train) + len(data.val) + len(data.test) == 10
    data = load_folder(str(tmp_path), 16, policy="patches", per_image=5)
    assert data.loading == "patches in memory" and len(data.val) == 5 * 1 and len(data.test) == 5 * 1
    first, second = data.train_batches.epoch_images(0), data.train_batches.epoch_images(1)
    assert first.shape == (8 * 5, 3, 16, 16)
    assert not torch.equal(first, second)  # fresh crops every epoch ...
    assert torch.equal(first, data.train_batches.epoch_images(0))  # ... the same for an epoch run again (resume)
    again = load_folder(str(tmp_path), 16, policy="patches", per_image=5)
    assert torch.equal(again.val.images, data.val.images) and torch.equal(again.test.images, data.test.images)


def test_center_crop_keeps_the_centre_and_resize_the_whole_image(tmp_path):
    array = np.zeros((40, 80), np.uint8)
    array[:, :10] = 255  # a white stripe on the left eighth
    for i in range(3):
        Image.fromarray(array, "L").save(tmp_path / f"stripe{i}.png")
    resized = load_folder(str(tmp_path), 16, policy="resize").train.images
    cropped = load_folder(str(tmp_path), 16, policy="center_crop").train.images
    assert resized[0, 0, :, 0].min() > 0.9  # the stripe survives a resize
    assert cropped.max() < 0.05  # and falls outside the central square


def test_channels(tmp_path, capsys):
    write_images(tmp_path, 6, colour=2)
    auto = load_folder(str(tmp_path), 16)
    assert auto.image_shape[0] == 3 and auto.tags["data_converted_images"] == "4"
    grey_in_rgb = [x for x in torch.cat([auto.train.images, auto.val.images, auto.test.images]) if x[0].equal(x[1])]
    assert len(grey_in_rgb) >= 4  # grey replicated into RGB
    grey = load_folder(str(tmp_path), 16, channels="1")
    assert grey.image_shape == (1, 16, 16) and grey.tags["data_converted_images"] == "2"
    assert "converted 2 colour image(s) to grey (channels=1)" in capsys.readouterr().out


def test_unreadable_files_are_skipped_and_counted(tmp_path, capsys):
    write_images(tmp_path, 5)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not a png")
    (tmp_path / "notes.txt").write_text("not an image")  # not an image file: not counted
    data = load_folder(str(tmp_path), 16)
    assert sum(data.sizes.values()) == 5 and data.tags["data_skipped_files"] == "1"
    assert "skipped 1 unreadable file(s)" in capsys.readouterr().out and data.tags["data_skipped_names"] == "broken.png"


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda d: None, "no image files in"),
        (lambda d: (d / "a.png").write_bytes(b"garbage"), "no readable image in"),
        (lambda d: write_images(d, 2), "a split by image needs at least 3"),
        (lambda d: (write_images(d / "train", 3), write_images(d / "validation", 1)), "validation/ hold images"),
    ],
    ids=["empty", "unreadable", "too-few", "other-split-folder"],
)
def test_bad_folders_are_one_line_errors_before_any_run(tmp_path, tracking, make, message):
    folder = tmp_path / "images"
    folder.mkdir()
    make(folder)
    result = CliRunner().invoke(cli.command("ae"), ["--dataset", "folder", "--data_dir", str(folder), "--epochs", "1"])
    assert result.exit_code == 1, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and message in errors[0], result.output
    assert "Traceback" not in result.output
    import mlflow

    assert mlflow.search_runs(search_all_experiments=True).empty  # nothing started


def test_an_image_size_the_model_cannot_take_is_refused_in_one_line(tmp_path):
    write_images(tmp_path, 4)
    for command, size in ((cli.command("ae"), 30), (cli.command("vae"), 512)):
        result = CliRunner().invoke(
            command, ["--dataset", "folder", "--data_dir", str(tmp_path), "--image_size", str(size)]
        )
        assert result.exit_code != 0 and "Traceback" not in result.output
        assert f"image_size {size} does not fit" in result.output and "multiples of 4" in result.output
    with pytest.raises(ConfigError, match="mnist images are 1x28x28"):
        AEConfig(image_size=64)
    AEConfig(dataset="folder", image_size=512)  # the U-Net is fully convolutional
    with pytest.raises(ConfigError, match="from 4 to 256"):
        VAEConfig(dataset="folder", image_size=260)


def test_training_images_stream_when_over_the_memory_budget(tmp_path):
    write_images(tmp_path, 10, colour=10)
    for policy in ("resize", "patches"):
        data = load_folder(str(tmp_path), 16, policy=policy, per_image=3, memory_budget_mb=0.001)
        assert data.loading == "streamed" and data.tags["data_loading"] == "streamed"
        assert len(data.train) == 8 * (3 if policy == "patches" else 1)
        batches = list(epoch_batches(data.train_batches, 0, 4, torch.Generator(), torch.device("cpu")))
        assert len(batches) == len(data.train) // 4 and batches[0].shape == (4, 3, 16, 16)
        again = list(epoch_batches(data.train_batches, 0, 4, torch.Generator(), torch.device("cpu")))
        assert all(torch.equal(a, b) for a, b in zip(batches, again))  # an epoch is seeded: resumable


def test_the_digest_follows_the_files_and_the_shape(tmp_path):
    paths = write_images(tmp_path, 5)
    digest = load_folder(str(tmp_path), 16).digest
    assert load_folder(str(tmp_path), 16).digest == digest
    assert load_folder(str(tmp_path), 20).digest != digest  # other data for the model
    Image.open(paths[0]).rotate(90).save(paths[0])
    assert load_folder(str(tmp_path), 16).digest != digest  # resume refuses a changed folder


def test_load_data_picks_the_folder_by_config(tmp_path):
    write_images(tmp_path, 5, colour=5)
    cfg = AEConfig(dataset="folder", data_dir=str(tmp_path), image_size=12, image_policy="center_crop")
    data = load_data(cfg)
    assert data.image_shape == (3, 12, 12) and data.identity == f"folder:{tmp_path.name}:{data.digest}"

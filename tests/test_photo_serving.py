"""The served U-Net denoiser on photos: any size, its pixel budget, tiles, the self-ensemble.

Tiny untrained U-Nets, logged and loaded as `mlflow models serve` loads them; the expected
answers are computed here from the torch module itself.
"""

import base64
import struct
import time
import zlib

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from torch.nn import functional as F

from latent_models.kinds.denoiser.config import DenoiserConfig
from latent_models.kinds.denoiser.model import receptive_field
from latent_models.kinds.denoiser.serving import MAX_PIXELS
from latent_models.kinds.denoiser.whole_image import MIN_SIDE, TILE, Tiling, denoise, tiling
from latent_models.models import build_model
from latent_models.serving.inputs import InvalidInput
from latent_models.serving.logged_model import model_saver
from latent_models.serving.png import decode_png, encode_png
from latent_models.tracking import log_model

GREY, RGB = (1, 28, 28), (3, 28, 28)


def _model(image_shape=GREY, arch="unet", width=4, seed=0):
    torch.manual_seed(seed)
    model = build_model(DenoiserConfig(arch=arch, width=width, latent_dim=8, image_shape=image_shape)).eval()
    with torch.no_grad():  # an untrained network's output hardly varies: make it
        for p in model.parameters():
            p.mul_(3.0)
    return model


def _log(model, settings=None, **load):
    x = np.zeros((1, *model.config.image_shape), np.float32)
    with mlflow.start_run():
        info = log_model("denoiser", model_saver(model, x, settings=settings), 0, "denoiser")
    return info, mlflow.pyfunc.load_model(info.model_uri, **load)


def _whole(model, x: np.ndarray) -> np.ndarray:
    """The whole (N, C, H, W) image in one pass: reflection-padded to multiples of 4, cropped back."""
    t = torch.from_numpy(x)
    h, w = t.shape[-2:]
    with torch.inference_mode():
        return model(F.pad(t, (0, (-w) % 4, 0, (-h) % 4), mode="reflect"))[..., :h, :w].numpy()


def _png(pixels: np.ndarray) -> str:
    return encode_png(pixels)


def _refused(loaded, value, params=None) -> str:
    with pytest.raises(InvalidInput) as err:
        loaded.predict(value, params=params)
    assert err.value.get_http_status_code() == 400
    assert "\n" not in err.value.message  # one line
    return err.value.message


def test_grey_and_rgb_images_of_any_size_come_back_in_their_form_and_size(tracking):
    rng = np.random.default_rng(0)
    grey, rgb = _model(GREY), _model(RGB)
    _, grey_loaded = _log(grey)
    _, rgb_loaded = _log(rgb)

    x = rng.random((2, 75, 100), dtype=np.float32)  # 100 wide, 75 high: not a multiple of 4
    expected = _whole(grey, x[:, None])[:, 0]
    out = grey_loaded.predict(x)
    assert out.shape == (2, 75, 100) and np.allclose(out, expected, atol=1e-5)
    assert grey_loaded.predict(x[:, None]).shape == (2, 1, 75, 100)
    answer = grey_loaded.predict(pd.DataFrame({"image": [_png(np.rint(x[0] * 255).astype(np.uint8))]}))
    back = decode_png(answer["image"][0], 0, (1, 75, 100))
    assert back.shape == (75, 100)
    from_pixels = _whole(grey, (np.rint(x[:1] * 255) / 255).astype(np.float32)[:, None])[0, 0]
    assert np.abs(back / 255 - from_pixels).max() <= 1 / 255 + 1e-6

    c = rng.random((2, 3, 75, 100), dtype=np.float32)
    out = rgb_loaded.predict(c)
    assert out.shape == c.shape and np.allclose(out, _whole(rgb, c), atol=1e-5)
    pixels = np.rint(c[0].transpose(1, 2, 0) * 255).astype(np.uint8)
    answer = rgb_loaded.predict(pd.DataFrame({"image": [_png(pixels)]}))
    assert decode_png(answer["image"][0], 0, (3, 75, 100)).shape == (75, 100, 3)

    # the other channel count: refused, one line, saying the model takes its own only
    message = _refused(grey_loaded, pd.DataFrame({"image": [_png(pixels)]}))
    assert message.startswith("image 0: PNG is RGB (3 channels); expected 8-bit grayscale — this model takes grey")
    assert "got 3x75x100 (RGB) (a model trained on grey images takes only those)" in message
    message = _refused(rgb_loaded, x)
    assert "this model takes RGB images of any size from 8x8" in message and "got 1x75x100 (grey)" in message
    # the flat form stays the training size's
    assert grey_loaded.predict(x[:, :28, :28].reshape(2, 784)).shape == (2, 784)
    assert "(N, 784) (28x28 flattened)" in _refused(grey_loaded, x.reshape(2, -1))


def test_a_png_column_takes_each_image_in_its_own_size(tracking):
    rng = np.random.default_rng(1)
    model = _model()
    info, loaded = _log(model)
    sizes = [(75, 100), (28, 28), (41, 33), (75, 100)]
    pixels = [rng.integers(0, 256, size, dtype=np.uint8) for size in sizes]
    answer = loaded.predict(pd.DataFrame({"image": [_png(p) for p in pixels]}))
    assert len(answer) == len(sizes)
    for i, (p, size) in enumerate(zip(pixels, sizes)):
        out = decode_png(answer["image"][i], i, (1, *size))
        alone = _whole(model, (p / 255).astype(np.float32)[None, None])[0, 0]
        assert out.shape == size and np.abs(out / 255 - alone).max() <= 1 / 255 + 1e-6
    metadata = mlflow.models.get_model_info(info.model_uri).metadata["inputs"]
    assert metadata["max_pixels"] == MAX_PIXELS and metadata["min_side"] == MIN_SIDE
    assert "8-bit grayscale PNGs of any size from 8x8 up to 16000000 pixels" in metadata["images"]


def _png_claiming(width: int, height: int, rows: int = 1, cols: int = 1) -> str:
    """A grey PNG whose header claims width x height and whose data holds rows x cols pixels."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    data = b"".join(b"\0" + bytes(cols) for _ in range(rows))
    raw = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(data))
        + chunk(b"IEND", b"")
    )
    return base64.b64encode(raw).decode()


def test_over_the_budget_is_refused_in_milliseconds_without_decoding(tracking):
    _, loaded = _log(_model())
    ok = _png(np.zeros((64, 64), np.uint8))
    huge = _png_claiming(100_000, 100_000)
    start = time.perf_counter()
    message = _refused(loaded, pd.DataFrame({"image": [ok, huge]}))  # every header before any decoding
    elapsed = time.perf_counter() - start
    assert message == (
        "image 1: PNG is 100000x100000 (10000000000 pixels), over this model's budget of 16000000 pixels per image"
    )
    assert elapsed < 0.1, elapsed
    # a float tensor: its shape, before any value is read (a zero-stride view holds no memory)
    floats = np.broadcast_to(np.float32(0.5), (1, 4001, 4000))
    start = time.perf_counter()
    message = _refused(loaded, floats)
    assert time.perf_counter() - start < 0.1
    assert message == "images are 4000x4001 (16004000 pixels), over this model's budget of 16000000 pixels per image"
    assert "over this model's budget" in _refused(loaded, [[[0.5] * 4001] * 4000])  # nested lists too


def test_the_budget_is_a_setting_of_the_logged_model(tracking):
    model = _model()
    info, loaded = _log(model, settings={"max_pixels": 10_000})
    assert mlflow.models.get_model_info(info.model_uri).metadata["inputs"]["max_pixels"] == 10_000
    assert loaded.predict(np.zeros((1, 100, 100), np.float32)).shape == (1, 100, 100)
    assert "budget of 10000 pixels" in _refused(loaded, np.zeros((1, 100, 101), np.float32))
    # overridden where it loads (MLflow's model_config; MLFLOW_PYFUNC_INFERENCE_CONFIG for a server)
    smaller = mlflow.pyfunc.load_model(info.model_uri, model_config={"max_pixels": 5_000})
    assert "budget of 5000 pixels" in _refused(smaller, np.zeros((1, 100, 100), np.float32))
    with pytest.raises(ValueError, match=r"unknown settings \['max_pixel'\] for a denoiser; its settings: max_pixels"):
        model_saver(model, np.zeros((1, *GREY), np.float32), settings={"max_pixel": 10})
    with pytest.raises(ValueError, match="max_pixels must be a whole number of pixels, at least 64; got 0"):
        model_saver(model, np.zeros((1, *GREY), np.float32), settings={"max_pixels": 0})


def test_small_images_and_lying_pngs_are_one_line_400s(tracking):
    _, loaded = _log(_model())
    small = "smaller than this model takes: at least 8x8"
    assert _refused(loaded, np.zeros((1, 7, 30), np.float32)) == f"images are 30x7, {small}"
    assert _refused(loaded, pd.DataFrame({"image": [_png(np.zeros((7, 7), np.uint8))]})).endswith(small)
    assert loaded.predict(np.zeros((1, 8, 8), np.float32)).shape == (1, 8, 8)  # the minimum itself
    short = _refused(loaded, pd.DataFrame({"image": [_png_claiming(100, 100, rows=10, cols=10)]}))
    assert short.startswith("image 0: PNG data does not fill its declared 100x100")
    long = _refused(loaded, pd.DataFrame({"image": [_png_claiming(10, 10, rows=100, cols=100)]}))
    assert long == "image 0: PNG data holds more than its declared 10x10"
    assert loaded.predict(pd.DataFrame({"image": [_png_claiming(10, 10, rows=10, cols=10)]})).shape == (1, 1)
    assert "too long for a 10x10 PNG" in _refused(
        loaded, pd.DataFrame({"image": [_png_claiming(10, 10) + "A" * 70_000]})
    )


def test_the_receptive_field_is_read_from_the_layers():
    assert receptive_field(_model()) == (44, 4)  # 3x3 convolutions at strides 1, 2, 4 and back
    model = _model()
    model.mid[0] = torch.nn.Conv2d(8, 8, 5, padding=2)  # a wider kernel at the lowest level widens it
    assert receptive_field(model) == (44 + 2 * 4, 4)
    assert tiling(_model()) == Tiling(multiple=4, margin=44, tile=TILE)


def test_tiles_agree_with_the_whole_image(tracking, capsys):
    """A random 1000x460 image, 3 tiles wide and 2 high at the served tile size: the largest
    difference between tiled and whole-image output is float rounding, far below 1/255; with
    no overlap the seams show."""
    model = _model(width=8)
    layout = tiling(model)
    x = torch.from_numpy(np.random.default_rng(2).random((1, 1, 460, 1000), dtype=np.float32))
    assert 1000 > 2 * layout.core and 460 > layout.core
    whole = _whole(model, x.numpy())
    cpu = torch.device("cpu")
    with torch.inference_mode():
        tiled = denoise(model, x, layout, cpu).numpy()
        seams = denoise(model, x, Tiling(4, 0, layout.tile), cpu).numpy()
    diff = float(np.abs(tiled - whole).max())
    print(f"tiled vs whole-image: max abs difference {diff:.3g} (1/255 = {1 / 255:.3g})")
    assert diff <= 1 / 255 and diff < 1e-4
    assert float(np.abs(seams - whole).max()) > 10 * max(diff, 1e-6)  # the test can tell
    # the served path tiles the same way
    _, loaded = _log(model)
    assert np.abs(loaded.predict(x.numpy()[:, 0]) - whole[:, 0]).max() < 1e-4


def test_ensemble_8_is_the_mean_over_flips_and_quarter_turns(tracking):
    model = _model()
    info, loaded = _log(model)
    assert [p.name for p in mlflow.models.get_model_info(info.model_uri).signature.params.params] == [
        "clip",
        "ensemble",
        "sigma",
    ]
    x = np.random.default_rng(3).random((2, 1, 30, 44), dtype=np.float32)
    outputs = []
    for flip in (False, True):
        seen = x[..., ::-1] if flip else x
        for k in range(4):
            turned = np.ascontiguousarray(np.rot90(seen, k, (-2, -1)))
            y = np.rot90(_whole(model, turned), -k, (-2, -1))
            outputs.append(y[..., ::-1] if flip else y)
    expected = np.mean(outputs, axis=0)
    single = loaded.predict(x)
    eight = loaded.predict(x, params={"ensemble": 8})
    assert np.allclose(eight, expected, atol=1e-5) and not np.allclose(single, expected, atol=1e-3)
    assert np.allclose(loaded.predict(x, params={"ensemble": 1}), _whole(model, x), atol=1e-5)
    mnist = x[:, :, :28, :28].copy()
    assert loaded.predict(mnist, params={"ensemble": 8}).shape == mnist.shape
    for bad in (3, 0, -8):
        message = _refused(loaded, x, {"ensemble": bad})
        assert message == (f"ensemble must be 1 (one pass) or 8 (the mean over 8 flips and quarter turns); got {bad}")


def test_the_conv_arch_keeps_its_training_size_and_says_why(tracking):
    model = _model(arch="conv")
    _, loaded = _log(model)
    x = np.random.default_rng(4).random((2, 28, 28), dtype=np.float32)
    with torch.inference_mode():
        expected = model(torch.from_numpy(x)[:, None])[:, 0].numpy()
    assert np.allclose(loaded.predict(x), expected, atol=1e-6)
    message = _refused(loaded, np.zeros((1, 75, 100), np.float32))
    assert message.startswith("images have shape (1, 75, 100); expected (N, 28, 28)")
    assert message.endswith("(arch=conv: its dense bottleneck fixes the image size; arch=unet takes any size)")
    assert "arch=conv" in _refused(loaded, pd.DataFrame({"image": [_png(np.zeros((75, 100), np.uint8))]}))
    assert loaded.predict(x, params={"ensemble": 8}).shape == x.shape

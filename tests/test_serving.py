import base64
import io
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch

from latent_models.kinds.denoiser.config import DenoiserConfig
from latent_models.kinds.vae.config import VAEModelConfig
from latent_models.kinds.vae.model import ConvVAE
from latent_models.kinds.vae.requests import MAX_TEMPERATURE, sample_requests
from latent_models.kinds.vae.serving import VAEPyfunc
from latent_models.models import build_model, load_model_files
from latent_models.serving.inputs import (
    MAX_BATCH,
    PNG,
    InvalidInput,
    behind_rest_server,
    from_model_output,
    to_model_input,
)
from latent_models.serving.logged_model import model_saver
from latent_models.serving.png import decode_png, encode_png, images_to_png_frame, png_frame_to_images
from latent_models.serving.refusal import MAX_MESSAGE
from latent_models.tracking import log_model


@pytest.mark.parametrize("shape", [(3, 28, 28), (3, 1, 28, 28), (3, 784)])
def test_accepted_layouts_round_trip(shape):
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    tensor, layout = to_model_input(x)
    assert tensor.shape == (3, 1, 28, 28)
    back = from_model_output(tensor, layout)
    assert back.shape == shape and np.array_equal(back, x)


@pytest.mark.parametrize(
    "value,message",
    [
        (np.zeros((2, 27, 27)), "shape (2, 27, 27)"),
        (np.zeros((2, 3, 28, 28)), "expected (N, 28, 28)"),
        (np.full((1, 28, 28), np.nan), "NaN or infinite"),
        (np.full((1, 28, 28), 2.0), "must lie in [0, 1]; got min 2, max 2"),
        (np.zeros((0, 28, 28)), "empty batch"),
        (np.zeros((MAX_BATCH + 1, 28, 28)), f"over the limit of {MAX_BATCH}"),
        ([["a"] * 784], "must be numbers"),
        (np.ones((2, 784), bool), "got booleans"),
        ([[True] + [0.5] * 783], "got a boolean (true); booleans are not pixel values"),
        (np.array(0.5), "got a single number, not a batch of images"),
        (0.5, "got a single number (0.5), not a batch of images"),
        (np.array(["x" * 8_000_000]), "must be numbers; got strings"),
        ([[0.5] * 783 + ["x" * 8_000_000]], "got a string of 8000000 characters"),
        ([[None] * 784], "got null"),
        (np.zeros((MAX_BATCH + 1, 784)).tolist(), f"more than {MAX_BATCH} images"),
    ],
)
def test_bad_inputs_name_the_problem(value, message):
    with pytest.raises(InvalidInput) as err:
        to_model_input(value, limit=MAX_BATCH)  # the REST server's limit
    assert message in err.value.message
    assert err.value.get_http_status_code() == 400


def test_logged_denoiser_predicts_like_the_model(tracking):
    torch.manual_seed(0)
    model = build_model(DenoiserConfig(arch="unet", latent_dim=8, width=8)).eval()
    x = np.random.default_rng(0).random((4, 28, 28), dtype=np.float32)
    with mlflow.start_run():
        ref = log_model("denoiser", model_saver(model, x[:2]), 0, "denoiser")
    mlflow.register_model(ref.model_uri, "t-denoiser")
    info = mlflow.models.get_model_info(ref.model_uri)
    loaded = mlflow.pyfunc.load_model("models:/t-denoiser/1")
    with torch.inference_mode():
        expected = model(torch.from_numpy(x).unsqueeze(1))[:, 0].numpy()
    assert np.allclose(loaded.predict(x), expected, atol=1e-6)
    # No input schema (MLflow would reject (N, 784) and PNGs before predict runs); the output
    # schema (a string column `image`) is spark_udf's default result type only: MLflow does not
    # enforce it, and the answer takes the question's form, (N, 784) floats included.
    assert info.signature.inputs is None
    assert info.signature.outputs.to_dict() == [{"type": "string", "name": "image", "required": True}]
    assert [p.name for p in info.signature.params.params] == ["clip", "ensemble", "sigma"]
    assert loaded.predict(x.reshape(4, 784)).shape == (4, 784)
    png_answer = loaded.predict(images_to_png_frame(x))
    assert list(png_answer.columns) == ["image"] and len(png_answer) == 4
    assert np.abs(png_frame_to_images(png_answer) - expected).max() < 0.01
    with pytest.raises(InvalidInput, match="must lie in"):
        loaded.predict(x * 2)
    assert loaded.predict(x * 2, params={"clip": True}).shape == (4, 28, 28)
    local = mlflow.artifacts.download_artifacts(info.model_uri)
    state = torch.load(f"{local}/artifacts/weights.pt", weights_only=True)  # no pickled classes
    assert set(state) == set(model.state_dict())


def test_logged_vae_modes(tracking):
    torch.manual_seed(0)
    model = ConvVAE(VAEModelConfig(latent_dim=4, width=8)).eval()
    x = np.random.default_rng(0).random((3, 28, 28), dtype=np.float32)
    with mlflow.start_run():
        info = log_model("vae", model_saver(model, x[:2]), 0, "vae")
    loaded = mlflow.pyfunc.load_model(info.model_uri)
    assert loaded.predict(x).shape == (3, 28, 28)
    rows = pd.DataFrame([{"n": 2, "seed": 1}, {"n": 3, "seed": 5, "temperature": 0.5}])
    assert loaded.predict(rows, params={"mode": "sample"}).shape == (5, 28, 28)
    assert np.array_equal(
        loaded.predict(rows, params={"mode": "sample"}), loaded.predict(rows, params={"mode": "sample"})
    )
    assert loaded.predict(images_to_png_frame(x), params={"mode": "reconstruct"}).shape == (3, 1)
    a = loaded.predict(x[:1], params={"mode": "sample", "n": 6, "seed": 1})  # params form, for in-process callers
    b = loaded.predict(x[:1], params={"mode": "sample", "n": 6, "seed": 1})
    c = loaded.predict(x[:1], params={"mode": "sample", "n": 6, "seed": 2})
    assert a.shape == (6, 28, 28) and np.array_equal(a, b) and not np.array_equal(a, c)
    with torch.inference_mode():
        z = torch.randn(2, 4)
        expected = model.decode(z)[:, 0].numpy()
    pyfunc_model = loaded.unwrap_python_model()
    assert np.allclose(pyfunc_model.predict(None, z.numpy(), {"mode": "decode"}), expected, atol=1e-6)
    with pytest.raises(InvalidInput, match="n must be between 1 and"):
        pyfunc_model.predict(None, x, {"mode": "sample", "n": 0})
    with pytest.raises(InvalidInput, match="mode must be one of"):
        pyfunc_model.predict(None, x, {"mode": "dream"})
    with pytest.raises(InvalidInput, match=r"expected \(N, 4\)"):
        pyfunc_model.predict(None, np.zeros((2, 5), np.float32), {"mode": "decode"})


def _pil_png(array, mode) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def test_png_form_round_trips_and_any_8bit_grayscale_png_is_read():
    from PIL import Image

    pixels = np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8)
    ours = encode_png(pixels)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(base64.b64decode(ours)))), pixels)  # a valid PNG
    assert np.array_equal(decode_png(ours), pixels)
    assert np.array_equal(decode_png(_pil_png(pixels, "L")), pixels)  # Pillow's encoder, other filters
    assert np.array_equal(decode_png("data:image/png;base64," + ours), pixels)
    assert np.array_equal(decode_png(base64.b64decode(ours)), pixels)  # raw bytes in-process
    x = pixels[None].astype(np.float32) / 255
    for form in (images_to_png_frame(x), {"image": [ours]}, {"image": ours}):
        tensor, layout = to_model_input(form)
        assert layout == PNG and tensor.shape == (1, 1, 28, 28) and torch.equal(tensor[0, 0], torch.from_numpy(x[0]))
    back = from_model_output(tensor, PNG)
    assert isinstance(back, pd.DataFrame) and np.array_equal(png_frame_to_images(back), x)


@pytest.mark.parametrize(
    "item,message",
    [
        ("%%%", "image 0: not valid base64"),
        (base64.b64encode(b"GIF89a...").decode(), "image 0: not a PNG (looks like GIF)"),
        ("", "image 0: not a PNG (empty)"),
        (b"\x89PNG\r\n\x1a\n" + b"garbage", "image 0: unreadable PNG"),
        (7, "image 0: expected a base64 PNG string, got int"),
        (None, "image 0: expected a base64 PNG string, got nothing"),
    ],
)
def test_bad_png_items_name_the_problem(item, message):
    with pytest.raises(InvalidInput) as err:
        to_model_input(pd.DataFrame({"image": [item]}))
    assert message in err.value.message


@pytest.mark.parametrize(
    "array,mode,message",
    [
        (np.zeros((28, 28, 3), np.uint8), "RGB", "PNG is RGB (3 channels); expected 8-bit grayscale"),
        (np.zeros((28, 28, 4), np.uint8), "RGBA", "RGBA (4 channels)"),
        (np.zeros((28, 28), np.uint16), None, "16-bit grayscale"),
        (np.zeros((27, 28), np.uint8), "L", "PNG is 28x27; expected 28x28"),
        (np.zeros((280, 280), np.uint8), "L", "PNG is 280x280"),
    ],
)
def test_png_that_is_not_8bit_grayscale_28x28_is_rejected(array, mode, message):
    with pytest.raises(InvalidInput) as err:
        to_model_input(pd.DataFrame({"image": [encode_png(np.zeros((28, 28), np.uint8)), _pil_png(array, mode)]}))
    assert f"image 1: {message}" in err.value.message or message in err.value.message


def test_png_batch_limits_and_stray_fields():
    one = encode_png(np.zeros((28, 28), np.uint8))
    with pytest.raises(InvalidInput, match=f"over the limit of {MAX_BATCH}"):
        to_model_input(pd.DataFrame({"image": [one] * (MAX_BATCH + 1)}), limit=MAX_BATCH)
    assert to_model_input(pd.DataFrame({"image": [one] * (MAX_BATCH + 1)}))[0].shape[0] == MAX_BATCH + 1
    with pytest.raises(InvalidInput, match="empty batch"):
        to_model_input(pd.DataFrame({"image": []}))
    with pytest.raises(InvalidInput, match=r"unknown fields \['label'\]"):
        to_model_input(pd.DataFrame({"image": [one], "label": [3]}))
    with pytest.raises(InvalidInput, match="sampling requests"):
        to_model_input(pd.DataFrame({"n": [3]}))


def test_clip_is_opt_in_and_never_hides_nan():
    x = np.full((1, 28, 28), 1.5, np.float32)
    with pytest.raises(InvalidInput, match=r"clip"):
        to_model_input(x)
    tensor, _ = to_model_input(x, clip=True)
    assert float(tensor.max()) == 1.0
    with pytest.raises(InvalidInput, match="NaN or infinite"):
        to_model_input(np.full((1, 28, 28), np.inf, np.float32), clip=True)


@pytest.mark.parametrize(
    "rows,expected",
    [
        ([{"n": 3}], [(3, None, 1.0)]),
        ([{"n": 2, "seed": 4, "temperature": 0.5}, {"n": 1}], [(2, 4, 0.5), (1, None, 1.0)]),
        ({"n": 5, "seed": 1}, [(5, 1, 1.0)]),  # `inputs` as one dict
        ({"n": np.array([1, 2]), "seed": np.array([0, 1])}, [(1, 0, 1.0), (2, 1, 1.0)]),  # `instances`
    ],
)
def test_sampling_rows(rows, expected):
    frame = rows if isinstance(rows, dict) else pd.DataFrame(rows)
    assert sample_requests(frame, VAEPyfunc.DEFAULT_PARAMS) == expected


@pytest.mark.parametrize(
    "rows,message",
    [
        ([{"n": 0}], "n must be between 1 and 1024; got 0"),
        ([{"n": MAX_BATCH + 1}], "n must be between 1 and 1024; got 1025"),
        ([{"n": 1.5}], "n must be a whole number"),
        ([{"n": "x"}], "n must be a number; got 'x'"),
        ([{"n": 2, "seed": -1}], "seed must be between 0 and"),
        ([{"n": 2, "temperature": -1}], "temperature must be > 0"),
        ([{"n": 2, "temperature": 1e38}], f"temperature must be > 0 and at most {MAX_TEMPERATURE:g}; got 1e+38"),
        ([{"seed": 2}], "n is missing"),
        ([{"n": 600}, {"n": 600}], "1200 images in all"),
        ([{"n": 2}, {"seed": 1}], "row 1: n is missing"),
        ([{"n": 2, "colour": "red"}], "unknown fields ['colour']"),
    ],
)
def test_bad_sampling_rows_name_the_problem(rows, message):
    with pytest.raises(InvalidInput) as err:
        sample_requests(pd.DataFrame(rows), VAEPyfunc.DEFAULT_PARAMS, limit=MAX_BATCH)
    assert message in err.value.message


def test_fitted_prior_is_a_served_sampler(tracking):
    from latent_models.kinds.vae.prior import GaussianMixturePrior

    torch.manual_seed(0)
    model = ConvVAE(VAEModelConfig(latent_dim=4, width=8)).eval()
    # A one-component "mixture" far from N(0, I): its samples must be the decoded mean.
    prior = GaussianMixturePrior(torch.ones(1), torch.full((1, 4), 3.0), torch.eye(4)[None] * 1e-4)
    x = np.random.default_rng(0).random((2, 28, 28), dtype=np.float32)
    with mlflow.start_run():
        with_prior = mlflow.pyfunc.load_model(
            log_model("vae", model_saver(model, x, {"prior": prior.state_dict()}), 0, "vae").model_uri
        )
        without = mlflow.pyfunc.load_model(log_model("vae", model_saver(model, x), 0, "vae").model_uri)
    fitted = with_prior.predict(x[:1], params={"mode": "sample", "n": 3, "seed": 1, "sampler": "fitted"})
    normal = with_prior.predict(x[:1], params={"mode": "sample", "n": 3, "seed": 1, "sampler": "normal"})
    with torch.inference_mode():
        expected = model.decode(torch.full((1, 4), 3.0))[0, 0].numpy()
    assert np.allclose(fitted, expected, atol=1e-3)
    assert not np.allclose(normal, expected, atol=1e-3)
    assert np.array_equal(normal, without.predict(x[:1], params={"mode": "sample", "n": 3, "seed": 1}))
    with pytest.raises(InvalidInput, match="without a fitted prior"):
        without.unwrap_python_model().predict(None, x, {"mode": "sample", "sampler": "fitted"})
    with pytest.raises(InvalidInput, match="sampler must be one of normal, fitted"):
        with_prior.unwrap_python_model().predict(None, x, {"mode": "sample", "sampler": "gmm"})


OLD_MODELS = Path(__file__).parent / "fixtures" / "models"  # denoiser-3deb76c: logged by commit 3deb76c


def test_a_version_logged_by_the_previous_layout_still_loads(tmp_path):
    """A model folder logged before the package moved into subpackages (a tarball in
    tests/fixtures/models, written by commit 3deb76c's `denoiser_model`): in a fresh process, as
    `mlflow models serve` loads it, it runs its own packaged code and answers as it did; the new
    code also rebuilds its model from the old config.json. It has no manifest (it predates
    write-once): where latent_models_seal is imported, loading it prints one warning."""
    with tarfile.open(OLD_MODELS / "denoiser-3deb76c.tar.gz") as archive:
        archive.extractall(tmp_path, filter="data")
    OLD_LAYOUT = tmp_path / "denoiser-3deb76c"
    x = np.load(OLD_MODELS / "denoiser-3deb76c-input.npy")
    expected = np.load(OLD_MODELS / "denoiser-3deb76c-output.npy")
    script = (
        "import sys, numpy as np, mlflow, latent_models_seal; m = mlflow.pyfunc.load_model(sys.argv[1]); "
        "import latent_models; print(latent_models.__file__); "
        "np.save(sys.argv[3], m.predict(np.load(sys.argv[2])))"
    )
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.npy"
        done = subprocess.run(
            [sys.executable, "-c", script, str(OLD_LAYOUT), str(OLD_MODELS / "denoiser-3deb76c-input.npy"), str(out)],
            capture_output=True,
            text=True,
            cwd=tmp,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        assert str(OLD_LAYOUT / "code") in done.stdout  # its own copy of the package, not this one
        warnings = [line for line in done.stderr.splitlines() if line.startswith("latent-models: warning:")]
        assert warnings == [f"latent-models: warning: {OLD_LAYOUT}: logged before write-once (no manifest): "
                            "its files are not checked"], done.stderr[-2000:]  # fmt: skip
        assert np.allclose(np.load(out), expected, atol=1e-6)
    model = load_model_files(OLD_LAYOUT / "artifacts" / "config.json", OLD_LAYOUT / "artifacts" / "weights.pt")
    assert model.config.image_shape == (1, 28, 28)
    with torch.inference_mode():
        assert np.allclose(model(torch.from_numpy(x)[:, None])[:, 0].numpy(), expected, atol=1e-6)


def _png_claiming(width: int, height: int) -> str:
    """A PNG whose header claims width x height, with a few bytes of pixel data."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )
    return base64.b64encode(raw).decode()


@pytest.mark.parametrize(
    "item,message",
    [
        (_png_claiming(30000, 30000), "image 0: PNG is 30000x30000; expected 28x28"),  # not a decompression bomb
        ("A" * 8_000_000, "image 0: 8000000 characters is too long for a 28x28 PNG"),
    ],
)
def test_hostile_pngs_are_refused_before_decoding(item, message):
    import time

    start = time.perf_counter()
    with pytest.raises(InvalidInput) as err:
        to_model_input(pd.DataFrame({"image": [item]}))
    assert message in err.value.message
    assert time.perf_counter() - start < 0.5


def test_strings_are_refused_before_conversion_in_milliseconds():
    import time

    for value in (np.array([["x" * 8_000_000]]), [["x" * 8_000_000]], np.array("x" * 50_000_000)):
        start = time.perf_counter()
        with pytest.raises(InvalidInput, match="must be numbers"):
            to_model_input(value)
        assert time.perf_counter() - start < 0.1


def test_long_messages_keep_our_part_and_cut_the_echoed_input():
    err = InvalidInput("images must be numbers; got strings")
    err.message = f"Failed to predict data '{'x' * 8_000_000}'. \nError: {err.message}"  # as MLflow's server does
    assert len(err.message) <= MAX_MESSAGE + 100
    assert err.message.endswith("\nError: images must be numbers; got strings")
    assert "characters cut]" in err.message


def test_any_number_of_images_in_process_but_not_behind_the_server(tracking):
    torch.manual_seed(0)
    model = build_model(DenoiserConfig(arch="unet", latent_dim=8, width=4)).eval()
    x = np.random.default_rng(0).random((2 * 1024 + 5, 784), dtype=np.float32)
    with mlflow.start_run():
        info = log_model("denoiser", model_saver(model, x[:2].reshape(2, 28, 28)), 0, "denoiser")
    loaded = mlflow.pyfunc.load_model(info.model_uri)
    assert not behind_rest_server()
    out = loaded.predict(x)  # in chunks of 1024
    with torch.inference_mode():
        expected = model(torch.from_numpy(x[-3:]).reshape(3, 1, 28, 28)).reshape(3, 784).numpy()
    assert out.shape == x.shape and np.allclose(out[-3:], expected, atol=1e-5)
    frame = images_to_png_frame(x[: MAX_BATCH + 1])
    assert len(loaded.predict(frame)) == MAX_BATCH + 1
    import sys
    import types

    sys.modules["mlflow.pyfunc.scoring_server.app"] = types.ModuleType("stand-in")  # as inside `mlflow models serve`
    try:
        assert behind_rest_server()
        with pytest.raises(InvalidInput, match=f"over the limit of {MAX_BATCH}"):
            loaded.predict(x)
    finally:
        del sys.modules["mlflow.pyfunc.scoring_server.app"]


def test_unknown_params_and_extreme_requests_are_refused(tracking):
    torch.manual_seed(0)
    model = ConvVAE(VAEModelConfig(latent_dim=4, width=8)).eval()
    x = np.random.default_rng(0).random((2, 28, 28), dtype=np.float32)
    with mlflow.start_run():
        info = log_model("vae", model_saver(model, x), 0, "vae")
    loaded = mlflow.pyfunc.load_model(info.model_uri)
    with pytest.raises(InvalidInput, match=r"unknown params \['temprature'\]; this model takes mode, clip, n, seed"):
        loaded.predict(x, params={"mode": "sample", "temprature": 0.5})  # refused, not dropped by MLflow
    with pytest.raises(InvalidInput, match="temperature must be > 0 and at most"):
        loaded.predict(x, params={"mode": "sample", "n": 2, "temperature": 1e38})
    with pytest.raises(InvalidInput, match="not finite"):
        loaded.predict(np.full((1, 4), 3e38, np.float32), params={"mode": "decode"})
    big = loaded.predict(None, params={"mode": "sample", "n": 1500, "seed": 3})  # any n in-process, in chunks
    assert big.shape == (1500, 28, 28)
    small = loaded.predict(None, params={"mode": "sample", "n": 32, "seed": 3})
    assert np.allclose(big[:32], small, atol=5e-3)  # the same latents; batch size changes only rounding


COLOUR = (3, 32, 32)


def _refusal(loaded, value, params=None) -> str:
    with pytest.raises(InvalidInput) as err:
        loaded.predict(value, params=params)
    assert err.value.get_http_status_code() == 400
    return err.value.message


@pytest.mark.parametrize("kind", ["denoiser", "vae"])
def test_colour_models_take_images_of_their_shape_and_mode_only(tracking, kind):
    """A 3x32x32 model, built from its config, logged and loaded as `mlflow models serve` does:
    RGB PNGs and (N, 3, 32, 32) floats in; grey or other sizes refused, naming both shapes (a
    denoiser of the conv arch: a U-Net takes any size, tests/test_photo_serving.py)."""
    torch.manual_seed(0)
    if kind == "denoiser":
        model = build_model(DenoiserConfig(image_shape=COLOUR, arch="conv", latent_dim=8, width=8)).eval()
    else:
        model = ConvVAE(VAEModelConfig(image_shape=COLOUR, latent_dim=4, width=8, likelihood="gaussian")).eval()
    x = np.random.default_rng(0).random((3, *COLOUR), dtype=np.float32)
    with mlflow.start_run():
        info = log_model(kind, model_saver(model, x[:2]), 0, kind)
    loaded = mlflow.pyfunc.load_model(info.model_uri)
    assert (
        "8-bit RGB 32x32 PNGs"
        in mlflow.models.get_model_info(info.model_uri).metadata["inputs"]["reconstruct" if kind == "vae" else "images"]
    )
    with torch.inference_mode():
        expected = (
            model(torch.from_numpy(x)) if kind == "denoiser" else model.decode(model.encode(torch.from_numpy(x))[0])
        ).numpy()

    out = loaded.predict(x)  # (N, 3, 32, 32) floats
    assert out.shape == x.shape and np.allclose(out, expected, atol=1e-5)
    assert loaded.predict(x.reshape(3, -1)).shape == (3, 3 * 32 * 32)
    answer = loaded.predict(images_to_png_frame(x, COLOUR))  # RGB PNGs in, RGB PNGs out
    assert list(answer.columns) == ["image"] and len(answer) == 3
    back = png_frame_to_images(answer, COLOUR)
    assert back.shape == (3, 32, 32, 3)
    pixels_in = np.rint(x * 255) / 255  # what the PNGs carried
    with torch.inference_mode():
        t = torch.from_numpy(pixels_in.astype(np.float32))
        from_pngs = (model(t) if kind == "denoiser" else model.decode(model.encode(t)[0])).numpy()
    assert np.abs(back - from_pngs.transpose(0, 2, 3, 1)).max() <= 1 / 255 + 1e-6

    takes = "this model takes 3x32x32 (RGB) images; got"
    grey_32 = pd.DataFrame({"image": [encode_png(np.zeros((32, 32), np.uint8))]})
    grey_28 = pd.DataFrame({"image": [encode_png(np.zeros((28, 28), np.uint8))]})
    rgb_28 = pd.DataFrame({"image": [encode_png(np.zeros((28, 28, 3), np.uint8))]})
    rgba_32 = pd.DataFrame({"image": [_pil_png(np.zeros((32, 32, 4), np.uint8), "RGBA")]})
    assert f"{takes} 1x32x32 (grey)" in _refusal(loaded, grey_32)
    assert f"{takes} 1x28x28 (grey)" in _refusal(loaded, grey_28)
    assert f"{takes} 3x28x28 (RGB)" in _refusal(loaded, rgb_28)
    assert f"{takes} 4x32x32 (RGBA)" in _refusal(loaded, rgba_32)
    assert f"{takes} 1x32x32 (grey)" in _refusal(loaded, x[:, 0])  # (N, 32, 32)
    assert f"{takes} 1x32x32 (grey)" in _refusal(loaded, x[:, :1])  # (N, 1, 32, 32)
    assert f"{takes} 3x28x28 (RGB)" in _refusal(loaded, np.zeros((2, 3, 28, 28), np.float32))
    assert f"{takes} 784 values per image" in _refusal(loaded, np.zeros((2, 784), np.float32))
    assert "channels last: send (N, C, H, W)" in _refusal(loaded, x.transpose(0, 2, 3, 1))
    message = _refusal(loaded, x[:, 0])
    assert message.startswith("images have shape (3, 32, 32); expected (N, 3, 32, 32) or (N, 3072)")
    if kind == "vae":
        samples = loaded.predict(None, params={"mode": "sample", "n": 4, "seed": 1})
        assert samples.shape == (4, *COLOUR)
        assert loaded.predict(np.zeros((2, 4), np.float32), params={"mode": "decode"}).shape == (2, *COLOUR)


def test_a_grey_model_names_both_shapes_when_refusing_colour():
    rgb = pd.DataFrame({"image": [encode_png(np.zeros((28, 28, 3), np.uint8))]})
    with pytest.raises(InvalidInput) as err:
        to_model_input(rgb)
    assert err.value.message == (
        "image 0: PNG is RGB (3 channels); expected 8-bit grayscale — "
        "this model takes 1x28x28 (grey) images; got 3x28x28 (RGB)"
    )
    with pytest.raises(InvalidInput) as err:
        to_model_input(np.zeros((2, 3, 32, 32), np.float32))
    assert err.value.message == (
        "images have shape (2, 3, 32, 32); expected (N, 28, 28), (N, 1, 28, 28) or (N, 784) — "
        "this model takes 1x28x28 (grey) images; got 3x32x32 (RGB)"
    )
    tensor, _ = to_model_input(np.zeros((2, 1, 28, 28), np.float32))  # as before
    assert tensor.shape == (2, 1, 28, 28)


def test_score_mode_is_the_importance_weighted_nll_per_image(tracking):
    import math

    from latent_models.evaluation.metrics import bits_per_dim
    from latent_models.kinds.vae.requests import MAX_K
    from latent_models.kinds.vae.scores import importance_weighted_nll, iw_nll_per_image

    torch.manual_seed(0)
    model = ConvVAE(VAEModelConfig(latent_dim=4, width=8)).eval()
    # Multiples of 1/255, so the PNG form carries exactly the same intensities.
    x = np.random.default_rng(0).integers(0, 256, (5, 28, 28)).astype(np.float32) / 255
    with mlflow.start_run():
        info = log_model("vae", model_saver(model, x[:2]), 0, "vae")
    loaded = mlflow.pyfunc.load_model(info.model_uri)
    assert loaded.metadata.signature.params.to_dict()[-1] == {
        "name": "k",
        "type": "long",
        "default": 100,
        "shape": None,
    }
    assert "score" in loaded.metadata.metadata["inputs"]
    scores = loaded.predict(x, params={"mode": "score", "k": 7, "seed": 3})
    assert list(scores.columns) == ["nll_nats", "bits_per_dim"] and len(scores) == 5
    # The scores are the per-image values the training metric averages, at the same seed and k ...
    images = torch.from_numpy(x)[:, None]
    mean, stderr = importance_weighted_nll(model, images, k=7, seed=3)
    assert scores["nll_nats"].mean() == pytest.approx(mean, rel=1e-6)
    assert scores["nll_nats"].std() / math.sqrt(5) == pytest.approx(stderr, rel=1e-4)
    per_image = iw_nll_per_image(model, images, 7, torch.Generator().manual_seed(3))
    assert np.allclose(scores["nll_nats"].to_numpy(), per_image.double().numpy(), rtol=1e-6)
    # ... and an image sent alone scores what the training metric gives that image alone.
    for i in range(5):
        alone = loaded.predict(x[i : i + 1], params={"mode": "score", "k": 7, "seed": 3})
        assert alone["nll_nats"][0] == pytest.approx(importance_weighted_nll(model, images[i : i + 1], 7, 3)[0])
    assert scores["bits_per_dim"].tolist() == [bits_per_dim(v, (1, 28, 28), "bernoulli") for v in scores["nll_nats"]]
    assert scores["bits_per_dim"][0] == pytest.approx(scores["nll_nats"][0] / (784 * math.log(2)))
    # One row per image in input order: reversing the images reverses the scores (k large: little noise).
    big = loaded.predict(x, params={"mode": "score", "k": 500, "seed": 0})
    flipped = loaded.predict(x[::-1].copy(), params={"mode": "score", "k": 500, "seed": 0})
    assert np.allclose(big["nll_nats"].to_numpy()[::-1], flipped["nll_nats"].to_numpy(), rtol=1e-3)
    assert big["nll_nats"].std() > 10 * np.abs(big["nll_nats"].to_numpy()[::-1] - flipped["nll_nats"]).max()
    # The PNG form and the float form give the same scores; the same seed, the same numbers.
    png = loaded.predict(images_to_png_frame(x), params={"mode": "score", "k": 7, "seed": 3})
    pd.testing.assert_frame_equal(png, scores, rtol=1e-6)
    # seed -1: fresh draws each time.
    a = loaded.predict(x, params={"mode": "score", "k": 2})
    b = loaded.predict(x, params={"mode": "score", "k": 2})
    assert not a.equals(b)
    wrapper = loaded.unwrap_python_model()
    for k, message in (
        (0, f"k must be between 1 and {MAX_K}; got 0"),
        (MAX_K + 1, f"k must be between 1 and {MAX_K}; got {MAX_K + 1}"),
        (2.5, "k must be a whole number; got 2.5"),
        (True, "k must be a number; got True"),
        ("many", "k must be a number; got 'many'"),
    ):
        with pytest.raises(InvalidInput) as refused:
            wrapper.predict(None, x, {"mode": "score", "k": k})
        assert str(refused.value.message) == message and "\n" not in refused.value.message
    with pytest.raises(InvalidInput, match="pixel values must lie in"):
        wrapper.predict(None, x * 2, {"mode": "score"})


@pytest.mark.parametrize(
    "inputs",
    [
        [[0.5, 1, 0.25]],
        np.random.default_rng(0).random((2, 28, 28)).tolist(),
        [[1, 2], [3, 4]],
        [0.5],
        [["a", "b"]],
    ],
)
def test_the_plain_tensor_form_parses_as_mlflow_parses_it(inputs, monkeypatch):
    """The server's JSON parse (wrapped when our models load) skips MLflow's deep copy of a
    tensor without an input schema, and gives the array MLflow's own parse gives."""
    import mlflow.pyfunc.scoring_server as server
    import mlflow.utils.proto_json_utils as parsing

    from latent_models.serving.pyfunc import _check_json_before_mlflow_parses_it

    _check_json_before_mlflow_parses_it()  # as when a model loads in the server (idempotent)
    assert hasattr(server.infer_and_parse_data, "__wrapped__")
    with monkeypatch.context() as patch:
        patch.setattr(parsing, "deepcopy", lambda _: pytest.fail("MLflow's deep copy ran"))
        ours = server.infer_and_parse_data({"inputs": inputs}, None)
    theirs = server.infer_and_parse_data.__wrapped__({"inputs": inputs}, None)
    assert ours.dtype == theirs.dtype and ours.shape == theirs.shape and (ours == theirs).all()


def test_a_ragged_tensor_gets_mlflows_own_error():
    import mlflow.pyfunc.scoring_server as server
    from mlflow.exceptions import MlflowException

    from latent_models.serving.pyfunc import _check_json_before_mlflow_parses_it

    _check_json_before_mlflow_parses_it()
    ragged = {"inputs": [[1.0, 2.0], [3.0]]}
    with pytest.raises(MlflowException) as theirs:
        server.infer_and_parse_data.__wrapped__(ragged, None)
    with pytest.raises(MlflowException) as ours:
        server.infer_and_parse_data(ragged, None)
    assert ours.value.message == theirs.value.message and "inhomogeneous" in ours.value.message


def test_the_png_column_reaches_the_model_without_a_dataframe(monkeypatch):
    """The base64-PNG form `dataframe_split` with the one column `image` reaches the model as
    that column, without MLflow's DataFrame; anything else in that form MLflow parses."""
    import mlflow.pyfunc.scoring_server as server
    import mlflow.utils.proto_json_utils as parsing

    from latent_models.serving.pyfunc import _check_json_before_mlflow_parses_it

    _check_json_before_mlflow_parses_it()
    pngs = images_to_png_frame(np.random.default_rng(0).random((2, 28, 28)))["image"].tolist()
    split = {"columns": ["image"], "data": [[png] for png in pngs]}
    with monkeypatch.context() as patch:
        patch.setattr(parsing, "dataframe_from_parsed_json", lambda *a, **k: pytest.fail("MLflow built a frame"))
        column = server.infer_and_parse_data({"dataframe_split": split}, None)
    assert column == {"image": pngs} and repr(column) == "{'image': [2 base64 PNGs]}"
    for other in (
        {**split, "index": [0, 1]},
        {"columns": ["image", "n"], "data": [[png, 1] for png in pngs]},
        {"columns": ["image"], "data": [[None]]},
        {"columns": ["image"], "data": []},
    ):
        parsed = server.infer_and_parse_data({"dataframe_split": other}, None)
        assert isinstance(parsed, pd.DataFrame), other


def test_behind_the_server_a_few_images_take_the_fused_graph_with_the_same_answer(tracking, monkeypatch):
    """Behind the REST server a denoiser of one noise level traces its network for passes of
    a few images of its training shape; its answers equal the eager network's."""
    import types

    torch.manual_seed(0)
    model = build_model(DenoiserConfig(arch="unet", latent_dim=8, width=8)).eval()
    x = np.random.default_rng(0).random((12, 28, 28), dtype=np.float32)
    with mlflow.start_run():
        info = log_model("denoiser", model_saver(model, x[:2]), 0, "denoiser")
    assert mlflow.pyfunc.load_model(info.model_uri).unwrap_python_model().small_pass is None  # in-process
    monkeypatch.setitem(sys.modules, "mlflow.pyfunc.scoring_server.app", types.ModuleType("stand-in"))
    wrapper = mlflow.pyfunc.load_model(info.model_uri).unwrap_python_model()
    assert isinstance(wrapper.small_pass, torch.jit.ScriptModule)
    calls = []
    traced = wrapper.small_pass
    wrapper.small_pass = lambda images: calls.append(len(images)) or traced(images)
    with torch.inference_mode():
        expected = model(torch.from_numpy(x)[:, None])[:, 0].numpy()
    for n in (1, 3, 12):  # 12: over ONE_THREAD_ROWS, the eager network
        assert np.abs(wrapper.predict(None, x[:n]) - expected[:n]).max() < 1e-6
    assert calls == [1, 3]

    def fails(images):
        raise RuntimeError("a shape the fuser could not compile")

    wrapper.small_pass = fails  # the request is answered by the eager network, and so are later ones
    assert np.abs(wrapper.predict(None, x[:2]) - expected[:2]).max() < 1e-6 and wrapper.small_pass is None


def test_behind_the_server_float_answers_are_written_with_json_decimals(monkeypatch):
    import json
    import types

    from latent_models.serving.inputs import JSON_DECIMALS

    x = np.random.default_rng(2).random((2, 1, 28, 28), dtype=np.float32)
    assert from_model_output(x, (2, 28, 28)).dtype == np.float32  # in-process: the network's own values
    monkeypatch.setitem(sys.modules, "mlflow.pyfunc.scoring_server.app", types.ModuleType("stand-in"))
    written = from_model_output(x, (2, 28, 28))
    assert np.abs(written - x[:, 0]).max() <= 10.0**-JSON_DECIMALS
    assert np.array_equal(written, written.round(JSON_DECIMALS))
    assert len(json.dumps(written.tolist())) < 0.7 * len(json.dumps(x.tolist()))

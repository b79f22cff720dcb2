"""One denoiser for a range of Gaussian noise levels (sigma_max > 0, FFDNet's noise-level map):
trained told each image's σ, served with `sigma` or sigma=auto, colour through a grey model."""

from importlib.metadata import version
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch

from latent_models.errors import ConfigError
from latent_models.kinds.denoiser.colour import estimate_sigma, from_luma_chroma, to_luma_chroma
from latent_models.kinds.denoiser.config import AEConfig, DenoiserConfig
from latent_models.kinds.denoiser.model import at_level
from latent_models.kinds.denoiser.recipe import run_ae
from latent_models.models import build_model
from latent_models.serving.inputs import InvalidInput
from latent_models.serving.logged_model import model_saver
from latent_models.serving.png import decode_png, encode_png
from latent_models.tracking import log_model
from tests.conftest import TINY

SIGMA_MAX = 0.2


def _model(channels=1, sigma_max=SIGMA_MAX, seed=0):
    torch.manual_seed(seed)
    model = build_model(
        DenoiserConfig(width=4, residual=True, sigma_max=sigma_max, image_shape=(channels, 28, 28))
    ).eval()
    with torch.no_grad():  # the residual head starts as the identity: make it do something
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return model


def _loaded(model):
    with mlflow.start_run():
        info = log_model("denoiser", model_saver(model, np.zeros((1, *model.config.image_shape), np.float32)), 0, "d")
    return info, mlflow.pyfunc.load_model(info.model_uri)


def _refused(loaded, value, params) -> str:
    with pytest.raises(InvalidInput) as err:
        loaded.predict(value, params=params)
    assert err.value.get_http_status_code() == 400 and "\n" not in err.value.message
    return err.value.message


def test_the_noise_level_is_an_input_channel_and_changes_the_output():
    model = _model()
    assert model.enc1[0].in_channels == 2  # grey + the map
    x = torch.rand(2, 1, 28, 28)
    with torch.inference_mode():
        low, high = model(x, 0.02), model(x, 0.2)
        per_image = model(x, torch.tensor([0.02, 0.2]))
    assert not torch.allclose(low, high)
    assert torch.allclose(per_image[0], low[0], atol=1e-6) and torch.allclose(per_image[1], high[1], atol=1e-6)
    assert torch.allclose(at_level(model, 0.2)(x), high)
    with pytest.raises(ValueError, match="pass sigma"):
        model(x)
    one_level = build_model(DenoiserConfig(width=4))
    assert at_level(one_level, 0.1) is one_level
    with pytest.raises(ValueError, match="takes no sigma"):
        one_level(x, 0.1)


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(sigma_max=0.2, arch="conv"), "needs arch=unet"),
        (dict(sigma_max=1.5), "must lie in \\[0, 1\\]"),
    ],
)
def test_model_config_rules(settings, message):
    with pytest.raises(ConfigError, match=message):
        DenoiserConfig(**settings)


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(sigma_max=0.2, noise="uniform", noise_level=0.1), "needs noise=gaussian"),
        (dict(sigma_max=0.1, noise="gaussian", noise_level=0.2), "must lie within sigma_max"),
    ],
)
def test_entry_point_rules(settings, message):
    with pytest.raises(ConfigError, match=message):
        AEConfig(**settings).check()


def test_luma_chroma_is_inverted_exactly():
    rgb = torch.rand(2, 3, 9, 7)
    grey, levels = to_luma_chroma(rgb, torch.tensor([0.1, 0.3]))
    assert grey.shape == (6, 1, 9, 7)
    assert torch.allclose(levels, torch.tensor([0.1 / 3**0.5, 0.1, 0.1, 0.3 / 3**0.5, 0.3, 0.3]))
    assert torch.allclose(grey[0, 0], rgb[0].mean(0), atol=1e-6)  # the luma image is mean(R, G, B)
    assert torch.allclose(from_luma_chroma(grey), rgb, atol=1e-6)


def test_the_estimate_follows_the_noise():
    rng = np.random.default_rng(0)
    clean = torch.from_numpy(np.tile(np.linspace(0.2, 0.8, 128, dtype=np.float32), (128, 1)))[None]
    for sigma in (0.02, 0.06, 0.1):
        noisy = clean + sigma * torch.from_numpy(rng.standard_normal(clean.shape).astype(np.float32))
        assert estimate_sigma(noisy) == pytest.approx(sigma, rel=0.1)


def test_the_estimate_leaves_out_clipped_pixels():
    """Dark and bright regions clipped to 0 and 1 lose noise; the estimate reads around them
    (the wavelet estimate over every coefficient, scikit-image's, falls 20-30% short here)."""
    rng = np.random.default_rng(0)
    clean = np.tile(np.linspace(0.3, 0.7, 128), (128, 1))
    clean[:, :64], clean[:32] = 0.03, 0.98
    for sigma in (0.06, 0.1, 0.2):
        noisy = np.clip(clean + sigma * rng.standard_normal(clean.shape), 0, 1).astype(np.float32)
        assert estimate_sigma(torch.from_numpy(noisy)[None]) == pytest.approx(sigma, rel=0.1)
    assert estimate_sigma(torch.zeros(1, 32, 32)) == 0.0  # nothing but clipped pixels: no noise seen


def test_served_sigma_given_auto_and_colour(tracking):
    model = _model()
    info, loaded = _loaded(model)
    rng = np.random.default_rng(0)
    x = rng.random((2, 1, 40, 36), dtype=np.float32)
    with torch.inference_mode():
        told = model(torch.from_numpy(x), 0.1).numpy()
    # a JSON number and its text are the same request
    assert np.allclose(loaded.predict(x, params={"sigma": 0.1}), told, atol=1e-5)
    assert np.allclose(loaded.predict(x, params={"sigma": "0.1"}), told, atol=1e-5)
    # auto: each image told its own estimate, within the range trained on
    auto = loaded.predict(x)
    with torch.inference_mode():
        estimates = [min(estimate_sigma(torch.from_numpy(image)), SIGMA_MAX) for image in x]
        assert np.allclose(auto[1], model(torch.from_numpy(x[1:]), estimates[1]).numpy()[0], atol=1e-5)
    # RGB through the grey model: luma and chroma, each told its level
    c = rng.random((1, 3, 40, 36), dtype=np.float32)
    grey, levels = to_luma_chroma(torch.from_numpy(c), torch.tensor([0.1]))
    with torch.inference_mode():
        expected = from_luma_chroma(model(grey, levels)).numpy()
    assert np.allclose(loaded.predict(c, params={"sigma": 0.1}), expected, atol=1e-5)
    pixels = np.rint(c[0].transpose(1, 2, 0) * 255).astype(np.uint8)
    answer = loaded.predict(pd.DataFrame({"image": [encode_png(pixels)]}), params={"sigma": 0.1, "ensemble": 8})
    assert decode_png(answer["image"][0], 0, (3, 40, 36)).shape == (40, 36, 3)
    inputs = mlflow.models.get_model_info(info.model_uri).metadata["inputs"]
    assert "from 0 to 0.2" in inputs["sigma"] and "RGB images too" in inputs["images"]
    # sigma=auto's estimator travels with the model, at the installed versions
    requirements = Path(mlflow.pyfunc.get_model_dependencies(info.model_uri)).read_text()
    assert f"PyWavelets=={version('PyWavelets')}" in requirements
    assert f"scipy=={version('scipy')}" in requirements


@pytest.mark.parametrize("sigma", [0.5, -0.01, "x", "nan"])
def test_a_sigma_outside_the_range_is_a_one_line_400(tracking, sigma):
    _, loaded = _loaded(_model())
    message = _refused(loaded, np.zeros((1, 28, 28), np.float32), {"sigma": sigma})
    assert "sigma must be auto or a noise level from 0 to 0.2" in message


def test_a_one_level_model_takes_no_sigma(tracking):
    _, loaded = _loaded(_model(sigma_max=0.0))
    x = np.zeros((1, 28, 28), np.float32)
    assert loaded.predict(x).shape == x.shape  # auto, the default, asks nothing of it
    assert "trained at one noise level and takes no sigma" in _refused(loaded, x, {"sigma": 0.1})
    assert "got 3x28x28 (RGB)" in _refused(loaded, np.zeros((1, 3, 28, 28), np.float32), None)


def test_trained_over_the_range_and_measured_at_noise_level(tracking):
    result = run_ae(AEConfig(**TINY, noise="gaussian", noise_level=0.1, sigma_max=0.2, residual=True, register=False))
    assert result["val_psnr"] > result["val_psnr_noisy"]  # at noise_level, told it
    assert mlflow.get_run(result["run_id"]).data.params["sigma_max"] == "0.2"
    loaded = mlflow.pyfunc.load_model(result["model_uri"])
    x = np.random.default_rng(0).random((1, 28, 28), dtype=np.float32)
    assert loaded.predict(x, params={"sigma": 0.05}).shape == x.shape
    assert "from 0 to 0.2" in _refused(loaded, x, {"sigma": 0.3})

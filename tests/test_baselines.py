import sys

import pytest
import torch

from latent_models.data import load_splits
from latent_models.evaluation.metrics import psnr
from latent_models.kinds.denoiser.baselines import (
    ALL_BASELINES,
    BASELINES,
    BM3D,
    BM3D_MISSING,
    Baseline,
    baselines_named,
    bm3d,
    gaussian_blur,
    median_filter,
    non_local_means,
    tune,
)
from latent_models.noise import fixed_noise
from tests.conftest import FIXTURE_DATA


@pytest.fixture(scope="module")
def digits():
    return load_splits("mnist", str(FIXTURE_DATA), 100, 0, False).test.images[:60]


def _gain(method, clean, noisy, value):
    return (psnr(method(noisy, value), clean) - psnr(noisy, clean)).mean().item()


def test_each_baseline_removes_the_noise_it_suits(digits):
    gaussian = fixed_noise(digits, "gaussian", 0.3, 0)
    salt = fixed_noise(digits, "salt_pepper", 0.1, 0)
    assert _gain(gaussian_blur, digits, gaussian, 0.8) > 1.5
    assert _gain(non_local_means, digits, gaussian, 0.25) > 1.5
    assert _gain(median_filter, digits, salt, 3) > 5.0
    for method, value in ((gaussian_blur, 1.0), (median_filter, 3), (non_local_means, 0.2)):
        out = method(gaussian, value)
        assert out.shape == digits.shape and out.dtype == torch.float32
        assert 0.0 <= out.min() and out.max() <= 1.0


def test_tune_picks_the_best_grid_value(digits):
    noisy = fixed_noise(digits, "gaussian", 0.3, 0)
    for baseline in BASELINES:
        chosen = tune(baseline, digits, noisy)
        scores = {v: psnr(baseline.apply(noisy, v), digits).mean().item() for v in baseline.grid}
        assert scores[chosen] == max(scores.values())
    blur = BASELINES[0]
    # Light noise wants less blur than heavy noise.
    assert tune(blur, digits, fixed_noise(digits, "gaussian", 0.05, 0)) < tune(blur, digits, noisy)


@pytest.fixture(scope="module")
def colour():
    """Smooth 3x32x32 colour images (blobs of different colours), and their noisy copies."""
    g = torch.Generator().manual_seed(0)
    coarse = torch.rand((4, 3, 4, 4), generator=g)
    clean = torch.nn.functional.interpolate(coarse, size=(32, 32), mode="bicubic", align_corners=False).clamp(0, 1)
    return clean, fixed_noise(clean, "gaussian", 0.2, 0)


def test_every_baseline_takes_and_returns_colour_images(colour):
    clean, noisy = colour
    for baseline, value in zip(ALL_BASELINES, (1.0, 3, 0.18, 0.2)):
        images = noisy[:1] if baseline is BM3D else noisy  # ~3 s per colour image
        out = baseline.apply(images, value)
        assert out.shape == images.shape and out.dtype == torch.float32, baseline.name
        assert 0.0 <= out.min() and out.max() <= 1.0
        assert _gain(baseline.apply, clean[: len(images)], images, value) > 1.0, baseline.name


def test_colour_baselines_filter_each_channel_or_all_jointly(colour):
    clean, noisy = colour
    # Blur and median: channel by channel, as on grey images.
    for method, value in ((gaussian_blur, 1.0), (median_filter, 3)):
        per_channel = torch.cat([method(noisy[:, [c]].contiguous(), value) for c in range(3)], dim=1)
        assert torch.allclose(method(noisy, value), per_channel, atol=1e-6)
    # Non-local means: one patch distance over the three channels, so not channel by channel.
    joint = non_local_means(noisy, 0.18)
    per_channel = torch.cat([non_local_means(noisy[:, [c]].contiguous(), 0.18) for c in range(3)], dim=1)
    assert not torch.allclose(joint, per_channel, atol=1e-3)
    # Grey images through the colour path give what the grey path gives.
    grey = noisy[:, :1]
    assert torch.allclose(
        non_local_means(grey.expand(-1, 3, -1, -1).contiguous(), 0.18)[:, :1], non_local_means(grey, 0.18), atol=0.02
    )


def test_bm3d_denoises_digits_and_refuses_images_its_library_cannot_take(digits):
    noisy = fixed_noise(digits[:3], "gaussian", 0.3, 0)
    out = bm3d(noisy, 0.3)
    assert out.shape == noisy.shape and 0.0 <= out.min() and out.max() <= 1.0
    assert _gain(bm3d, digits[:3], noisy, 0.3) > 3.0
    tiny = torch.rand(1, 1, 8, 8)  # the library crashes the process on 8x8: refused before it runs
    with pytest.raises(ValueError, match="at least 12x12"):
        bm3d(tiny, 0.1)
    assert not BM3D.accepts(tiny) and BM3D.accepts(digits)


def test_bm3d_is_opt_in_and_tunes_on_a_few_images():
    assert "bm3d" not in {b.name for b in BASELINES}
    assert baselines_named("default") == BASELINES and baselines_named("all") == ALL_BASELINES
    assert [b.name for b in baselines_named("nl_means, bm3d")] == ["nl_means", "bm3d"]
    with pytest.raises(ValueError, match="unknown baselines"):
        baselines_named("bm4d")
    seen = []
    counting = Baseline("count", "v", lambda x, v: seen.append(len(x)) or x, (1.0, 2.0), tune_images=5)
    images = torch.rand(20, 1, 16, 16)
    tune(counting, images, images)
    assert seen == [5, 5]
    assert BM3D.tune_images > 0 and BM3D.setting == "sigma_psd"


def test_without_its_package_bm3d_is_refused_in_one_line_that_says_how_to_install_it(monkeypatch):
    from click.testing import CliRunner

    from latent_models import cli

    monkeypatch.setitem(sys.modules, "bm3d", None)  # as if the extra were not installed
    assert baselines_named("default") == BASELINES  # the core install's baselines need nothing more
    for names in ("all", "median,bm3d"):
        with pytest.raises(ValueError, match=r'pip install -e "\.\[bm3d\]"'):
            baselines_named(names)
    result = CliRunner().invoke(cli.evaluate, ["--baselines", "all"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [f"Error: baselines: {BM3D_MISSING}"]

import math

import numpy as np
import pytest
import torch

from latent_models.evaluation.metrics import active_units, log_normal, mse, psnr, ssim


def test_psnr_of_known_error():
    clean = torch.zeros(2, 1, 28, 28)
    noisy = clean + 0.1  # MSE 0.01 -> 20 dB
    assert psnr(noisy, clean).tolist() == pytest.approx([20.0, 20.0], abs=1e-4)
    assert mse(noisy, clean).tolist() == pytest.approx([0.01, 0.01])


def test_psnr_is_per_image_mean_not_pooled():
    clean = torch.zeros(2, 1, 4, 4)
    out = torch.stack([clean[0] + 0.1, clean[1] + 0.01])
    assert psnr(out, clean).mean().item() == pytest.approx(30.0, abs=1e-3)


def test_ssim_identity_and_degradation():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 1, 28, 28, generator=g)
    assert ssim(x, x).tolist() == pytest.approx([1.0] * 4, abs=1e-5)
    slightly = (x + 0.05 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    badly = (x + 0.3 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    assert (ssim(badly, x) < ssim(slightly, x)).all()
    assert (ssim(slightly, x) < 1.0).all()


def test_ssim_matches_closed_form_for_constant_images():
    a, b = torch.full((1, 1, 28, 28), 0.2), torch.full((1, 1, 28, 28), 0.6)
    c1 = 0.01**2
    expected = (2 * 0.2 * 0.6 + c1) / (0.2**2 + 0.6**2 + c1)  # variances are zero
    assert ssim(a, b).item() == pytest.approx(expected, rel=1e-4)


def test_ssim_of_colour_images_is_the_mean_over_channels():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 32, 32, generator=g)
    y = (x + 0.1 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    per_channel = torch.stack([ssim(x[:, c : c + 1], y[:, c : c + 1]) for c in range(3)], dim=1)
    assert ssim(x, y).tolist() == pytest.approx(per_channel.mean(1).tolist(), rel=1e-5)


def test_active_units_counts_varying_dimensions():
    mu = torch.zeros(1000, 4)
    mu[:, 0] = torch.randn(1000)
    mu[:, 1] = 0.05 * torch.randn(1000)  # variance 0.0025 < 0.01: inactive
    assert active_units(mu) == 1


def test_log_normal_matches_torch_distributions():
    mu, logvar, z = torch.randn(5, 3), torch.randn(5, 3), torch.randn(5, 3)
    ref = torch.distributions.Normal(mu, torch.exp(0.5 * logvar)).log_prob(z).sum(-1)
    assert torch.allclose(log_normal(z, mu, logvar), ref, atol=1e-5)
    assert math.isfinite(log_normal(z, mu, logvar).sum().item())


def test_frechet_distance_matches_the_closed_form():
    from latent_models.evaluation.metrics import frechet_distance

    g = torch.Generator().manual_seed(0)
    a = torch.randn((20000, 3), generator=g)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    shifted = a + torch.tensor([1.0, 2.0, 0.0])
    assert frechet_distance(a, shifted) == pytest.approx(5.0, rel=1e-6)  # |mean shift|^2, same covariance
    scaled = torch.randn((20000, 3), generator=g) * 2.0
    # Equal means, covariances I and 4I: 3 * (1 + 4 - 2 * 2) = 3.
    assert frechet_distance(a, scaled) == pytest.approx(3.0, rel=0.05)
    assert frechet_distance(scaled, a) == pytest.approx(frechet_distance(a, scaled), rel=1e-6)


def test_frechet_distance_with_covariances_that_do_not_commute():
    from latent_models.evaluation.metrics import frechet_distance

    g = torch.Generator().manual_seed(1)
    a = torch.randn((5000, 2), generator=g) @ torch.tensor([[2.0, 0.0], [0.0, 0.5]])
    b = torch.randn((5000, 2), generator=g) @ torch.tensor([[1.0, 0.8], [0.0, 0.6]]) + 0.3
    # Reference: tr(A + B - 2 (A^1/2 B A^1/2)^1/2), with symmetric square roots from eigh.
    cov_a, cov_b = np.cov(a.double().numpy(), rowvar=False), np.cov(b.double().numpy(), rowvar=False)

    def sqrt_psd(m):
        w, v = np.linalg.eigh(m)
        return v @ np.diag(np.sqrt(np.clip(w, 0, None))) @ v.T

    root_a = sqrt_psd(cov_a)
    expected = ((a.double().mean(0) - b.double().mean(0)) ** 2).sum().item() + np.trace(
        cov_a + cov_b - 2 * sqrt_psd(root_a @ cov_b @ root_a)
    )
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-6)


def test_class_entropy():
    from latent_models.evaluation.metrics import class_entropy

    assert class_entropy(torch.arange(10).repeat(7)) == pytest.approx(math.log(10))
    assert class_entropy(torch.full((50,), 3)) == 0.0
    assert class_entropy(torch.tensor([0, 1])) == pytest.approx(math.log(2))


def _colour_pair(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    clean = torch.rand(3, 3, 32, 40, generator=g)
    noisy = (clean + 0.2 * torch.randn(clean.shape, generator=g)).clamp(0, 1)
    return clean, noisy


def test_psnr_of_colour_images_is_over_every_pixel_and_channel():
    from skimage.metrics import peak_signal_noise_ratio

    clean, noisy = _colour_pair()
    expected = [peak_signal_noise_ratio(c.numpy(), n.numpy(), data_range=1.0) for c, n in zip(clean, noisy)]
    assert psnr(noisy, clean).tolist() == pytest.approx(expected, abs=1e-4)
    one_channel_off = clean.clone()
    one_channel_off[:, 1] += 0.3  # MSE 0.09 in one of three channels: 0.03 over the image
    assert psnr(one_channel_off, clean).tolist() == pytest.approx([-10 * math.log10(0.03)] * 3, abs=1e-4)


@pytest.mark.parametrize("channels", [1, 3])
def test_ssim_matches_scikit_image_per_channel_mean(channels):
    from skimage.metrics import structural_similarity

    clean, noisy = _colour_pair(channels)
    clean, noisy = clean[:, :channels], noisy[:, :channels]
    expected = [
        structural_similarity(
            c.double().numpy(),
            n.double().numpy(),
            channel_axis=0,
            data_range=1.0,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
        )
        for c, n in zip(clean, noisy)
    ]
    assert ssim(noisy, clean).tolist() == pytest.approx(expected, abs=1e-5)
    assert ssim(clean, clean).tolist() == pytest.approx([1.0] * 3, abs=1e-5)


def test_auroc_is_sklearns_with_ties_counting_half():
    import numpy as np
    from sklearn.metrics import roc_auc_score

    from latent_models.evaluation.metrics import auroc

    rng = np.random.default_rng(0)
    inliers, outliers = rng.normal(0, 1, 300).round(1), rng.normal(0.7, 1, 200).round(1)  # rounded: ties
    labels = np.r_[np.zeros(300), np.ones(200)]
    assert auroc(inliers, outliers) == pytest.approx(roc_auc_score(labels, np.r_[inliers, outliers]))
    assert auroc([1.0, 2.0], [3.0, 4.0]) == 1.0 and auroc([3.0, 4.0], [1.0, 2.0]) == 0.0
    assert auroc([1.0], [1.0]) == 0.5
    with pytest.raises(ValueError, match="at least one"):
        auroc([], [1.0])


def test_png_bits_grow_with_image_complexity():
    from latent_models.evaluation.metrics import png_bits

    blank = torch.zeros(1, 1, 28, 28)
    noise = torch.rand(1, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    bits = png_bits(torch.cat([blank, noise, noise.expand(1, 3, 28, 28)[:, :1]]))
    assert bits[0] < bits[1] and bits[1] == bits[2]
    assert bits[1] > 28 * 28 * 6  # random bytes barely compress
    assert png_bits(torch.rand(2, 3, 8, 8)).shape == (2,)  # colour images too

import torch

from latent_models.kinds.denoiser.scores import evaluate_denoiser, iterate_denoiser, psnr_by_level
from latent_models.kinds.vae.config import VAEModelConfig
from latent_models.kinds.vae.model import ConvVAE
from latent_models.kinds.vae.scores import evaluate_vae, importance_weighted_nll
from latent_models.noise import fixed_noise


class Identity(torch.nn.Module):
    def forward(self, x):
        return x


class Halve(torch.nn.Module):
    def forward(self, x):
        return x / 2


class Oracle(torch.nn.Module):
    """Returns the clean images whatever it is given."""

    def __init__(self, clean):
        super().__init__()
        self.clean = clean

    def forward(self, x):
        return self.clean[: x.shape[0]]


def test_denoiser_metrics_compare_with_noisy_input():
    clean = torch.rand(40, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    noisy = fixed_noise(clean, "gaussian", 0.2, seed=1)
    same = evaluate_denoiser(Identity(), clean, noisy)
    assert same["psnr"] == same["psnr_noisy"] and same["ssim"] == same["ssim_noisy"]
    perfect = evaluate_denoiser(Oracle(clean), clean, noisy)
    assert perfect["mse"] == 0.0 and perfect["psnr"] > 90 and perfect["ssim"] > 0.999
    assert perfect["psnr_noisy"] < 20


def test_psnr_sweep_falls_with_level_for_identity():
    clean = torch.rand(20, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    sweep = psnr_by_level(Identity(), clean, "gaussian", [0.05, 0.2, 0.5], seed=0)
    assert sweep["denoised"] == sweep["noisy"]
    assert sweep["noisy"][0] > sweep["noisy"][1] > sweep["noisy"][2]


def test_iterate_denoiser_returns_each_pass():
    # Not the identity: every pass must apply the model to the pass before it.
    x = torch.rand(3, 1, 28, 28)
    steps = iterate_denoiser(Halve(), x, 4)
    assert len(steps) == 5
    for i, step in enumerate(steps):
        assert torch.allclose(step, x / 2**i), f"pass {i}"


def test_importance_weighted_bound_is_tighter_than_elbo():
    torch.manual_seed(0)
    model = ConvVAE(VAEModelConfig(latent_dim=4, width=8)).eval()
    x = torch.rand(30, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    elbo = evaluate_vae(model, x, seed=0)
    iw1, _ = importance_weighted_nll(model, x, k=1, seed=0)
    iw50, stderr = importance_weighted_nll(model, x, k=50, seed=0)
    assert abs(iw1 - elbo["neg_elbo"]) < 0.05 * elbo["neg_elbo"]  # k=1 is the ELBO
    assert iw50 < iw1
    assert stderr > 0
    # chunking must not change the estimate
    iw50_chunked, _ = importance_weighted_nll(model, x, k=50, seed=0, chunk=100)
    assert abs(iw50_chunked - iw50) < 0.5


def test_vae_metrics_add_up():
    model = ConvVAE(VAEModelConfig(latent_dim=4, width=8)).eval()
    x = torch.rand(10, 1, 28, 28)
    m = evaluate_vae(model, x, seed=0)
    assert abs(m["neg_elbo"] - (m["recon"] + m["kl"])) < 1e-3
    assert 0 <= m["active_units"] <= 4


def test_bits_per_dim_of_grey_and_colour_vaes():
    import math

    from latent_models.evaluation.metrics import bits_per_dim
    from latent_models.evaluation.scores import TEST_SEED
    from latent_models.kinds.vae.scores import held_out_likelihood

    # A uniform density on [0, 1]^D (-log p = 0) is 8 bits per dimension of 8-bit images.
    assert bits_per_dim(0.0, (3, 32, 32), "gaussian") == 8.0
    assert bits_per_dim(92.80, (1, 28, 28), "bernoulli") == 92.80 / (784 * math.log(2))
    assert bits_per_dim(-1000.0, (1, 28, 28), "gaussian") == (-1000.0 + 784 * math.log(256)) / (784 * math.log(2))
    for shape, likelihood in (((1, 28, 28), "bernoulli"), ((3, 32, 32), "gaussian")):
        torch.manual_seed(0)
        model = ConvVAE(VAEModelConfig(image_shape=shape, latent_dim=4, width=8, likelihood=likelihood)).eval()
        x = torch.rand((6, *shape), generator=torch.Generator().manual_seed(1))
        m = evaluate_vae(model, x, seed=TEST_SEED)
        dims = math.prod(shape)
        nats_per_bit = dims * math.log(2)
        offset = dims * math.log(256) if likelihood == "gaussian" else 0.0
        assert m["neg_elbo_bits_per_dim"] == (m["neg_elbo"] + offset) / nats_per_bit
        test, _ = held_out_likelihood(model, x, iw_samples=3, iw_images=4)
        assert test["test_neg_elbo"] == m["neg_elbo"]
        assert test["test_neg_elbo_bits_per_dim"] == m["neg_elbo_bits_per_dim"]
        assert test["test_iw_nll_bits_per_dim"] == (test["test_iw_nll"] + offset) / nats_per_bit


def test_mean_image_background_scores_each_image():
    from latent_models.kinds.vae.scores import mean_image_nll, mean_image_nll_per_image

    train = torch.rand(50, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    images = torch.cat([train.mean(0, keepdim=True), torch.rand(3, 1, 28, 28, generator=torch.Generator())])
    for likelihood in ("bernoulli", "gaussian"):
        per_image = mean_image_nll_per_image(train, images, likelihood)
        assert per_image.shape == (4,)
        assert per_image.mean().item() == mean_image_nll(train, images, likelihood)
        if likelihood == "gaussian":  # the mean image itself is the background's most likely image
            assert per_image.argmin().item() == 0

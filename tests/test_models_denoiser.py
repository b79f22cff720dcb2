import pytest
import torch
from torch.nn import functional as F

from latent_models.errors import ConfigError
from latent_models.kinds.denoiser.config import DenoiserConfig
from latent_models.kinds.denoiser.model import ConvAutoencoder, UNetDenoiser, reconstruction_loss
from latent_models.models import build_model
from latent_models.models.config import config_from_dict
from latent_models.noise import add_noise


@pytest.mark.parametrize("arch", ["conv", "unet"])
def test_output_is_an_image_in_unit_range(arch):
    model = build_model(DenoiserConfig(arch=arch, latent_dim=12, width=8))
    x = torch.rand(5, 1, 28, 28)
    y = model(x)
    assert y.shape == x.shape
    assert y.min() >= 0.0 and y.max() <= 1.0
    assert torch.allclose(y, torch.sigmoid(model.logits(x)))


def test_conv_autoencoder_has_a_real_bottleneck():
    model = ConvAutoencoder(DenoiserConfig(arch="conv", latent_dim=7, width=8))
    x = torch.rand(3, 1, 28, 28)
    z = model.encode(x)
    assert z.shape == (3, 7)
    assert torch.allclose(model.decode(z), model(x))


def test_no_normalisation_or_activation_before_the_output():
    model = UNetDenoiser(DenoiserConfig(width=8))
    assert isinstance(model.out, torch.nn.Conv2d)
    assert not any(isinstance(m, (torch.nn.BatchNorm2d, torch.nn.GroupNorm)) for m in model.modules())
    ae = ConvAutoencoder(DenoiserConfig(arch="conv", width=8))
    assert isinstance(ae.decoder[-1], torch.nn.Conv2d)


def test_unknown_arch():
    with pytest.raises(ValueError, match="unknown arch"):
        build_model(DenoiserConfig(arch="transformer", latent_dim=8, width=8))


@pytest.mark.parametrize("arch", ["conv", "unet"])
def test_a_few_steps_reduce_the_denoising_loss(arch, fixture_data):
    from latent_models.data import load_splits

    torch.manual_seed(0)
    x = load_splits("mnist", str(fixture_data), val_size=100, download=False).train.images[:64]
    noisy = add_noise(x, "uniform", 0.5, torch.Generator().manual_seed(0))
    model = build_model(DenoiserConfig(arch=arch, latent_dim=16, width=8))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss = F.binary_cross_entropy_with_logits(model.logits(noisy), x)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]


def test_residual_unet_starts_as_the_identity_and_learns_a_correction():
    config = DenoiserConfig(image_shape=(3, 16, 16), width=4, residual=True)
    model = build_model(config)
    x = torch.rand(2, 3, 16, 16)
    x[0, 0, 0, :2] = torch.tensor([0.0, 1.0])  # the ends of the range pass through unchanged too
    assert torch.equal(model(x), x)  # the correction starts at zero
    plain = build_model(DenoiserConfig(image_shape=(3, 16, 16), width=4))
    assert not torch.allclose(plain(x), x, atol=1e-2)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(3):
        loss = reconstruction_loss(model, x, x.flip(0))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert not torch.allclose(model(x), x, atol=1e-3)  # the output layer does learn
    assert model(x).min() >= 0 and model(x).max() <= 1  # clamped to an image
    with pytest.raises(ValueError, match="no logits"):
        model.logits(x)
    assert config_from_dict(config.to_dict()) == config
    assert config_from_dict({k: v for k, v in config.to_dict().items() if k != "residual"}).residual is False
    with pytest.raises(ConfigError, match="residual=true needs arch=unet"):
        DenoiserConfig(arch="conv", residual=True)


@pytest.mark.parametrize("arch", ["conv", "unet"])
def test_each_head_trains_with_its_own_loss(arch):
    """Sigmoid head: BCE on the logits; residual head: MSE on the unclamped input + correction,
    so a correction that overshoots [0, 1] still gets a gradient."""
    x, clean = torch.rand(4, 1, 8, 8), torch.rand(4, 1, 8, 8)
    sigmoid = build_model(DenoiserConfig(image_shape=(1, 8, 8), arch=arch, width=4, latent_dim=4))
    expected = F.binary_cross_entropy_with_logits(sigmoid.logits(x), clean, reduction="none")
    assert torch.allclose(reconstruction_loss(sigmoid, x, clean, reduction="none"), expected)
    assert torch.allclose(reconstruction_loss(sigmoid, x, clean), expected.mean())
    if arch == "conv":
        return
    residual = build_model(DenoiserConfig(image_shape=(1, 8, 8), width=4, residual=True))
    with torch.no_grad():
        residual.out.bias.fill_(0.5)  # pushes the output past 1 where x > 0.5
    raw = x + 0.5
    assert torch.allclose(residual.raw_output(x), raw)
    assert torch.allclose(residual(x), raw.clamp(0, 1))
    assert torch.allclose(reconstruction_loss(residual, x, clean), F.mse_loss(raw, clean))
    assert not torch.allclose(reconstruction_loss(residual, x, clean), F.mse_loss(raw.clamp(0, 1), clean))

"""The denoising autoencoder: noisy images in, clean images out (see `kind.py` for the folder)."""

from latent_models.kinds.denoiser.config import AEConfig, DenoiserConfig, DenoiserEvaluation
from latent_models.kinds.kind import Kind

KIND = Kind(
    name="denoiser",
    title="the denoising autoencoder",
    model_config=DenoiserConfig,
    entry_point="ae",
    config=AEConfig,
    validation_metrics={"val_psnr": True, "val_ssim": True, "val_loss": False},
    evaluate_options=DenoiserEvaluation,
    test_metric="test_psnr",
)

"""The words of a denoiser's run report and registry page (rendered by `evaluation.report`)."""

from __future__ import annotations

from latent_models.evaluation import figures
from latent_models.evaluation.report import AE_VERSUS_VAE, DOCS_PAGE, WHERE_THE_NOISE_GOES, epochs_text

TITLE = "Denoising autoencoder"

METRIC_MEANINGS = {
    "val_psnr_noisy": "PSNR of the noisy validation images themselves: what doing nothing scores. A version "
    "whose val_psnr is not above it is never made `champion`.",
    "val_loss": "Binary cross-entropy per pixel between denoised and clean validation images (lower is better).",
    "val_psnr": "Mean PSNR of the denoised validation images in dB (higher is better); picks the best epoch.",
    "val_ssim": "Mean SSIM of the denoised validation images (1 means structurally identical to the clean image).",
    "test_psnr": "Peak signal-to-noise ratio of the denoised test images against the clean ones, in dB, "
    "averaged per image: 10·log10(1/MSE); higher is better, +3 dB halves the squared error.",
    "test_ssim": "Structural similarity of denoised and clean test images (local means, contrasts and "
    "correlations in 11×11 windows); 1 is a perfect match.",
    "test_mse": "Mean squared pixel error of the denoised test images (pixels in [0, 1]); lower is better.",
    "test_psnr_noisy": "PSNR of the noisy test input itself: the starting point, so `test_psnr` − "
    "`test_psnr_noisy` is what the model gained.",
    "test_ssim_noisy": "SSIM of the noisy test input: the baseline for `test_ssim`.",
    "test_mse_noisy": "Mean squared error of the noisy test input: the baseline for `test_mse`.",
    "iterative_psnr": "Test PSNR after feeding the denoiser's output back in, one step per pass "
    "(step 0: the noisy input, step 1: one ordinary pass).",
}

FIGURE_CAPTIONS = {
    figures.LOSS_CURVES: "Training and validation loss, validation PSNR and SSIM per epoch.",
    figures.DENOISING["val"]: "Validation digits: noisy input, clean target, denoised output; above each, "
    "its PSNR before → after.",
    figures.DENOISING["test"]: "The same on test digits: the noise is fixed by a seed, so runs compare.",
    figures.PSNR_VERSUS_LEVEL: "The model across a sweep of noise levels beside the noisy input: "
    "how far it generalises beyond the level it was trained at.",
    figures.ITERATIVE_RECONSTRUCTION: "Feeding the denoiser's output back in: the images after each "
    "pass, and the mean PSNR per pass.",
}

EXPLANATIONS = [
    (
        "What this model does",
        [
            "A denoising autoencoder is trained on pairs: a clean digit and the same digit with fresh random "
            "noise, drawn anew every batch. It learns to map the noisy version back to the clean one "
            "(binary cross-entropy per pixel). The `unet` architecture keeps skip connections from encoder "
            "to decoder and is the stronger denoiser; `conv` forces everything through a `latent_dim` "
            "bottleneck, a true code for studying the latent space.",
        ],
    ),
    AE_VERSUS_VAE,
    WHERE_THE_NOISE_GOES,
    (
        "Iterative reconstruction",
        [
            "What happens if the denoiser's output is fed back in, again and again? A denoiser that had learnt "
            "a clean projection onto 'digit-like' images would stop changing after the first pass. In "
            "practice the first pass does almost all the work; later passes see inputs cleaner than anything "
            "it was trained on, so they change little or slowly drift: strokes thin or thicken and odd digits "
            "move towards typical ones. The PSNR per pass (`iterative_psnr`) shows whether repetition helps.",
        ],
    ),
    (
        "PSNR and SSIM, and why the noisy input's PSNR is shown beside them",
        [
            "PSNR (peak signal-to-noise ratio) is the mean squared error on a log scale: 10·log10(1/MSE) dB "
            "for pixels in [0, 1]. Each +10 dB divides the squared error by ten; +3 dB halves it. SSIM "
            "compares local brightness, contrast and structure in small windows and is closer to what the "
            "eye sees; 1 means identical.",
            "A PSNR alone says little: 25 dB is excellent from a badly corrupted input and poor from a "
            "barely noisy one. The noise level sets the starting point, so every quality metric is logged "
            "for the noisy input too (`test_psnr_noisy`, ...); the difference is what the model achieved, "
            "and the noise-level sweep shows the same comparison beyond the level it was trained at.",
        ],
    ),
]


def summary(cfg, m: dict[str, float]) -> list[str]:
    gain = m["test_psnr"] - m["test_psnr_noisy"]
    text = [
        f"This run trained the `{cfg.arch}` denoiser on {cfg.dataset} for {epochs_text(cfg.epochs)} against "
        f"{cfg.noise} noise at level {cfg.noise_level:g}. On the test set the denoised images reach "
        f"{m['test_psnr']:.2f} dB PSNR from {m['test_psnr_noisy']:.2f} dB for the noisy input, a gain of "
        f"{gain:+.2f} dB; SSIM goes from {m['test_ssim_noisy']:.3f} to {m['test_ssim']:.3f}.",
    ]
    if gain < 0:
        text.append("A negative gain means the output is worse than its input: this model needs more training.")
    return text


REGISTERED_MODEL_DESCRIPTION = (
    "A convolutional denoising autoencoder: it takes noisy images and returns them denoised, in the "
    "form they came (floats in [0, 1] as (N, H, W), (N, C, H, W) or (N, H*W); or a column `image` of "
    "base64 PNGs).\n\n"
    "Serve the champion: `mlflow models serve -m models:/{name}@champion -p 5001 --env-manager local`, "
    'then POST `{{"inputs": [[...28 rows of 28 floats...]]}}` to `/invocations`. '
    "Every version's description says what it was trained on and how it scored. Docs: " + DOCS_PAGE + "."
)

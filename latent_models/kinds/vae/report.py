"""The words of a VAE's run report and registry page (rendered by `evaluation.report`)."""

from __future__ import annotations

from latent_models.evaluation import figures
from latent_models.evaluation.report import AE_VERSUS_VAE, DOCS_PAGE, WHERE_THE_NOISE_GOES, epochs_text

TITLE = "Variational autoencoder"

METRIC_MEANINGS = {
    "val_neg_elbo_mean_image": "−log p(x) of the validation images under independent pixels around the training "
    "mean: a model that ignores the image. A VAE whose val_neg_elbo is not below it is "
    "never made `champion`.",
    "train_neg_elbo": "−ELBO on the training batches with the KL weight fixed at 1, in nats per image.",
    "kl_weight": "The KL weight in the training loss, averaged over the epoch: rises from 0 to beta during warm-up.",
    "val_neg_elbo": "−ELBO on the validation set in nats per image (β = 1 whatever the warm-up); picks the best epoch.",
    "val_recon": "Reconstruction term of the validation −ELBO: −log p(x|z) in nats per image.",
    "val_kl": "KL term of the validation −ELBO: KL(q(z|x) ‖ N(0, I)) in nats per image.",
    "val_active_units": "Latent units whose posterior mean varies across validation images (variance > 0.01).",
    "test_neg_elbo": "Negative evidence lower bound on the test set, in nats per image: reconstruction + KL, "
    "an upper bound on −log p(x) (lower is better).",
    "test_recon": "Reconstruction term of the test −ELBO: how many nats the decoder needs to explain an image "
    "given its code.",
    "test_kl": "KL term of the test −ELBO: how many nats of information the codes carry beyond the prior.",
    "test_active_units": "Latent units the model really uses: their posterior mean varies across test images "
    "(variance > 0.01); the others have collapsed to the prior.",
    "test_iw_nll": "Importance-weighted estimate of −log p(x) with k samples (Burda et al. 2016), in nats per "
    "image: a tighter bound than `test_neg_elbo`.",
    "test_iw_nll_stderr": "Standard error of `test_iw_nll` over the test images it used.",
    "test_neg_elbo_bits_per_dim": "`test_neg_elbo` in bits per dimension, D = channels × height × width, so "
    "images of any size and colour compare. Gaussian likelihood: (−ELBO + D·ln 256) / (D·ln 2), a bound on the "
    "bits/dim of the 8-bit images under uniform dequantization, as image models report it; Bernoulli: "
    "−ELBO / (D·ln 2), the Bernoulli bound per dimension (bits per pixel of binarized images; on grey levels "
    "not a likelihood of 8-bit images).",
    "val_neg_elbo_bits_per_dim": "`val_neg_elbo` in bits per dimension (as `test_neg_elbo_bits_per_dim`).",
    "test_iw_nll_bits_per_dim": "`test_iw_nll` in bits per dimension (as `test_neg_elbo_bits_per_dim`).",
    "iw_nll_seconds": "Seconds spent computing `test_iw_nll`.",
    "ood_auroc_nll": "How well −log p(x) (importance-weighted, k = iw_samples) tells the test images from the "
    "other dataset's (MNIST against Fashion-MNIST, or back), as an out-of-distribution detector: the chance "
    "that a random image of the other dataset gets a higher score than a random test image. 1 is perfect, "
    "0.5 chance; below 0.5 the likelihood is fooled, rating the foreign images as more likely, as is known "
    "for a Fashion-MNIST model shown digits (the run's tag `ood_raw_likelihood` says which).",
    "ood_auroc_complexity": "The same AUROC for the input-complexity-corrected score S(x) = −log2 p(x) − L(x), "
    "L(x) the image's size in bits as a PNG (Serrà et al. 2020): what the model needs beyond what a generic "
    "compressor needs, removing the part of the likelihood that only says an image is simple (digits are "
    "mostly black). It assumes the model's bits are bits of the same 8-bit image: true of a binarized model's "
    "binary images, not of a Bernoulli model of grey levels, whose few hundred bits the PNG's thousands swamp.",
    "ood_auroc_ratio": "The same AUROC for the likelihood ratio to a background model that ignores the image: "
    "−log p(x) + log p_mean(x), p_mean the independent pixels around the training mean in the VAE's own "
    "likelihood (`val_neg_elbo_mean_image`'s model): what the VAE explains beyond pixel statistics, in the "
    "same units whatever the likelihood.",
    "ood_nll_inliers": "Mean −log p(x) in nats of the test images scored for the AUROC.",
    "ood_nll_outliers": "Mean −log p(x) in nats of the other dataset's test images scored for the AUROC: "
    "below `ood_nll_inliers` when the likelihood is fooled.",
}

FIGURE_CAPTIONS = {
    figures.LOSS_CURVES: "−ELBO (train and validation), its reconstruction and KL terms, and the "
    "active latent units per epoch.",
    figures.RECONSTRUCTIONS: "Test digits and their reconstructions, decoded from the posterior mean.",
    figures.SAMPLES: "New digits: codes drawn from the prior N(0, I), decoded.",
    figures.SAMPLES_FITTED_PRIOR: "New digits from a Gaussian mixture fitted to the training codes instead of N(0, I).",
    figures.INTERPOLATION: "Decoding evenly spaced points on the line between the codes of two test "
    "digits: a smooth latent space morphs one into the other.",
    figures.OOD_SCORES: "Out-of-distribution check: the scores of the test images and of the other "
    "dataset's, raw (−log p(x) in bits per dimension) and corrected for input complexity; the less the "
    "histograms overlap, the higher the AUROC.",
    figures.LATENT_MAP: "The test codes (posterior means) projected on their two principal axes, "
    "coloured by the true class, which the VAE never saw.",
}

EXPLANATIONS = [
    (
        "What this model does",
        [
            "The encoder turns an image x into the mean and variance of a Gaussian q(z|x) over latent codes; "
            "the decoder turns a code z into pixel probabilities p(x|z); the prior p(z) is N(0, I). Training "
            "maximises the evidence lower bound, ELBO = E_q[log p(x|z)] − KL(q(z|x) ‖ p(z)): rebuild the "
            "image well, while keeping its code close to the prior.",
        ],
    ),
    AE_VERSUS_VAE,
    WHERE_THE_NOISE_GOES,
    (
        "The reparameterization trick",
        [
            "Sampling z from q(z|x) is random, and gradients cannot flow through a random draw. The trick "
            "writes the sample as z = μ + σ·ε with ε ~ N(0, I) drawn independently: the randomness sits in "
            "ε, and z is an ordinary differentiable function of the encoder's outputs μ and σ, so the whole "
            "model trains with plain backpropagation.",
        ],
    ),
    (
        "The KL term, warm-up, active units and posterior collapse",
        [
            "The KL term measures, in nats, how far each image's code distribution is from the prior: the "
            "information the code carries about the image. Weighting it by `beta` trades reconstruction "
            "for a smoother, more prior-like latent space.",
            "KL warm-up starts the weight at 0 and raises it linearly to `beta` over `kl_warmup_epochs`, so "
            "the decoder first learns to use the codes before the penalty pushes them towards the prior. "
            "The logged −ELBO always uses weight 1, so it compares across settings.",
            "Active units are latent dimensions whose posterior mean really varies from image to image. An "
            "inactive unit has collapsed to the prior: it carries nothing. When most units (or all, with a "
            "KL near 0) are inactive, the decoder has learnt to ignore z: posterior collapse. Fewer active "
            "units than `latent_dim` is normal; the rest are spare capacity the KL switched off.",
        ],
    ),
    (
        "−ELBO in nats and the importance-weighted NLL",
        [
            "The −ELBO is an upper bound on −log p(x), the number of nats (natural-log units; 1 nat = 1.44 "
            "bits) the model needs to encode an image. Lower is better; it is reported per image, and per "
            "dimension in bits (`*_bits_per_dim`), which compares images of different sizes and channels.",
            "The importance-weighted estimate (Burda et al. 2016) averages k samples from q(z|x) inside the "
            "logarithm. It is a tighter bound that approaches the true −log p(x) as k grows, so "
            "`test_iw_nll` ≤ `test_neg_elbo` and the gap shows how loose the ELBO is. With `binarize` and "
            "the Bernoulli likelihood it is the standard binarized-MNIST number from the literature; on "
            "grey-level intensities or with the Gaussian likelihood it compares only between runs of this "
            "project.",
        ],
    ),
]


def summary(cfg, m: dict[str, float]) -> list[str]:
    warmup = (
        f"the KL weight rising to β = {cfg.beta:g} during a warm-up of {epochs_text(cfg.kl_warmup_epochs)}"
        if cfg.kl_warmup_epochs > 0
        else f"the KL weight at β = {cfg.beta:g} from the start"
    )
    bits = m.get("test_neg_elbo_bits_per_dim")
    bits = f" ({bits:.3f} bits per dimension)" if bits is not None else ""
    text = [
        f"This run trained a VAE with {cfg.latent_dim} latent dimensions and a {cfg.likelihood} decoder on "
        f"{cfg.dataset}{' (dynamically binarized)' if cfg.binarize else ''} for {epochs_text(cfg.epochs)}, {warmup}. "
        f"Test −ELBO: {m['test_neg_elbo']:.2f} nats per image{bits} = reconstruction {m['test_recon']:.2f} + KL "
        f"{m['test_kl']:.2f}; importance-weighted NLL (k = {cfg.iw_samples}): {m['test_iw_nll']:.2f} ± "
        f"{m['test_iw_nll_stderr']:.2f} nats. {m['test_active_units']:.0f} of {cfg.latent_dim} latent units "
        "are active.",
    ]
    if m["test_active_units"] < cfg.latent_dim / 4 or m["test_kl"] < 1.0:
        text.append(
            "Few active units or a KL near zero: the decoder ignores most of the code. After enough "
            "training that is posterior collapse (see below); a longer KL warm-up or a smaller `beta` helps."
        )
    return text


REGISTERED_MODEL_DESCRIPTION = (
    "A convolutional variational autoencoder: it reconstructs images (the default mode), draws new "
    'ones (`params: {{"mode": "sample", "n": 16, "seed": 0}}`), decodes latent vectors '
    '(`"mode": "decode"`) and scores images by their −log p(x) (`"mode": "score"`, `"k": 100`).\n\n'
    "Serve the champion: `mlflow models serve -m models:/{name}@champion -p 5002 --env-manager local`, "
    "then POST to `/invocations`. Every version's description says what it was trained on and how it "
    "scored. Docs: " + DOCS_PAGE + "."
)

"""The run report: one self-contained HTML page per training run (`report.html`).

Built from plain data only (the config dataclass, the final metrics, the per-epoch history
and the logged figures as PNG bytes), so it knows nothing of models or of MLflow.

HTML rather than Markdown because of how MLflow's artifact viewer shows them (3.17): an
.html artifact is rendered in a sandboxed iframe from a blob: URL, where data: URIs work,
so the figures are embedded as base64 PNGs; an .md artifact is rendered by react-markdown,
whose default URL filter drops data: URIs, and a relative image link or a raw <img> does
not show either (the report would show no figures).
"""

from __future__ import annotations

import base64
import collections
import dataclasses
import html
import math
import re

from latent_models.config import as_params
from latent_models.evaluation import figures

TITLES = {"denoiser": "Denoising autoencoder", "vae": "Variational autoencoder"}

# --- what every logged metric means -------------------------------------------------------

METRIC_MEANINGS = {
    # both models
    "train_loss": "The training objective averaged over the epoch's batches: binary cross-entropy per pixel "
    "for the denoiser; for the VAE the −ELBO with the current (warm-up) KL weight.",
    "lr": "Learning rate at the end of the epoch (the schedule changes it every batch).",
    "val_psnr_noisy": "PSNR of the noisy validation images themselves: what doing nothing scores. A version "
    "whose val_psnr is not above it is never made `champion`.",
    "val_neg_elbo_mean_image": "−log p(x) of the validation images under independent pixels around the training "
    "mean: a model that ignores the image. A VAE whose val_neg_elbo is not below it is "
    "never made `champion`.",
    "best_epoch": "The epoch whose weights were kept (best on validation), counted from 0 like the metric "
    "steps: epoch best_epoch + 1 in the loss-curve figure.",
    "train_seconds": "Wall-clock seconds spent training, validation after each epoch included.",
    "train_images_per_second": "Training throughput: training images processed per second of `train_seconds`.",
    # denoising autoencoder
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
    # variational autoencoder
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
}

# --- what each figure shows ----------------------------------------------------------------

FIGURE_CAPTIONS = {
    "denoiser": {
        figures.LOSS_CURVES: "Training and validation loss, validation PSNR and SSIM per epoch.",
        figures.DENOISING["val"]: "Validation digits: noisy input, clean target, denoised output; above each, "
        "its PSNR before → after.",
        figures.DENOISING["test"]: "The same on test digits: the noise is fixed by a seed, so runs compare.",
        figures.PSNR_VERSUS_LEVEL: "The model across a sweep of noise levels beside the noisy input: "
        "how far it generalises beyond the level it was trained at.",
        figures.ITERATIVE_RECONSTRUCTION: "Feeding the denoiser's output back in: the images after each "
        "pass, and the mean PSNR per pass.",
    },
    "vae": {
        figures.LOSS_CURVES: "−ELBO (train and validation), its reconstruction and KL terms, and the "
        "active latent units per epoch.",
        figures.RECONSTRUCTIONS: "Test digits and their reconstructions, decoded from the posterior mean.",
        figures.SAMPLES: "New digits: codes drawn from the prior N(0, I), decoded.",
        figures.SAMPLES_FITTED_PRIOR: "New digits from a Gaussian mixture fitted to the training codes "
        "instead of N(0, I).",
        figures.INTERPOLATION: "Decoding evenly spaced points on the line between the codes of two test "
        "digits: a smooth latent space morphs one into the other.",
        figures.LATENT_MAP: "The test codes (posterior means) projected on their two principal axes, "
        "coloured by the true class, which the VAE never saw.",
    },
}

# --- background, adapted to the model type ---------------------------------------------------
# (title, paragraphs); `backticks` become code.

AE_VERSUS_VAE = (
    "Autoencoder or variational autoencoder?",
    [
        "Both squeeze an image through an encoder into a code and rebuild it with a decoder. A plain "
        "autoencoder (AE) maps each image to one point and is trained only to rebuild it: nothing makes the "
        "space between those points meaningful, so decoding a random code gives noise. It is a compressor or, "
        "trained on corrupted inputs, a denoiser, not a generator.",
        "A variational autoencoder (VAE) maps each image to a distribution q(z|x), a small Gaussian cloud, and a "
        "KL penalty pulls every cloud towards one shared prior N(0, I). The codes then fill a known region "
        "without gaps, so any z drawn from the prior decodes to a plausible digit: the VAE is a generative model "
        "with a likelihood you can measure in nats.",
    ],
)

WHERE_THE_NOISE_GOES = (
    "Noise in the input or noise in the latent space",
    [
        "The denoising AE puts noise in the input: it sees a corrupted image and must output the clean one, so "
        "it learns what digits look like and pulls any nearby image back onto them.",
        "The VAE puts noise in the latent space: during training the decoder gets a random point from the "
        "encoder's cloud instead of its centre, so it must decode a whole neighbourhood of each code to the same "
        "digit. That is what makes the VAE's latent space smooth enough to sample and interpolate in.",
    ],
)

EXPLANATIONS = {
    "denoiser": [
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
    ],
    "vae": [
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
    ],
}


# --- this run in one paragraph -------------------------------------------------------------------


def _denoiser_summary(cfg, m: dict[str, float]) -> list[str]:
    gain = m["test_psnr"] - m["test_psnr_noisy"]
    text = [
        f"This run trained the `{cfg.arch}` denoiser on {cfg.dataset} for {_epochs(cfg.epochs)} against "
        f"{cfg.noise} noise at level {cfg.noise_level:g}. On the test set the denoised images reach "
        f"{m['test_psnr']:.2f} dB PSNR from {m['test_psnr_noisy']:.2f} dB for the noisy input, a gain of "
        f"{gain:+.2f} dB; SSIM goes from {m['test_ssim_noisy']:.3f} to {m['test_ssim']:.3f}.",
    ]
    if gain < 0:
        text.append("A negative gain means the output is worse than its input: this model needs more training.")
    return text


def _vae_summary(cfg, m: dict[str, float]) -> list[str]:
    warmup = (
        f"the KL weight rising to β = {cfg.beta:g} during a warm-up of {_epochs(cfg.kl_warmup_epochs)}"
        if cfg.kl_warmup_epochs > 0
        else f"the KL weight at β = {cfg.beta:g} from the start"
    )
    bits = m.get("test_neg_elbo_bits_per_dim")
    bits = f" ({bits:.3f} bits per dimension)" if bits is not None else ""
    text = [
        f"This run trained a VAE with {cfg.latent_dim} latent dimensions and a {cfg.likelihood} decoder on "
        f"{cfg.dataset}{' (dynamically binarized)' if cfg.binarize else ''} for {_epochs(cfg.epochs)}, {warmup}. "
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


SUMMARIES = {"denoiser": _denoiser_summary, "vae": _vae_summary}


def summary(model_type: str, cfg, metrics: dict[str, float]) -> list[str]:
    """The run in a paragraph or two (`backticks` for code): the report opens with it, and it
    is the run's description in the MLflow UI."""
    return SUMMARIES[model_type](cfg, collections.defaultdict(lambda: math.nan, metrics))


# --- the registry's pages -------------------------------------------------------------------------

DOCS_PAGE = "docs/serving.md in the latent-models repository (`mkdocs serve` shows the site)"
# A registered model's description: what it does and how to call it (the MLflow UI shows it as Markdown).
REGISTERED_MODEL_DESCRIPTIONS = {
    "denoiser": (
        "A convolutional denoising autoencoder: it takes noisy images and returns them denoised, in the "
        "form they came (floats in [0, 1] as (N, H, W), (N, C, H, W) or (N, H*W); or a column `image` of "
        "base64 PNGs).\n\n"
        "Serve the champion: `mlflow models serve -m models:/{name}@champion -p 5001 --env-manager local`, "
        'then POST `{{"inputs": [[...28 rows of 28 floats...]]}}` to `/invocations`. '
        "Every version's description says what it was trained on and how it scored. Docs: " + DOCS_PAGE + "."
    ),
    "vae": (
        "A convolutional variational autoencoder: it reconstructs images (the default mode), draws new "
        'ones (`params: {{"mode": "sample", "n": 16, "seed": 0}}`) and decodes latent vectors '
        '(`"mode": "decode"`).\n\n'
        "Serve the champion: `mlflow models serve -m models:/{name}@champion -p 5002 --env-manager local`, "
        "then POST to `/invocations`. Every version's description says what it was trained on and how it "
        "scored. Docs: " + DOCS_PAGE + "."
    ),
    "classifier": (
        "A small convolutional digit classifier, trained by `evaluate` on first use: its features give the "
        "FID and class entropy of a VAE's samples. It returns class probabilities (N, classes). "
        "Docs: docs/evaluate-sweep-search.md in the latent-models repository."
    ),
}


def registered_model_description(model_type: str, name: str) -> str:
    return REGISTERED_MODEL_DESCRIPTIONS[model_type].format(name=name)


def model_description(summary_paragraphs: list[str], selected: dict[str, float], test: dict[str, float]) -> str:
    """A logged model's and its registered version's description: the run's summary, then the
    metrics it was chosen on (validation) and the ones it is reported with (test)."""
    line = lambda title, m: f"**{title}:** " + ", ".join(f"{k} = {_number(v)}" for k, v in m.items())  # noqa: E731
    return "\n\n".join([*summary_paragraphs, line("Chosen on validation", selected), line("Test", test)])


def _epochs(n: float) -> str:
    return f"{n:g} epoch" + ("" if n == 1 else "s")


# --- rendering -------------------------------------------------------------------------------------

CSS = """
body { font: 15px/1.55 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1f2328;
       max-width: 980px; margin: 0 auto; padding: 16px 24px 48px; }
h1 { font-size: 26px; margin: 8px 0 2px; } h2 { font-size: 20px; margin-top: 36px;
     border-bottom: 1px solid #d0d7de; padding-bottom: 4px; } h3 { font-size: 16px; margin: 22px 0 4px; }
.sub, figcaption, .note { color: #59636e; } nav a { margin-right: 14px; }
code { font: 13px ui-monospace, Menlo, Consolas, monospace; background: #f3f4f6; padding: 1px 4px;
       border-radius: 4px; }
table { border-collapse: collapse; width: 100%; margin: 8px 0; font-size: 14px; }
th, td { border: 1px solid #d0d7de; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f6f8fa; } td.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
tr.best td { background: #eef6ee; font-weight: 600; }
figure { margin: 20px 0; } figure img { max-width: 100%; border: 1px solid #d0d7de; border-radius: 4px; }
"""

_MIME = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif"}


def render(
    model_type: str,
    cfg,
    metrics: dict[str, float],
    history: list[dict],
    figures: dict[str, bytes],
    run_name: str = "",
    run_id: str = "",
) -> str:
    """The report as one HTML document. `model_type` is `denoiser` or `vae`; `figures` maps
    artifact paths (e.g. figures/loss_curves.png) to the logged PNG files' bytes."""
    title = f"{TITLES[model_type]}: run report"
    sub = " · ".join(html.escape(s) for s in (run_name, f"run {run_id}" if run_id else "", cfg.dataset) if s)
    sections = [
        ("summary", "This run", "".join(_paragraph(p) for p in summary(model_type, cfg, metrics))),
        ("results", "Key results", _metrics_table(metrics)),
        ("figures", "Figures", _figures(model_type, figures)),
        (
            "background",
            "Background: what the numbers and pictures mean",
            "".join(
                f"<h3>{html.escape(heading)}</h3>" + "".join(_paragraph(p) for p in paragraphs)
                for heading, paragraphs in EXPLANATIONS[model_type]
            ),
        ),
        ("history", "Per-epoch history", _history_table(history, metrics.get("best_epoch"))),
        ("config", "Configuration", _config_table(cfg)),
    ]
    nav = "".join(f'<a href="#{key}">{html.escape(name)}</a>' for key, name, _ in sections)
    body = "".join(f'<h2 id="{key}">{html.escape(name)}</h2>{content}' for key, name, content in sections)
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f'<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1><p class="sub">{sub}</p>'
        f"<nav>{nav}</nav>{body}</body></html>\n"
    )


def _inline(text: str) -> str:
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


def _paragraph(text: str) -> str:
    return f"<p>{_inline(text)}</p>"


def _number(value) -> str:
    value = float(value)
    if math.isnan(value):
        return "n/a"
    if value.is_integer() and abs(value) < 1e6:
        return f"{int(value):,}"
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"


def _table(
    header: list[str], rows: list[list[str]], numeric: set[int] = frozenset(), row_classes: list[str] | None = None
) -> str:
    """`rows` hold cells of HTML, escaped already; the `numeric` columns are right-aligned."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    td = ['<td class="num">' if i in numeric else "<td>" for i in range(len(header))]
    body = "".join(
        f'<tr class="{row_class}">' + "".join(f"{td[i]}{cell}</td>" for i, cell in enumerate(row)) + "</tr>"
        for row, row_class in zip(rows, row_classes or [""] * len(rows))
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _metrics_table(metrics: dict[str, float]) -> str:
    rows = [
        [f"<code>{html.escape(k)}</code>", _number(v), _inline(METRIC_MEANINGS.get(k, ""))] for k, v in metrics.items()
    ]
    return _table(["metric", "value", "meaning"], rows, numeric={1})


def _figures(model_type: str, figures: dict[str, bytes]) -> str:
    """Each image, embedded as a data: URI (the artifact viewer's iframe cannot follow
    relative links), known figures first in the order of FIGURE_CAPTIONS."""
    captions = FIGURE_CAPTIONS[model_type]
    images = {path: _MIME.get(path[path.rfind(".") :].lower()) for path in figures}
    ordered = [p for p in captions if images.get(p)] + sorted(p for p in images if images[p] and p not in captions)
    if not ordered:
        return '<p class="note">This run logged no figures.</p>'
    return "".join(
        f'<figure><img src="data:{images[path]};base64,{base64.b64encode(figures[path]).decode("ascii")}" '
        f'alt="{html.escape(captions.get(path, path))}"><figcaption><code>{html.escape(path)}</code> '
        f"{_inline(captions.get(path, ''))}</figcaption></figure>"
        for path in ordered
    )


def _history_table(history: list[dict], best_epoch) -> str:
    if not history:
        return '<p class="note">No epochs recorded.</p>'
    names = list(dict.fromkeys(k for epoch in history for k in epoch))
    rows = [[str(i + 1)] + [_number(epoch[k]) if k in epoch else "" for k in names] for i, epoch in enumerate(history)]
    best = ["best" if best_epoch is not None and i == int(best_epoch) else "" for i in range(len(history))]
    legend = "".join(f"<li><code>{html.escape(k)}</code>: {_inline(METRIC_MEANINGS.get(k, ''))}</li>" for k in names)
    return (
        _table(["epoch"] + names, rows, set(range(len(names) + 1)), best)
        + '<p class="note">Epochs counted from 1 as in the loss-curve figure; the highlighted row is the '
        f"epoch whose weights were kept.</p><ul>{legend}</ul>"
    )


def _config_table(cfg) -> str:
    helps = {f.name: f.metadata.get("help", "") for f in dataclasses.fields(cfg)}
    rows = [
        [f"<code>{html.escape(k)}</code>", _config_value(v), _inline(helps.get(k, ""))]
        for k, v in as_params(cfg).items()
    ]
    return _table(["param", "value", "meaning"], rows)


def _config_value(value) -> str:
    if value == "":
        return '<span class="note">(empty)</span>'
    return html.escape(str(value).lower() if isinstance(value, bool) else str(value))

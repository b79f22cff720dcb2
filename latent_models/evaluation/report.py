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

from latent_models.options import as_params

# --- what every logged metric means -------------------------------------------------------

# The metrics every kind logs; each kind's own: its folder's report.py.
SHARED_METRIC_MEANINGS = {
    "train_loss": "The training objective averaged over the epoch's batches: binary cross-entropy per pixel "
    "for the denoiser; for the VAE the −ELBO with the current (warm-up) KL weight.",
    "lr": "Learning rate at the end of the epoch (the schedule changes it every batch).",
    "best_epoch": "The epoch whose weights were kept (best on validation), counted from 0 like the metric "
    "steps: epoch best_epoch + 1 in the loss-curve figure.",
    "train_seconds": "Wall-clock seconds spent training, validation after each epoch included.",
    "train_images_per_second": "Training throughput: training images processed per second of `train_seconds`.",
}


# --- background the autoencoder kinds share: (title, paragraphs); `backticks` become code --------

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

# --- this run in one paragraph -------------------------------------------------------------------


def _texts(kind: str):
    """The kind's own words: its folder's report.py."""
    from latent_models.kinds import kind as kind_named

    return kind_named(kind).texts()


def metric_meanings(kind: str) -> dict[str, str]:
    """What each metric a run of `kind` logs means."""
    return {**SHARED_METRIC_MEANINGS, **_texts(kind).METRIC_MEANINGS}


def summary(model_type: str, cfg, metrics: dict[str, float]) -> list[str]:
    """The run in a paragraph or two (`backticks` for code): the report opens with it, and it
    is the run's description in the MLflow UI."""
    return _texts(model_type).summary(cfg, collections.defaultdict(lambda: math.nan, metrics))


# --- the registry's pages -------------------------------------------------------------------------

DOCS_PAGE = "docs/serving.md in the latent-models repository (`mkdocs serve` shows the site)"


# A registered model's description: what it does and how to call it (the MLflow UI shows it as Markdown).
def registered_model_description(model_type: str, name: str) -> str:
    return _texts(model_type).REGISTERED_MODEL_DESCRIPTION.format(name=name)


def model_description(summary_paragraphs: list[str], selected: dict[str, float], test: dict[str, float]) -> str:
    """A logged model's and its registered version's description: the run's summary, then the
    metrics it was chosen on (validation) and the ones it is reported with (test)."""
    line = lambda title, m: f"**{title}:** " + ", ".join(f"{k} = {_number(v)}" for k, v in m.items())  # noqa: E731
    return "\n\n".join([*summary_paragraphs, line("Chosen on validation", selected), line("Test", test)])


def epochs_text(n: float) -> str:
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
    texts = _texts(model_type)
    title = f"{texts.TITLE}: run report"
    sub = " · ".join(html.escape(s) for s in (run_name, f"run {run_id}" if run_id else "", cfg.dataset) if s)
    sections = [
        ("summary", "This run", "".join(_paragraph(p) for p in summary(model_type, cfg, metrics))),
        ("results", "Key results", _metrics_table(metrics, metric_meanings(model_type))),
        ("figures", "Figures", _figures(texts.FIGURE_CAPTIONS, figures)),
        (
            "background",
            "Background: what the numbers and pictures mean",
            "".join(
                f"<h3>{html.escape(heading)}</h3>" + "".join(_paragraph(p) for p in paragraphs)
                for heading, paragraphs in texts.EXPLANATIONS
            ),
        ),
        (
            "history",
            "Per-epoch history",
            _history_table(history, metrics.get("best_epoch"), metric_meanings(model_type)),
        ),
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


def _metrics_table(metrics: dict[str, float], meanings: dict[str, str]) -> str:
    rows = [[f"<code>{html.escape(k)}</code>", _number(v), _inline(meanings.get(k, ""))] for k, v in metrics.items()]
    return _table(["metric", "value", "meaning"], rows, numeric={1})


def _figures(captions: dict[str, str], figures: dict[str, bytes]) -> str:
    """Each image, embedded as a data: URI (the artifact viewer's iframe cannot follow
    relative links), known figures first in the order of the kind's captions."""
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


def _history_table(history: list[dict], best_epoch, meanings: dict[str, str]) -> str:
    if not history:
        return '<p class="note">No epochs recorded.</p>'
    names = list(dict.fromkeys(k for epoch in history for k in epoch))
    rows = [[str(i + 1)] + [_number(epoch[k]) if k in epoch else "" for k in names] for i, epoch in enumerate(history)]
    best = ["best" if best_epoch is not None and i == int(best_epoch) else "" for i in range(len(history))]
    legend = "".join(f"<li><code>{html.escape(k)}</code>: {_inline(meanings.get(k, ''))}</li>" for k in names)
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

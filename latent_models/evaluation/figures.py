"""Matplotlib figures for the MLflow UI. Each returns a Figure; tracking logs and closes it."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from torchvision.utils import make_grid  # noqa: E402

# Where each figure is logged (artifact paths): the pipelines write them, the report captions them.
LOSS_CURVES = "figures/loss_curves.png"
DENOISING = {"val": "figures/denoising_val.png", "test": "figures/denoising_test.png"}
PSNR_VERSUS_LEVEL = "figures/psnr_vs_noise_level.png"
ITERATIVE_RECONSTRUCTION = "figures/iterative_reconstruction.png"
RECONSTRUCTIONS = "figures/reconstructions.png"
SAMPLES = "figures/samples.png"
SAMPLES_FITTED_PRIOR = "figures/samples_fitted_prior.png"
INTERPOLATION = "figures/interpolation.png"
LATENT_MAP = "figures/latent_map.png"
DENOISER_VS_BASELINES = "figures/denoiser_vs_baselines.png"
SAMPLERS = "figures/samplers.png"
OOD_SCORES = "figures/ood_scores.png"


def _show(ax, image: torch.Tensor) -> None:
    """A (1, H, W), (H, W) or (3, H, W) image in [0, 1]: grey or colour."""
    image = image.detach().cpu().float()
    if image.dim() == 3 and image.shape[0] == 3:
        ax.imshow(image.permute(1, 2, 0).clamp(0, 1).numpy())
    else:
        ax.imshow(image.squeeze().numpy(), cmap="gray", vmin=0.0, vmax=1.0)
    ax.set_xticks([])
    ax.set_yticks([])


def _label(ax, xlabel: str, ylabel: str = "", title: str = "", legend: bool = False, **legend_options) -> None:
    """Axis labels, a title, a light grid and, if asked, the legend: how every line plot here ends."""
    ax.set_xlabel(xlabel)
    if ylabel:
        ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    if legend:
        ax.legend(**legend_options)


def _finished(fig: Figure, title: str = "") -> Figure:
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def loss_curves(history: list[dict], panels: dict[str, list[str]], title: str) -> Figure:
    """One panel per entry of `panels`: {panel title: [metric names]} against epoch."""
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.6), squeeze=False)
    epochs = list(range(1, len(history) + 1))
    for ax, (panel, names) in zip(axes[0], panels.items()):
        for name in names:
            ax.plot(epochs, [h[name] for h in history], marker="o", label=name)
        _label(ax, "epoch", title=panel, legend=True)
    return _finished(fig, title)


def image_rows(rows: dict[str, torch.Tensor], title: str, captions: list[str] | None = None) -> Figure:
    """A grid with one labelled row per entry, e.g. noisy / clean / denoised."""
    n_cols = max(r.shape[0] for r in rows.values())
    fig, axes = plt.subplots(len(rows), n_cols, figsize=(1.1 * n_cols + 1.2, 1.2 * len(rows) + 0.6), squeeze=False)
    for r, (label, images) in enumerate(rows.items()):
        for c in range(n_cols):
            ax = axes[r][c]
            if c < images.shape[0]:
                _show(ax, images[c])
            else:
                ax.axis("off")
        axes[r][0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=10)
    if captions:
        for c, caption in enumerate(captions):
            axes[0][c].set_title(caption, fontsize=8)
    return _finished(fig, title)


def _show_mosaic(ax, images: torch.Tensor, n_cols: int) -> None:
    """All images in one axes, white-separated: a subplot per image took 1.7 s for 100 images."""
    grid = make_grid(images.detach().cpu().float(), nrow=n_cols, padding=2, pad_value=1.0)
    _show(ax, grid if images.shape[1] == 3 else grid[0])


def image_grid(images: torch.Tensor, title: str, n_cols: int = 10) -> Figure:
    n_rows = (images.shape[0] + n_cols - 1) // n_cols
    fig, ax = plt.subplots(figsize=(n_cols * 0.9, n_rows * 0.9 + 0.5))
    _show_mosaic(ax, images, n_cols)
    ax.set_title(title)
    return _finished(fig)


def psnr_versus_level(sweep: dict[str, list[float]], noise: str, trained_level: float) -> Figure:
    fig, ax = plt.subplots(figsize=(5.5, 4))
    ax.plot(sweep["level"], sweep["denoised"], marker="o", label="denoised (model)")
    ax.plot(sweep["level"], sweep["noisy"], marker="s", linestyle="--", label="noisy input")
    ax.axvline(trained_level, color="gray", linestyle=":", label=f"trained at {trained_level:g}")
    _label(ax, f"{noise} noise level", "test PSNR (dB)", "PSNR versus noise level", legend=True)
    return _finished(fig)


def iterative_reconstruction(steps: list[torch.Tensor], psnrs: list[float], n_images: int = 6) -> Figure:
    """Rows: images; columns: input, then each pass of feeding the output back in."""
    n_cols, n_images = len(steps), min(n_images, len(steps[0]))
    fig, axes = plt.subplots(
        n_images + 1,
        n_cols,
        figsize=(1.2 * n_cols + 0.8, 1.2 * n_images + 2.2),
        gridspec_kw={"height_ratios": [1.0] * n_images + [2.0]},
    )
    for c, step in enumerate(steps):
        for r in range(n_images):
            _show(axes[r][c], step[r])
        axes[0][c].set_title("noisy" if c == 0 else f"pass {c}", fontsize=9)
    gs = axes[-1][0].get_gridspec()
    for ax in axes[-1]:
        ax.remove()
    ax = fig.add_subplot(gs[-1, :])
    ax.plot(range(n_cols), psnrs, marker="o")
    _label(ax, "passes through the denoiser", "PSNR (dB)")
    return _finished(fig, "Iterative reconstruction: feeding the output back in")


def latent_map(points: torch.Tensor, labels: torch.Tensor, axis_names: tuple[str, str], title: str) -> Figure:
    """Points coloured by class: ten colours for up to ten classes (MNIST's digits), twenty
    for up to twenty, else a colour scale."""
    classes = max(10, int(labels.max()) + 1 if labels.numel() else 0)
    cmap = "tab10" if classes <= 10 else "tab20" if classes <= 20 else "viridis"
    fig, ax = plt.subplots(figsize=(6, 5))
    sc = ax.scatter(
        points[:, 0].numpy(),
        points[:, 1].numpy(),
        c=labels.numpy(),
        cmap=cmap,
        s=4,
        alpha=0.7,
        vmin=-0.5,
        vmax=classes - 0.5,
    )
    cbar = fig.colorbar(sc, ax=ax, ticks=range(classes) if classes <= 20 else None)
    cbar.set_label("class")
    ax.set_xlabel(axis_names[0])
    ax.set_ylabel(axis_names[1])
    ax.set_title(title)
    return _finished(fig)


METHOD_STYLES = {
    "model": dict(marker="o", linewidth=2.5),
    "noisy_input": dict(marker="s", linestyle="--", color="gray"),
}


def method_comparison(rows: list[dict], trained: tuple[str, float] | None) -> Figure:
    """PSNR versus noise level, one panel per noise model, one line per method."""
    noises = list(dict.fromkeys(r["noise"] for r in rows))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    fig, axes = plt.subplots(1, len(noises), figsize=(4.4 * len(noises), 3.9), squeeze=False)
    for ax, noise in zip(axes[0], noises):
        for method in methods:
            points = sorted((r["level"], r["psnr"]) for r in rows if r["noise"] == noise and r["method"] == method)
            ax.plot(*zip(*points), label=method, **METHOD_STYLES.get(method, dict(marker=".")))
        if trained and trained[0] == noise:
            ax.axvline(trained[1], color="black", linestyle=":", label=f"trained at {trained[1]:g}")
        _label(ax, "noise level", "test PSNR (dB)", noise)
    axes[0][0].legend(fontsize=8)
    return _finished(fig, "Denoiser versus classical baselines")


def sampler_comparison(
    samples: dict[str, torch.Tensor], class_counts: dict[str, torch.Tensor] | None, scores: dict[str, str]
) -> Figure:
    """Per sampler: a grid of samples and the histogram of the classes a classifier sees
    (`class_counts` None, where there is no classifier: the grids alone)."""
    fig = plt.figure(figsize=(5.2 * len(samples), 8.2 if class_counts else 5.8))
    grid = fig.add_gridspec(2 if class_counts else 1, len(samples), height_ratios=[2.2, 1.0] if class_counts else None)
    for col, (name, images) in enumerate(samples.items()):
        ax = fig.add_subplot(grid[0, col])
        _show_mosaic(ax, images[:64], n_cols=8)
        ax.set_title(f"{name}: {scores[name]}" if scores.get(name) else name, fontsize=10)
        if not class_counts:
            continue
        ax = fig.add_subplot(grid[1, col])
        counts = class_counts[name].double()
        ax.bar(range(len(counts)), (counts / counts.sum()).numpy())
        ax.axhline(1 / len(counts), color="gray", linestyle=":", label="uniform")
        ax.set_xticks(range(len(counts)))
        _label(ax, "predicted class", "fraction of samples", legend=True, fontsize=8)
    return _finished(fig, "VAE samples: N(0, I) versus the prior fitted to the training latents")


def metric_versus_param(rows: list[dict], param: str, metric: str, others: list[str]) -> Figure:
    """A sweep's metric against one swept param; one line per combination of the others."""
    fig, ax = plt.subplots(figsize=(6, 4.2))
    groups: dict[str, list[tuple]] = {}
    for r in rows:
        if r.get(metric) is None:
            continue
        label = ", ".join(f"{o}={r[o]}" for o in others) or metric
        groups.setdefault(label, []).append((r[param], r[metric]))
    numeric = all(isinstance(r[param], (int, float)) for r in rows)
    for label, points in groups.items():
        points = sorted(points) if numeric else points
        xs, ys = zip(*points)
        ax.plot([str(x) for x in xs] if not numeric else xs, ys, marker="o", label=label)
    _label(ax, param, metric, f"{metric} versus {param}", legend=len(groups) > 1 or bool(others), fontsize=8)
    fig.tight_layout()
    return fig


def score_histograms(panels: dict[str, dict[str, np.ndarray]], title: str) -> Figure:
    """One panel per score ({panel title: {group: scores}}): the groups' histograms overlaid on
    common bins, so how far they overlap shows how well the score tells them apart."""
    fig, axes = plt.subplots(1, len(panels), figsize=(5.0 * len(panels), 3.6), squeeze=False)
    for ax, (name, groups) in zip(axes[0], panels.items()):
        values = np.concatenate([np.asarray(v, dtype=np.float64) for v in groups.values()])
        bins = np.linspace(values.min(), values.max(), 41) if values.max() > values.min() else 10
        for group, scores in groups.items():
            ax.hist(np.asarray(scores, dtype=np.float64), bins=bins, alpha=0.55, label=group)
        _label(ax, name, "images", legend=True, fontsize=8)
    return _finished(fig, title)

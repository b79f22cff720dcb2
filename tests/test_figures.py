"""The image figures show what the tensors hold: colour (C=3) as RGB, grey (C=1) as grey, at
any size."""

import numpy as np
import pytest
import torch

from latent_models.evaluation import figures


def _pixels(fig) -> np.ndarray:
    """The rendered figure as (H, W, 3) uint8."""
    import matplotlib.pyplot as plt

    fig.canvas.draw()
    rgb = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return rgb


def _reds(n: int, height: int = 32, width: int = 40) -> torch.Tensor:
    """Pure red images (3, H, W), the right half pure blue."""
    images = torch.zeros(n, 3, height, width)
    images[:, 0, :, : width // 2] = 1.0
    images[:, 2, :, width // 2 :] = 1.0
    return images


def _has(rgb: np.ndarray, colour: tuple[int, int, int], tolerance: int = 10) -> bool:
    return bool((np.abs(rgb.astype(int) - colour).max(axis=-1) <= tolerance).any())


COLOUR_FIGURES = {
    "image_rows": lambda x: figures.image_rows({"noisy": x, "clean": x, "denoised": x}, "rows", ["a"] * len(x)),
    "image_grid": lambda x: figures.image_grid(x, "grid", n_cols=3),
    "iterative_reconstruction": lambda x: figures.iterative_reconstruction([x, x, x], [10.0, 11.0, 11.5]),
    "sampler_comparison": lambda x: figures.sampler_comparison(
        {"normal": x, "fitted": x}, {"normal": torch.ones(10), "fitted": torch.ones(10)}, {"normal": "", "fitted": ""}
    ),
    "sampler_comparison without a classifier": lambda x: figures.sampler_comparison(
        {"normal": x, "fitted": x}, None, {"normal": "", "fitted": ""}
    ),
}


@pytest.mark.parametrize("name", COLOUR_FIGURES)
def test_colour_images_are_drawn_in_colour_and_grey_in_grey(name):
    colour = _pixels(COLOUR_FIGURES[name](_reds(4)))
    assert _has(colour, (255, 0, 0)) and _has(colour, (0, 0, 255)), name
    grey_images = torch.rand(4, 1, 20, 36, generator=torch.Generator().manual_seed(0))  # any size
    grey = _pixels(COLOUR_FIGURES[name](grey_images)).astype(int)
    if name not in ("sampler_comparison", "iterative_reconstruction"):  # a coloured histogram, a PSNR curve
        assert (grey.max(axis=-1) - grey.min(axis=-1)).max() <= 2, name  # nothing but greys


def test_latent_map_colours_any_number_of_classes():
    points = torch.randn(300, 2, generator=torch.Generator().manual_seed(0))
    for classes in (1, 10, 15, 40):
        labels = torch.arange(300) % classes
        rgb = _pixels(figures.latent_map(points, labels, ("PC 1", "PC 2"), f"{classes} classes"))
        assert rgb.shape[-1] == 3

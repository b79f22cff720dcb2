"""A U-Net denoiser over images of any size: reflection padding to a multiple of its total
stride, overlapping tiles for large images, and the 8-fold self-ensemble. Pure PyTorch.

The U-Net is fully convolutional, so it takes any height and width that its two 2x poolings
divide: an image is reflection-padded at the bottom and right to a multiple of 4 and the
output cropped back. An image larger than a tile is cut into tiles that overlap by the
network's receptive field (`model.receptive_field`, read from its layers), each run on its
own, and only each tile's core kept: every kept pixel saw the same inputs as in one
whole-image pass, so tiled and whole outputs agree up to float rounding
(tests/test_photo_serving.py measures it), while peak memory is one tile's, whatever the photo.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch.nn import functional as F

from latent_models.kinds.denoiser.model import UNetDenoiser, receptive_field

# The side of one tile, the most one forward pass holds: a 512x512 pass of the default width-16
# U-Net raised peak RSS by 189 MiB (grey, on the CPU; docs/serving.md), and the activations grow
# with the width, so a wider network stays within a few times that for a photo of any size.
TILE = 512
# The smallest side taken: two 2x poolings leave 2x2 pixels at the lowest level, and reflection
# padding (up to 3 pixels) needs a side longer than the padding.
MIN_SIDE = 8
# The 8 flips and quarter turns of the self-ensemble: (mirror left-right, quarter turns).
TRANSFORMS = tuple((flip, turns) for flip in (False, True) for turns in range(4))
ENSEMBLES = (1, len(TRANSFORMS))

# The network over a batch and each image's noise level (None: a one-level model).
Denoise = Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]


@dataclass(frozen=True)
class Tiling:
    """How one network takes images of any size."""

    multiple: int  # its total stride: images are padded to a multiple of it
    margin: int  # the overlap on each side of a tile's core: covers the receptive field
    tile: int = TILE  # the side of a tile, margins included

    @property
    def core(self) -> int:
        return self.tile - 2 * self.margin


def tiling(model: UNetDenoiser, tile: int = TILE) -> Tiling:
    """The padding multiple and the tile margin of `model`: a margin of the whole receptive
    field (the field need not be centred on its pixel: pooling shifts it by up to a stride),
    rounded up to the stride so that every tile lies on the poolings' grid."""
    field, stride = receptive_field(model)
    margin = math.ceil((field - 1) / stride) * stride
    tile -= tile % stride
    if tile - 2 * margin < stride:
        raise ValueError(f"tile {tile} leaves no core inside margins of {margin} pixels")
    return Tiling(stride, margin, tile)


def pad(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """(N, C, H, W) reflection-padded at the bottom and right to multiples of `multiple`."""
    h, w = x.shape[-2:]
    if h % multiple == 0 and w % multiple == 0:
        return x
    return F.pad(x, (0, (-w) % multiple, 0, (-h) % multiple), mode="reflect")


def denoise(
    run: Denoise, x: torch.Tensor, layout: Tiling, device: torch.device, sigma: torch.Tensor | None = None
) -> torch.Tensor:
    """`run` (the network) over (N, C, H, W) images on the CPU -> (N, C, H, W) on the CPU;
    `sigma`: each image's noise level, for a noise-map model. Images whose padded size fits in
    a tile run whole, several per pass up to a tile's pixels; larger ones tile by tile."""
    n, _, h, w = x.shape
    hp, wp = h + (-h) % layout.multiple, w + (-w) % layout.multiple
    out = torch.empty(x.shape, dtype=torch.float32)
    if hp <= layout.tile and wp <= layout.tile:
        per_pass = max(1, layout.tile * layout.tile // (hp * wp))
        for start in range(0, n, per_pass):
            batch = pad(x[start : start + per_pass], layout.multiple).to(device)
            out[start : start + per_pass] = run(batch, _rows(sigma, start, per_pass, device))[..., :h, :w].cpu()
        return out
    for i in range(n):
        told = _rows(sigma, i, 1, device)
        out[i] = tiled(run, pad(x[i : i + 1], layout.multiple), layout, device, told)[0, :, :h, :w]
    return out


def _rows(sigma: torch.Tensor | None, start: int, count: int, device: torch.device) -> torch.Tensor | None:
    return None if sigma is None else sigma[start : start + count].to(device)


def tiled(
    run: Denoise, x: torch.Tensor, layout: Tiling, device: torch.device, sigma: torch.Tensor | None = None
) -> torch.Tensor:
    """`run` over one padded image (1, C, H, W) in overlapping tiles; each tile's core is kept.
    A tile at the image's edge ends there, as the whole image does."""
    _, _, h, w = x.shape
    out = torch.empty(x.shape, dtype=torch.float32)
    core, margin = layout.core, layout.margin
    for top in range(0, h, core):
        for left in range(0, w, core):
            bottom, right = min(top + core, h), min(left + core, w)
            y0, x0 = max(0, top - margin), max(0, left - margin)
            y1, x1 = min(h, bottom + margin), min(w, right + margin)
            y = run(x[..., y0:y1, x0:x1].to(device), sigma)
            out[..., top:bottom, left:right] = y[..., top - y0 : bottom - y0, left - x0 : right - x0].cpu()
    return out


def self_ensemble(run: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """The mean of `run` over the 8 flips and quarter turns of (N, C, H, W) images, each output
    turned back: 8 forward passes."""
    total = None
    for flip, turns in TRANSFORMS:
        seen = torch.rot90(x.flip(-1) if flip else x, turns, (-2, -1))
        y = torch.rot90(run(seen), -turns, (-2, -1))
        y = y.flip(-1) if flip else y
        total = y.clone() if total is None else total.add_(y)
    return total.div_(len(TRANSFORMS))

"""What every kind's scores share: a model over a whole split in batches under inference_mode,
the fixed seeds of the evaluation draws, and an output's image quality (each kind's own scores:
its folder's `scores.py`).

Batches move to the model's device and results come back to the CPU, where the metrics and
figures are computed; seeded draws are made on the CPU and moved, so they match on any device."""

from __future__ import annotations

import torch
from torch import nn

from latent_models.device import module_device
from latent_models.evaluation.metrics import mse, psnr, ssim

EVAL_BATCH = 500
# Seeds of the fixed evaluation draws (validation and test noise or binarization, figures,
# samples): they depend only on these and the config, so runs and `evaluate` compare.
VAL_SEED, TEST_SEED, FIGURE_SEED, SAMPLE_SEED = 1_000_001, 2_000_002, 3_000_003, 4_000_004


def _device_of(fn) -> torch.device | None:
    """The device of a module, or of the module a bound method belongs to; else None."""
    owner = getattr(fn, "__self__", fn)
    return module_device(owner) if isinstance(owner, nn.Module) else None


@torch.inference_mode()
def batched(
    fn, *tensors: torch.Tensor, batch_size: int = EVAL_BATCH, device: torch.device | None = None
) -> torch.Tensor:
    """Apply fn to aligned slices of tensors and concatenate the results, on the CPU. The
    slices move to `device` (default: fn's module's device, if fn is a module or its method)."""
    device = device or _device_of(fn)
    n = tensors[0].shape[0]
    return torch.cat(
        [
            fn(*(t[i : i + batch_size].to(device) if device else t[i : i + batch_size] for t in tensors)).cpu()
            for i in range(0, n, batch_size)
        ]
    )


def image_quality(output: torch.Tensor, clean: torch.Tensor) -> dict[str, float]:
    return {
        "psnr": psnr(output, clean).mean().item(),
        "ssim": ssim(output, clean).mean().item(),
        "mse": mse(output, clean).mean().item(),
    }

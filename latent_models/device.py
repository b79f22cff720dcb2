"""Which hardware runs training, evaluation and serving, and in which precision.

One place turns the `device` and `precision` params into a torch.device and a precision,
or into one line (DeviceError) that names what was asked, what this machine has and what
to pass instead. Availability is read from torch each time (torch.cuda.is_available,
device_count, get_device_capability; torch.backends.mps.is_available), so tests can patch it.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
from typing import get_args

import torch

from latent_models.choices import DEVICE_CHOICES, Precision
from latent_models.errors import DeviceError

PRECISIONS: tuple[Precision, ...] = get_args(Precision)
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
ENV_VAR = "LATENT_MODELS_DEVICE"  # the serving device (default auto)


def cuda_count() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def gpu_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return "Apple-silicon GPU (MPS)" if device.type == "mps" else "cpu"


def machine() -> str:
    """What this machine offers, for error lines: 'cuda:0 (NVIDIA H200), cpu'."""
    have = [f"cuda:{i} ({gpu_name(torch.device('cuda', i))})" for i in range(cuda_count())]
    if mps_available():
        have.append("mps")
    have.append("cpu")
    return "this machine has " + (", ".join(have) if len(have) > 1 else "only the cpu (no CUDA GPU, no MPS)")


def _local_rank() -> int | None:
    """This process's GPU index under torchrun with several processes, else None."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and "LOCAL_RANK" in os.environ:
        return int(os.environ["LOCAL_RANK"])
    return None


def resolve_device(spec: str = "auto") -> torch.device:
    """auto: CUDA if available, else MPS, else CPU. Under torchrun with several processes a
    CUDA device is this process's GPU, cuda:LOCAL_RANK."""
    spec = (spec or "auto").strip().lower()
    match = re.fullmatch(r"(auto|cpu|mps|cuda)(?::(\d+))?", spec)
    if not match or (match.group(2) is not None and match.group(1) != "cuda"):
        raise DeviceError(f"device must be one of {DEVICE_CHOICES}; got {spec!r}")
    kind, index = match.group(1), match.group(2)
    if kind == "auto":
        kind = "cuda" if cuda_count() else "mps" if mps_available() else "cpu"
    if kind == "cpu":
        return torch.device("cpu")
    if kind == "mps":
        if not mps_available():
            raise DeviceError(
                f"device={spec}: MPS (Apple-silicon GPU) is not available; {machine()}; pass device=auto or cpu"
            )
        return torch.device("mps")
    count = cuda_count()
    if count == 0:
        raise DeviceError(
            f"device={spec}: CUDA is not available (torch {torch.__version__}, CUDA "
            f"{torch.version.cuda or 'none'}); {machine()}; pass device=auto or cpu"
        )
    if index is not None and int(index) >= count:
        raise DeviceError(
            f"device={spec}: there is no GPU {index}; {machine()}; "
            f"pass device=cuda:0{f'..cuda:{count - 1}' if count > 1 else ''}, cuda or auto"
        )
    rank = _local_rank()
    if rank is not None:
        if index is not None:
            raise DeviceError(
                f"device={spec} names one GPU, but this is one of several processes (one per GPU); "
                "pass device=cuda or auto"
            )
        if rank >= count:
            raise DeviceError(
                f"process {rank} has no GPU of its own; {machine()}; pass nproc_per_node={count} or device=cpu"
            )
        return torch.device("cuda", rank)
    return torch.device("cuda", int(index or 0))


def bf16_supported(device: torch.device) -> bool:
    if device.type == "cpu":
        return True
    if device.type != "cuda":
        return False
    if torch.version.hip:
        return bool(torch.cuda.is_bf16_supported())
    # Native bf16 (tensor cores) from Ampere, sm 8.0; torch >= 2.5's is_bf16_supported() also counts emulation.
    return torch.cuda.get_device_capability(device)[0] >= 8


def resolve_precision(spec: str, device: torch.device) -> str:
    """auto: bf16 on a CUDA GPU that supports it, else fp32 (bf16 autocast made this
    project's CPU U-Net step slower, 230 vs 363 images/s)."""
    spec = (spec or "auto").strip().lower()
    if spec not in PRECISIONS:
        raise DeviceError(f"precision must be one of {', '.join(PRECISIONS)}; got {spec!r}")
    if spec == "auto":
        return "bf16" if device.type == "cuda" and bf16_supported(device) else "fp32"
    if spec == "fp32":
        return spec
    if device.type == "cpu" and spec == "fp16":
        raise DeviceError(
            f"precision=fp16 on device cpu: fp16 autocast with gradient scaling needs a CUDA GPU; "
            f"{machine()}; pass precision=bf16 or fp32 (or auto)"
        )
    if device.type == "mps":
        raise DeviceError(
            f"precision={spec} on device mps: mixed precision is not supported on MPS here; "
            f"{machine()}; pass precision=fp32 (or auto)"
        )
    if spec == "bf16" and not bf16_supported(device):
        raise DeviceError(
            f"precision=bf16 on {device} ({gpu_name(device)}): this GPU has no bfloat16 support; "
            f"{machine()}; pass precision=fp16 or fp32 (or auto)"
        )
    return spec


def check(device: str, precision: str = "auto", nproc_per_node: int = 1) -> tuple[torch.device, str]:
    """Validate before anything starts: (device, precision) or a DeviceError."""
    if nproc_per_node > 1 and _local_rank() is None:  # the launcher: each worker will take one GPU
        resolved = resolve_device(device)
        if resolved.type == "cuda":
            if device.strip().lower() not in ("auto", "cuda"):
                raise DeviceError(
                    f"device={device} names one GPU, but nproc_per_node={nproc_per_node} starts one "
                    "process per GPU; pass device=cuda or auto"
                )
            if nproc_per_node > cuda_count():
                raise DeviceError(
                    f"nproc_per_node={nproc_per_node} with device={device}: one process per GPU, and "
                    f"{machine()}; pass nproc_per_node={cuda_count()} or device=cpu"
                )
        elif resolved.type == "mps":
            raise DeviceError(
                f"nproc_per_node={nproc_per_node} on device mps: several processes need CUDA GPUs or "
                f"the cpu; {machine()}; pass device=cpu or nproc_per_node=1"
            )
    else:
        resolved = resolve_device(device)
    return resolved, resolve_precision(precision, resolved)


def autocast(device: torch.device, precision: str):
    """Mixed precision around a forward pass; nothing at fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=_DTYPES[precision])


def grad_scaler(device: torch.device, precision: str):
    """A GradScaler for fp16 (its small range underflows gradients), else None."""
    return torch.amp.GradScaler(device.type) if precision == "fp16" else None


def module_device(module: torch.nn.Module) -> torch.device:
    """Where a module's parameters (else buffers) are; the CPU for a module with neither."""
    for tensor in itertools.chain(module.parameters(), module.buffers()):
        return tensor.device
    return torch.device("cpu")


def device_tags(device: torch.device, precision: str | None = None) -> dict[str, str]:
    """Run tags: where it ran (what `auto` became), in which precision, with which torch / CUDA."""
    tags = {
        "device_resolved": str(device),
        "device_name": gpu_name(device),
        "torch_version": torch.__version__,
        "cuda_version": torch.version.cuda or "none",
    }
    return {**tags, "precision_resolved": precision} if precision else tags


def serving_device() -> torch.device:
    """The device of the served models: $LATENT_MODELS_DEVICE, default auto."""
    return resolve_device(os.environ.get(ENV_VAR, "auto"))

"""Several training processes with torch.distributed: the entry point relaunches itself
under torchrun (`torch.distributed.run`) when `nproc_per_node` > 1, and each worker joins
the process group torchrun describes in its environment (RANK, WORLD_SIZE, MASTER_ADDR...).

Started by torchrun directly (e.g. on several hosts with its rendezvous flags), the entry
point sees WORLD_SIZE and does not relaunch. The training loop (training.fit) does the rest
with DDP; only rank 0 talks to MLflow. On CUDA each process takes its own GPU,
cuda:LOCAL_RANK (latent_models.device), and the group uses nccl; on the CPU, gloo.
"""

from __future__ import annotations

import os
import subprocess
import sys

import torch
from torch import distributed as dist


def under_torchrun() -> bool:
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def launch(nproc_per_node: int, argv: list[str] | None = None) -> int:
    """Run this command again as `nproc_per_node` torchrun workers on this machine; their exit code."""
    argv = list(sys.argv if argv is None else argv)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc_per_node}", *argv]
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc_per_node)))
    return subprocess.run(cmd, env=env).returncode


def setup(device: torch.device | None = None) -> int:
    """Join torchrun's process group (gloo on CPU, nccl on GPU) if there is one; this rank.
    `device`: this process's device; a CUDA one becomes the current GPU first (nccl needs it)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0
    if device is not None and device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        # CPU tensors over gloo; CUDA tensors (where there is a GPU) over nccl.
        dist.init_process_group(backend="cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank()


def teardown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()

"""The training loop shared by both models: seeded, AdamW with a per-step schedule,
in-memory minibatches by indexing, best-on-validation weights kept as a real copy.

Knows nothing of MLflow: each finished epoch is reported to an `on_epoch` callback, and
saved (atomically) to `checkpoint_path` with everything needed to continue bit for bit:
the model's config, weights, optimizer, scheduler, RNG states, epoch and best-so-far.

Under torch.distributed (torchrun) the loop runs DDP: every process draws the same global
batch indices and the global batch's noise from the shared generator, computes the loss on
its own slice of rows, and DDP averages the gradients, so each step equals the
single-process step on the whole batch.

On a GPU the images move to the device once and batches are indexed there; the generator
lives on the device too (`seed_everything(seed, device)`), so noise is drawn there. bf16/fp16
autocast wraps the loss step's forward only; fp16 adds gradient scaling. On the CPU at fp32
without compile the ops and the random stream are exactly those of the CPU-only loop.
"""

from __future__ import annotations

import dataclasses
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Literal

import torch
from torch import distributed as dist
from torch import nn
from tqdm.auto import tqdm

from latent_models.choices import Schedule  # the learning-rate schedules `make_optimizer` knows, stepped per batch
from latent_models.device import autocast, grad_scaler, module_device

# loss_fn(model, batch, generator, progress, rows) -> (loss, floats to report); progress in
# [0, epochs). `batch` is the whole (global) batch: draw its noise from `generator` for all
# of it, then compute the loss on `batch[rows]` only (all rows in a single process).
LossFn = Callable[[nn.Module, torch.Tensor, torch.Generator, float, slice], tuple[torch.Tensor, dict]]
# evaluate_fn(model) -> metrics of the validation set
EvaluateFn = Callable[[nn.Module], dict]
# on_epoch(epoch, metrics): each finished epoch's metrics (0-based epoch)
EpochHook = Callable[[int, dict], None]


@dataclass(frozen=True)
class Objective:
    """What a model trains on, and how its epochs are compared (`monitor` on validation)."""

    loss_fn: LossFn
    evaluate_fn: EvaluateFn
    monitor: str
    mode: Literal["min", "max"]


@dataclass(frozen=True)
class Settings:
    """How to train: the optimizer, its schedule, and the numeric precision of each step."""

    epochs: int
    batch_size: int
    lr: float
    weight_decay: float = 0.0
    adam_beta2: float = 0.999
    max_grad_norm: float = 0.0  # > 0: the gradients' global norm is clipped to it before each step
    schedule: Schedule = "onecycle"
    precision: str = "fp32"  # as device.check resolves it: fp32, bf16 or fp16
    compile: bool = False

    @classmethod
    def of(cls, cfg, precision: str) -> "Settings":
        """From an entry point's config (its TrainOptions and `compile`), at a resolved precision."""
        names = {f.name for f in dataclasses.fields(cls)} - {"precision"}
        return cls(precision=precision, **{name: getattr(cfg, name) for name in names})


def seed_everything(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """Seed torch and Python; return the generator that drives batches and noise (on
    `device`, where the batches and noise are drawn; a CUDA stream differs from the CPU's)."""
    random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator(device=device).manual_seed(seed)


def make_optimizer(
    model: nn.Module, lr: float, weight_decay: float, schedule: str, total_steps: int, adam_beta2: float = 0.999
):
    # fused: one kernel for all parameters, 0.6 ms per VAE step here instead of foreach's 4.6 ms.
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=lr, betas=(0.9, adam_beta2), weight_decay=weight_decay, fused=True
    )
    if schedule == "onecycle":
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=total_steps)
    elif schedule == "cosine":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    else:
        raise ValueError(f"unknown schedule {schedule!r}")
    return optimizer, scheduler


def minibatch_indices(n: int, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Shuffled index batches; the last partial batch is dropped so every step is full size."""
    perm = torch.randperm(n, generator=generator, device=generator.device)
    for start in range(0, n - batch_size + 1, batch_size):
        yield perm[start : start + batch_size]


def images_per_second(epochs: int, n_images: int, batch_size: int, seconds: float) -> float:
    """Training throughput: full batches only, as `fit` drops the last partial one."""
    batch = min(batch_size, n_images)
    return epochs * (n_images // batch) * batch / seconds


def state_copy(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy: `model.state_dict()` alone returns live references that keep changing."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _clip_gradients(model: nn.Module, optimizer, scaler, max_norm: float) -> None:
    """One bad batch can throw a long high-lr run off for good (a residual U-Net on photos at
    lr 0.005 jumped to a loss of 3e3 at epoch 63 of 144 and never came back): clip the global
    gradient norm when `max_norm` > 0 (the true gradients: unscaled first under fp16); 0 leaves
    the step untouched."""
    if max_norm > 0:
        if scaler is not None:
            scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)


def world() -> tuple[int, int]:
    """(rank, world size) of this process; (0, 1) outside torch.distributed."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class _LossStep(nn.Module):
    """The model and its loss as one module, so DDP's forward sees every parameter use."""

    def __init__(self, model: nn.Module, loss_fn: LossFn):
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn

    def forward(self, batch, generator, progress, rows):
        return self.loss_fn(self.model, batch, generator, progress, rows)


def save_checkpoint(state: dict, path: str | Path) -> Path:
    """torch.save to a temporary file in the same folder, then rename: never half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def _model_args(model: nn.Module) -> dict | None:
    """The model's own config (models/config.py), so a checkpoint says what it holds (nanoGPT's model_args)."""
    config = getattr(model, "config", None)
    return config.to_dict() if config is not None else None


def load_checkpoint(path: str | Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


@dataclass
class FitResult:
    best_epoch: int
    best_value: float
    history: list[dict] = field(default_factory=list)
    best_state: dict = field(default_factory=dict)

    def selected_validation_metrics(self) -> dict[str, float]:
        """The `val_*` metrics of the selected (best-on-validation) epoch."""
        return {k: v for k, v in self.history[self.best_epoch].items() if k.startswith("val_")}


def epoch_batches(
    train, epoch: int, batch_size: int, generator: torch.Generator, device: torch.device
) -> Iterator[torch.Tensor]:
    """One epoch's full training batches on `device`. `train` is a tensor (batches indexed in
    memory, as always), a source of fresh images per epoch (`epoch_images(epoch)`: random
    crops), or a source of its own batches (`epoch_batches(epoch, batch_size, device)`: a
    DataLoader streaming from disk)."""
    if hasattr(train, "epoch_batches"):
        yield from train.epoch_batches(epoch, batch_size, device)
        return
    images = train.epoch_images(epoch).to(device) if hasattr(train, "epoch_images") else train
    for idx in minibatch_indices(len(images), batch_size, generator):
        yield images[idx]


def fit(
    model: nn.Module,
    images,
    objective: Objective,
    settings: Settings,
    generator: torch.Generator,
    *,
    on_epoch: Callable[[int, dict], None] = lambda epoch, metrics: None,
    checkpoint_path: str | Path | None = None,
    on_checkpoint: Callable[[Path], None] = lambda path: None,
    resume: bool = False,
) -> FitResult:
    """Train, evaluate after every epoch, and leave the best weights (by `objective.monitor`) loaded.

    After every epoch the state is saved to `checkpoint_path` (then `on_checkpoint(path)`,
    then `on_epoch`). With `resume` and an existing checkpoint, training continues after
    its epoch exactly as if it had never stopped; the restored epochs are reported to
    `on_epoch` again first, so a callback that skips what it already has can fill gaps.

    `images`: a tensor of training images, or a source of them (see `epoch_batches`).
    Image batches go channels_last: oneDNN's CPU convolutions run about twice as fast so.
    Runs on the model's device (a tensor moves there once); `precision` is fp32, bf16 or fp16
    (see latent_models.device); `compile` wraps the loss step in torch.compile.
    """
    loss_fn, evaluate_fn, monitor = objective.loss_fn, objective.evaluate_fn, objective.monitor
    epochs, precision = settings.epochs, settings.precision
    device = module_device(model)
    if isinstance(images, torch.Tensor):
        images = images.to(device)
    channels_last = not isinstance(images, torch.Tensor) or images.dim() == 4
    if channels_last:
        model.to(memory_format=torch.channels_last)
    batch_size = min(settings.batch_size, len(images))
    steps_per_epoch = len(images) // batch_size
    rank, world_size = world()
    if batch_size % world_size:
        raise ValueError(f"batch_size {batch_size} is not divisible by the {world_size} processes")
    local = batch_size // world_size
    rows = slice(rank * local, (rank + 1) * local)
    optimizer, scheduler = make_optimizer(
        model, settings.lr, settings.weight_decay, settings.schedule, epochs * steps_per_epoch, settings.adam_beta2
    )
    sign = 1.0 if objective.mode == "max" else -1.0
    result = FitResult(best_epoch=-1, best_value=float("nan"))
    best_score = -float("inf")
    start = 0
    if resume and checkpoint_path and Path(checkpoint_path).is_file():
        saved = load_checkpoint(checkpoint_path)
        if saved.get("model_config") and saved["model_config"] != _model_args(model):
            raise ValueError(
                f"checkpoint {checkpoint_path} holds a different model ({saved['model_config']}) than "
                f"the one to resume ({_model_args(model)})"
            )
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        saved_device = saved.get("device", "cpu")
        if torch.device(saved_device).type == generator.device.type:
            generator.set_state(saved["generator"])
            if saved_device != str(device):
                tqdm.write(f"note: checkpoint written on {saved_device}, resuming on {device}")
        else:  # a CPU and a CUDA generator keep different states: start a fresh, seeded stream
            generator.manual_seed(generator.initial_seed() + saved["epoch"] + 1)
            tqdm.write(
                f"note: checkpoint written on {saved_device}, resuming on {device}: weights, optimizer and "
                "schedule carry over; batches and noise come from a new seeded stream (the exact random "
                "stream cannot carry over between device types)"
            )
        torch.set_rng_state(saved["torch_rng"])
        random.setstate(saved["python_rng"])
        result = FitResult(saved["best_epoch"], saved["best_value"], saved["history"], saved["best_state"])
        best_score, start = saved["best_score"], saved["epoch"] + 1
        for epoch, metrics in enumerate(result.history):
            on_epoch(epoch, metrics)
        tqdm.write(f"resumed after epoch {start}/{epochs} from {checkpoint_path}")
    step_fn: nn.Module = _LossStep(model, loss_fn)
    if world_size > 1:
        step_fn = nn.parallel.DistributedDataParallel(
            step_fn, device_ids=[device.index] if device.type == "cuda" else None
        )
    if settings.compile:
        step_fn = torch.compile(step_fn)
    scaler = grad_scaler(device, precision)
    if scaler is not None and resume and start and saved.get("scaler"):
        scaler.load_state_dict(saved["scaler"])
    for epoch in range(start, epochs):
        model.train()
        totals: dict[str, float] = {}
        bar = tqdm(
            epoch_batches(images, epoch, batch_size, generator, device),
            total=steps_per_epoch,
            desc=f"epoch {epoch + 1}/{epochs}",
            unit="batch",
            leave=False,
            dynamic_ncols=True,
            disable=None,  # only on a terminal
        )
        for step, batch in enumerate(bar):
            if channels_last:
                batch = batch.contiguous(memory_format=torch.channels_last)
            with autocast(device, precision):
                loss, parts = step_fn(batch, generator, epoch + step / steps_per_epoch, rows)
            if not torch.isfinite(loss):  # before the step: the weights stay those of the last finite loss
                raise FloatingPointError(f"loss became {loss.item()} at epoch {epoch + 1}, step {step}; lower lr")
            optimizer.zero_grad(set_to_none=True)
            if scaler is None:
                loss.backward()
                _clip_gradients(model, optimizer, scaler, settings.max_grad_norm)
                optimizer.step()
            else:
                scaler.scale(loss).backward()
                _clip_gradients(model, optimizer, scaler, settings.max_grad_norm)
                scaler.step(optimizer)
                scaler.update()
            scheduler.step()
            parts = {"train_loss": loss.item(), **parts}
            for k, v in parts.items():
                totals[k] = totals.get(k, 0.0) + v
            if step % 20 == 0:
                bar.set_postfix(loss=f"{parts['train_loss']:.4f}")
        bar.close()
        model.eval()
        if world_size > 1:  # each process saw its rows: average the per-step means over processes
            keys = sorted(totals)
            summed = torch.tensor([totals[k] for k in keys], dtype=torch.float64)
            dist.all_reduce(summed)
            totals = dict(zip(keys, (summed / world_size).tolist()))
        metrics = {k: v / steps_per_epoch for k, v in totals.items()}
        metrics.update(evaluate_fn(model))
        metrics["lr"] = scheduler.get_last_lr()[0]
        score = sign * metrics[monitor]
        if score > best_score:
            best_score = score
            result.best_epoch, result.best_value = epoch, metrics[monitor]
            result.best_state = state_copy(model)
        result.history.append(metrics)
        if checkpoint_path and rank == 0:
            saved = save_checkpoint(
                {
                    "epoch": epoch,
                    "model": model.state_dict(),
                    "model_config": _model_args(model),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "generator": generator.get_state(),
                    "torch_rng": torch.get_rng_state(),
                    "python_rng": random.getstate(),
                    "device": str(device),
                    "scaler": scaler.state_dict() if scaler is not None else {},
                    "best_epoch": result.best_epoch,
                    "best_value": result.best_value,
                    "best_score": best_score,
                    "best_state": result.best_state,
                    "history": result.history,
                },
                checkpoint_path,
            )
            on_checkpoint(saved)
        on_epoch(epoch, metrics)
        tqdm.write(f"epoch {epoch + 1}/{epochs}: " + ", ".join(f"{k}={v:.4g}" for k, v in metrics.items()))
    model.load_state_dict(result.best_state)
    return result

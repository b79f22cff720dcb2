"""The training loop shared by both models: seeded, AdamW with a per-step schedule,
in-memory minibatches by indexing, best-on-validation weights kept as a real copy.

Knows nothing of MLflow: a `Checkpointing` says where each finished epoch is saved
(atomically, as a `CheckpointState`: everything needed to continue bit for bit) and which
callbacks hear of it; whoever calls `fit` decides what they do.

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
from latent_models.training.checkpoint import CheckpointState, model_config

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


def _ignore(*args) -> None:
    pass


@dataclass(frozen=True)
class Checkpointing:
    """Where `fit` saves each finished epoch and whom it tells: the state goes to `path` (None:
    nowhere), then `on_checkpoint(path)`, then `on_epoch(epoch, metrics)`. With `resume` and a
    checkpoint at `path`, fit continues after its epoch."""

    path: str | Path | None = None
    resume: bool = False
    on_checkpoint: Callable[[Path], None] = _ignore
    on_epoch: EpochHook = _ignore


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


class _Training:
    """One fit in progress: the model on its device, how its batches are cut, its optimizer,
    and the best epoch so far."""

    def __init__(self, model: nn.Module, images, objective: Objective, settings: Settings, generator: torch.Generator):
        self.model, self.objective, self.settings, self.generator = model, objective, settings, generator
        self.device = module_device(model)
        self.images = images.to(self.device) if isinstance(images, torch.Tensor) else images
        self.channels_last = not isinstance(self.images, torch.Tensor) or self.images.dim() == 4
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        self.batch_size = min(settings.batch_size, len(self.images))
        self.steps_per_epoch = len(self.images) // self.batch_size
        self.rank, self.world_size = world()
        if self.batch_size % self.world_size:
            raise ValueError(f"batch_size {self.batch_size} is not divisible by the {self.world_size} processes")
        local = self.batch_size // self.world_size
        self.rows = slice(self.rank * local, (self.rank + 1) * local)
        self.optimizer, self.scheduler = make_optimizer(
            model,
            settings.lr,
            settings.weight_decay,
            settings.schedule,
            settings.epochs * self.steps_per_epoch,
            settings.adam_beta2,
        )
        self.sign = 1.0 if objective.mode == "max" else -1.0
        self.result = FitResult(best_epoch=-1, best_value=float("nan"))
        self.best_score = -float("inf")
        self.step_fn: nn.Module = _LossStep(model, objective.loss_fn)
        self.scaler = None

    def restore(self, path: str | Path) -> CheckpointState:
        """Continue from the checkpoint at `path`: weights, optimizer, schedule, random streams, best so far."""
        saved = CheckpointState.load(path)
        saved.check_holds(self.model, path)
        self.model.load_state_dict(saved.model)
        self.optimizer.load_state_dict(saved.optimizer)
        self.scheduler.load_state_dict(saved.scheduler)
        if torch.device(saved.device).type == self.generator.device.type:
            self.generator.set_state(saved.generator)
            if saved.device != str(self.device):
                tqdm.write(f"note: checkpoint written on {saved.device}, resuming on {self.device}")
        else:  # a CPU and a CUDA generator keep different states: start a fresh, seeded stream
            self.generator.manual_seed(self.generator.initial_seed() + saved.epoch + 1)
            tqdm.write(
                f"note: checkpoint written on {saved.device}, resuming on {self.device}: weights, optimizer and "
                "schedule carry over; batches and noise come from a new seeded stream (the exact random "
                "stream cannot carry over between device types)"
            )
        torch.set_rng_state(saved.torch_rng)
        random.setstate(saved.python_rng)
        self.result = FitResult(saved.best_epoch, saved.best_value, saved.history, saved.best_state)
        self.best_score = saved.best_score
        return saved

    def prepare_steps(self, saved: CheckpointState | None) -> None:
        """The loss step as it runs (under DDP, compiled), and fp16's gradient scaler (restored
        from `saved`). After `restore`: DDP starts every process from rank 0's weights."""
        if self.world_size > 1:
            self.step_fn = nn.parallel.DistributedDataParallel(
                self.step_fn, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        if self.settings.compile:
            self.step_fn = torch.compile(self.step_fn)
        self.scaler = grad_scaler(self.device, self.settings.precision)
        if self.scaler is not None and saved is not None and saved.scaler:
            self.scaler.load_state_dict(saved.scaler)

    def train_epoch(self, epoch: int) -> dict[str, float]:
        """One pass over the training batches; each reported float summed over the steps."""
        self.model.train()
        epochs = self.settings.epochs
        totals: dict[str, float] = {}
        bar = tqdm(
            epoch_batches(self.images, epoch, self.batch_size, self.generator, self.device),
            total=self.steps_per_epoch,
            desc=f"epoch {epoch + 1}/{epochs}",
            unit="batch",
            leave=False,
            dynamic_ncols=True,
            disable=None,  # only on a terminal
        )
        for step, batch in enumerate(bar):
            if self.channels_last:
                batch = batch.contiguous(memory_format=torch.channels_last)
            with autocast(self.device, self.settings.precision):
                loss, parts = self.step_fn(batch, self.generator, epoch + step / self.steps_per_epoch, self.rows)
            if not torch.isfinite(loss):  # before the step: the weights stay those of the last finite loss
                raise FloatingPointError(f"loss became {loss.item()} at epoch {epoch + 1}, step {step}; lower lr")
            self._step(loss)
            parts = {"train_loss": loss.item(), **parts}
            for k, v in parts.items():
                totals[k] = totals.get(k, 0.0) + v
            if step % 20 == 0:
                bar.set_postfix(loss=f"{parts['train_loss']:.4f}")
        bar.close()
        return totals

    def _step(self, loss: torch.Tensor) -> None:
        optimizer, scaler = self.optimizer, self.scaler
        optimizer.zero_grad(set_to_none=True)
        if scaler is None:
            loss.backward()
            _clip_gradients(self.model, optimizer, scaler, self.settings.max_grad_norm)
            optimizer.step()
        else:
            scaler.scale(loss).backward()
            _clip_gradients(self.model, optimizer, scaler, self.settings.max_grad_norm)
            scaler.step(optimizer)
            scaler.update()
        self.scheduler.step()

    def epoch_metrics(self, totals: dict[str, float]) -> dict[str, float]:
        """The epoch's mean training floats, its validation metrics and the learning rate."""
        self.model.eval()
        if self.world_size > 1:  # each process saw its rows: average the per-step means over processes
            keys = sorted(totals)
            summed = torch.tensor([totals[k] for k in keys], dtype=torch.float64)
            dist.all_reduce(summed)
            totals = dict(zip(keys, (summed / self.world_size).tolist()))
        metrics = {k: v / self.steps_per_epoch for k, v in totals.items()}
        metrics.update(self.objective.evaluate_fn(self.model))
        metrics["lr"] = self.scheduler.get_last_lr()[0]
        return metrics

    def select(self, epoch: int, metrics: dict[str, float]) -> None:
        """Keep a copy of the weights when this epoch is the best on `objective.monitor` so far."""
        monitor = self.objective.monitor
        score = self.sign * metrics[monitor]
        if score > self.best_score:
            self.best_score = score
            self.result.best_epoch, self.result.best_value = epoch, metrics[monitor]
            self.result.best_state = state_copy(self.model)
        self.result.history.append(metrics)

    def state(self, epoch: int) -> CheckpointState:
        """Everything needed to continue after `epoch`."""
        return CheckpointState(
            epoch=epoch,
            model=self.model.state_dict(),
            model_config=model_config(self.model),
            optimizer=self.optimizer.state_dict(),
            scheduler=self.scheduler.state_dict(),
            generator=self.generator.get_state(),
            torch_rng=torch.get_rng_state(),
            python_rng=random.getstate(),
            device=str(self.device),
            scaler=self.scaler.state_dict() if self.scaler is not None else {},
            best_epoch=self.result.best_epoch,
            best_value=self.result.best_value,
            best_score=self.best_score,
            best_state=self.result.best_state,
            history=self.result.history,
        )


def fit(
    model: nn.Module,
    images,
    objective: Objective,
    settings: Settings,
    generator: torch.Generator,
    checkpointing: Checkpointing = Checkpointing(),
) -> FitResult:
    """Train, evaluate after every epoch, and leave the best weights (by `objective.monitor`) loaded.

    After every epoch the state is saved to `checkpointing.path` (then `on_checkpoint(path)`),
    then `on_epoch` sees its metrics. With `resume` and an existing checkpoint, training
    continues after its epoch exactly as if it had never stopped; the restored epochs are
    reported to `on_epoch` again first, so a callback that skips what it already has can fill gaps.

    `images`: a tensor of training images, or a source of them (see `epoch_batches`).
    Image batches go channels_last: oneDNN's CPU convolutions run about twice as fast so.
    Runs on the model's device (a tensor moves there once); `precision` is fp32, bf16 or fp16
    (see latent_models.device); `compile` wraps the loss step in torch.compile.
    """
    training = _Training(model, images, objective, settings, generator)
    path, epochs = checkpointing.path, settings.epochs
    saved = None
    if checkpointing.resume and path and Path(path).is_file():
        saved = training.restore(path)
        for epoch, metrics in enumerate(training.result.history):
            checkpointing.on_epoch(epoch, metrics)
        tqdm.write(f"resumed after epoch {saved.epoch + 1}/{epochs} from {path}")
    training.prepare_steps(saved)
    for epoch in range(saved.epoch + 1 if saved else 0, epochs):
        metrics = training.epoch_metrics(training.train_epoch(epoch))
        training.select(epoch, metrics)
        if path and training.rank == 0:
            checkpointing.on_checkpoint(training.state(epoch).save(path))
        checkpointing.on_epoch(epoch, metrics)
        tqdm.write(f"epoch {epoch + 1}/{epochs}: " + ", ".join(f"{k}={v:.4g}" for k, v in metrics.items()))
    model.load_state_dict(training.result.best_state)
    return training.result

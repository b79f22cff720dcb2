import pytest
import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_pre_hook

from latent_models.training.checkpoint import CheckpointState
from latent_models.training.loop import (
    Checkpointing,
    Objective,
    Settings,
    fit,
    make_optimizer,
    minibatch_indices,
    seed_everything,
    state_copy,
)


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 1)

    def forward(self, x):
        return self.lin(x)


def _regression(seed=0):
    g = torch.Generator().manual_seed(123)
    x = torch.randn(256, 4, generator=g)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]])
    data = torch.cat([x, y], dim=1)

    def loss_fn(model, batch, generator, progress, rows=slice(None)):
        batch = batch[rows]
        return nn.functional.mse_loss(model(batch[:, :4]), batch[:, 4:]), {}

    def evaluate(model):
        with torch.no_grad():
            return {"val_loss": nn.functional.mse_loss(model(x), y).item()}

    return data, loss_fn, evaluate


def _fit(epochs=3, seed=0, evaluate=None, on_epoch=lambda e, m: None, **settings):
    data, loss_fn, default_eval = _regression()
    gen = seed_everything(seed)
    model = Tiny()
    result = fit(
        model,
        data,
        Objective(loss_fn, evaluate or default_eval, "val_loss", "min"),
        Settings(epochs=epochs, batch_size=32, lr=0.05, schedule="cosine", **settings),
        gen,
        Checkpointing(on_epoch=on_epoch),
    )
    return model, result


def test_state_copy_is_detached_from_the_live_model():
    model = Tiny()
    saved = state_copy(model)
    live = model.state_dict()
    with torch.no_grad():
        model.lin.weight.add_(1.0)
    assert torch.equal(live["lin.weight"], model.lin.weight)  # state_dict() alone follows the model
    assert not torch.equal(saved["lin.weight"], model.lin.weight)


def test_adam_beta2_reaches_the_optimizer():
    optimizer, _ = make_optimizer(Tiny(), 0.01, 0.0, "onecycle", 10, adam_beta2=0.95)
    assert optimizer.param_groups[0]["betas"][1] == 0.95  # beta1 is cycled by one-cycle
    _, default = _fit(seed=5)
    _, lower = _fit(seed=5, adam_beta2=0.9)
    assert default.history != lower.history


def _gradient_norms_at_each_step(**settings):
    """The global gradient norm the optimizer sees at each step of `_fit`, and the fit's result."""
    norms = []

    def record(optimizer, args, kwargs):
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        norms.append(torch.nn.utils.get_total_norm(grads).item())

    handle = register_optimizer_step_pre_hook(record)
    try:
        _, result = _fit(seed=5, **settings)
    finally:
        handle.remove()
    return norms, result


def test_max_grad_norm_clips_what_the_optimizer_sees_and_zero_leaves_it_alone():
    unclipped, off = _gradient_norms_at_each_step()
    limit = sorted(unclipped)[len(unclipped) // 2]  # the median: half the steps exceed it unclipped
    clipped, on = _gradient_norms_at_each_step(max_grad_norm=limit)
    assert sum(n > limit * 1.01 for n in unclipped) >= len(unclipped) // 3
    assert len(clipped) == len(unclipped) and max(clipped) <= limit * (1 + 1e-5)
    assert _gradient_norms_at_each_step(max_grad_norm=0.0)[0] == unclipped
    assert off.history != on.history


def test_max_grad_norm_goes_from_the_entry_point_config_to_the_loop():
    from latent_models.kinds.denoiser.config import AEConfig
    from latent_models.kinds.vae.config import VAEConfig

    assert Settings.of(AEConfig(), "fp32").max_grad_norm == 0.0
    assert Settings.of(AEConfig(max_grad_norm=0.5), "fp32").max_grad_norm == 0.5
    assert Settings.of(VAEConfig(max_grad_norm=2.0), "fp32").max_grad_norm == 2.0


def test_same_seed_same_history_and_weights():
    m1, r1 = _fit(seed=5)
    m2, r2 = _fit(seed=5)
    _, r3 = _fit(seed=6)
    assert r1.history == r2.history
    assert torch.equal(m1.lin.weight, m2.lin.weight)
    assert r1.history != r3.history


def test_best_epoch_weights_are_restored_not_the_last():
    # Validation that is best after epoch 2 of 4: the model must end with epoch-2 weights.
    scores = iter([3.0, 1.0, 2.0, 5.0])
    snapshots = []

    def evaluate(model):
        snapshots.append(state_copy(model))
        return {"val_loss": next(scores)}

    model, result = _fit(epochs=4, evaluate=evaluate)
    assert result.best_epoch == 1 and result.best_value == 1.0
    assert torch.equal(model.lin.weight, snapshots[1]["lin.weight"])
    assert not torch.equal(model.lin.weight, snapshots[3]["lin.weight"])


def test_history_reports_every_epoch_and_loss_falls():
    seen = []
    _, result = _fit(epochs=4, on_epoch=lambda e, m: seen.append(e))
    assert seen == [0, 1, 2, 3]
    losses = [h["train_loss"] for h in result.history]
    assert losses[-1] < losses[0]
    assert {"train_loss", "val_loss", "lr"} <= set(result.history[0])


def test_minibatches_cover_data_once_per_epoch():
    batches = list(minibatch_indices(100, 30, torch.Generator().manual_seed(0)))
    assert [len(b) for b in batches] == [30, 30, 30]
    assert len(torch.cat(batches).unique()) == 90


def test_resume_from_checkpoint_continues_exactly(tmp_path):
    """Stop after epoch 2 of 4 (an exception, as a crash would), resume from the checkpoint:
    the same history and weights as one uninterrupted fit, and each epoch reported once per fit."""
    full_model, full = _fit(epochs=4)
    path = tmp_path / "ck" / "last.pt"
    saved = []

    def crash_after_two(epoch, metrics):
        if epoch == 1:
            raise RuntimeError("killed")

    data, loss_fn, evaluate = _regression()
    how = (
        Objective(loss_fn, evaluate, "val_loss", "min"),
        Settings(epochs=4, batch_size=32, lr=0.05, schedule="cosine"),
    )
    gen = seed_everything(0)
    try:
        fit(Tiny(), data, *how, gen, Checkpointing(path, on_checkpoint=saved.append, on_epoch=crash_after_two))
    except RuntimeError:
        pass
    assert saved == [path, path] and path.is_file() and not list(path.parent.glob("*.tmp"))
    seen = []
    gen = seed_everything(0)
    model = Tiny()  # same init draws as the first attempt; the checkpoint overrides them anyway
    torch.manual_seed(999)  # the global RNG state is restored from the checkpoint too
    resumed = fit(model, data, *how, gen, Checkpointing(path, resume=True, on_epoch=lambda e, m: seen.append(e)))
    assert seen == [0, 1, 2, 3]  # restored epochs 0-1 reported again (a callback dedups), then 2-3
    assert resumed.history == full.history
    assert resumed.best_epoch == full.best_epoch
    assert torch.equal(model.lin.weight, full_model.lin.weight)


def test_checkpoint_carries_the_model_config_and_resume_refuses_another_model(tmp_path):
    from latent_models.kinds.denoiser.config import DenoiserConfig
    from latent_models.models import build_model

    images = torch.rand(8, 1, 28, 28, generator=torch.Generator().manual_seed(0))

    def loss_fn(model, batch, generator, progress, rows=slice(None)):
        return nn.functional.mse_loss(model(batch[rows]), batch[rows]), {}

    how = (
        Objective(loss_fn, lambda m: {"val_loss": 0.0}, "val_loss", "min"),
        Settings(epochs=1, batch_size=4, lr=0.01),
    )
    path = tmp_path / "last.pt"
    small = DenoiserConfig(width=4)
    fit(build_model(small), images, *how, seed_everything(0), Checkpointing(path))
    assert CheckpointState.load(path).model_config == small.to_dict()
    with pytest.raises(ValueError, match="different model"):
        fit(build_model(DenoiserConfig(width=8)), images, *how, seed_everything(0), Checkpointing(path, resume=True))


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def test_checkpoint_state_reads_back_what_it_wrote_and_files_without_its_later_keys(tmp_path):
    import dataclasses
    import random

    model = Tiny()
    optimizer, scheduler = make_optimizer(model, 0.01, 0.0, "cosine", 4)
    state = CheckpointState(
        epoch=2,
        model=model.state_dict(),
        model_config={"width": 4},
        optimizer=optimizer.state_dict(),
        scheduler=scheduler.state_dict(),
        generator=torch.Generator().manual_seed(3).get_state(),
        torch_rng=torch.get_rng_state(),
        python_rng=random.getstate(),
        device="cuda:0",
        scaler={"scale": 2.0},
        best_epoch=1,
        best_value=0.5,
        best_score=-0.5,
        best_state=state_copy(model),
        history=[{"val_loss": 1.0}, {"val_loss": 0.5}, {"val_loss": 0.7}],
    )
    path = state.save(tmp_path / "ck" / "last.pt")
    assert path == tmp_path / "ck" / "last.pt" and not list(path.parent.glob("*.tmp"))
    loaded = CheckpointState.load(path)
    for field in dataclasses.fields(CheckpointState):
        assert _same(getattr(state, field.name), getattr(loaded, field.name)), field.name

    older = state.to_dict()  # a file from before the model's config, the device and the scaler were saved
    del older["model_config"], older["device"], older["scaler"]
    torch.save(older, path)
    loaded = CheckpointState.load(path)
    assert (loaded.model_config, loaded.device, loaded.scaler) == (None, "cpu", {})
    assert _same(loaded.best_state, state.best_state) and loaded.history == state.history
    loaded.check_holds(Tiny(), path)  # no config to compare: it passes

"""The model kinds: each in one folder, declared once, found through the registry."""

from __future__ import annotations

import ast
import dataclasses
import typing
from pathlib import Path

import pytest

from latent_models import config
from latent_models.kinds import KINDS, kind, trained
from latent_models.models import build_model, config_from_dict

PACKAGE = Path(__file__).resolve().parent.parent / "latent_models"
MAX_LINES = 450
LONG_REASON = "# Long:"  # a module over MAX_LINES says why in a comment near its top


@pytest.mark.parametrize("name", sorted(KINDS))
def test_a_kind_is_one_folder_with_its_layers(name):
    k = kind(name)
    folder = PACKAGE / "kinds" / name
    assert k.package == f"latent_models.kinds.{name}" and folder.is_dir()
    assert k.model_config.kind == name and k.validation_metrics
    for part in ("config", "model", "report", "serving"):
        assert (folder / f"{part}.py").is_file(), part
    assert k.pyfunc().kind == name
    model = build_model(k.model_config())
    assert model.config == k.model_config() == config_from_dict(model.config.to_dict())
    assert (folder / "recipe.py").is_file() and k.module("recipe")
    if k.entry_point:
        assert k.recipe().kind is k and config.ENTRY_POINTS[k.entry_point] is k.config
    assert (k.evaluate_options is None) == (not (folder / "evaluation.py").is_file())


@pytest.mark.parametrize("entry_point", sorted(trained()))
def test_an_entry_points_model_options_are_its_models_fields(entry_point):
    """Declared once, in the model's config: the entry point's config inherits each field with its
    type, default and help, and makes the model's config from them."""
    k = trained()[entry_point]
    model_fields = {f.name: f for f in dataclasses.fields(k.model_config) if f.name != "image_shape"}
    options = {f.name: f for f in dataclasses.fields(k.config)}
    model_hints, option_hints = typing.get_type_hints(k.model_config), typing.get_type_hints(k.config)
    for name, f in model_fields.items():
        assert option_hints[name] == model_hints[name], name
        assert options[name].default == f.default and options[name].metadata["help"] == f.metadata["help"], name
    made = k.config(**{name: f.default for name, f in model_fields.items()}).model_config((1, 28, 28))
    assert made == k.model_config()


def _string_constants(path: Path) -> set[str]:
    return {
        n.value
        for n in ast.walk(ast.parse(path.read_text()))
        if isinstance(n, ast.Constant) and isinstance(n.value, str)
    }


def test_no_module_outside_the_kinds_branches_on_a_kind():
    """Outside kinds/, a kind is named only where an entry point composes kinds (`main`) or
    picks a default; everything else goes through the registry."""
    names = set(KINDS) | set(trained())
    allowed = {"config.py": {"denoiser", "vae", "ae"}, "training/main.py": {"ae", "vae"}}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel.startswith("kinds/"):
            continue
        assert _string_constants(path) & names <= allowed.get(rel, set()), rel


def test_modules_are_short_enough_to_read_in_one_sitting():
    for path in sorted([*PACKAGE.rglob("*.py"), *(PACKAGE.parent / "latent_models_seal").rglob("*.py")]):
        lines = path.read_text().splitlines()
        if len(lines) > MAX_LINES:
            assert any(line.startswith(LONG_REASON) for line in lines[:40]), f"{path.name}: {len(lines)} lines"

"""MkDocs hook: the parameter reference, generated from the config dataclasses.

`reference/parameters.md` holds the marker line `<!-- parameters -->`; on every build this hook
replaces it by one table per entry point, built from `latent_models/config.py`: each field's
name, type (a `Literal` field lists its choices), default and `field.metadata["help"]`.
Nothing in the tables is written by hand.

`latent_models.config.ENTRY_POINTS` (MLproject entry point -> config class) is the one mapping
the CLI, the MLproject check and these tables share.
"""

from __future__ import annotations

import dataclasses
import html
import re
import sys
import typing
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # the package, also when mkdocs runs outside an editable install
    sys.path.insert(0, str(REPO))

from latent_models.config import ENTRY_POINTS  # noqa: E402  (entry point -> config class, in reading order)

MARKER = "<!-- parameters -->"
PAGE = "reference/parameters.md"

SUMMARY = {
    "ae": "train the denoising autoencoder",
    "vae": "train the variational autoencoder",
    "vamp": "train the VampPrior VAE (a learned prior, residual conv nets)",
    "main": "train both under one parent run",
    "evaluate": "evaluate a registered model against baselines (denoiser) or for sample quality (VAE)",
    "sweep": "a grid of `ae` or `vae` runs under one parent run",
    "search": "an Optuna search over `ae` or `vae` params, losing trials pruned",
    "promote": "move the `champion` alias (or another) to a version",
}


def _cell(text: str) -> str:
    """Markdown table cell: `|` escaped, `<` `>` `&` escaped outside code spans."""
    parts = text.split("`")
    for i in range(0, len(parts), 2):  # even parts lie outside backticks
        parts[i] = html.escape(parts[i], quote=False)
    return "`".join(parts).replace("|", "\\|").replace("\n", " ")


def _type(hint) -> str:
    if typing.get_origin(hint) is typing.Literal:
        return ", ".join(f"`{v}`" if v != "" else '`""`' for v in typing.get_args(hint))
    return f"`{getattr(hint, '__name__', str(hint))}`"


def _default(value) -> str:
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if value == "":
        return '`""`'
    return f"`{value}`"


def parameter_table(config_cls: type) -> str:
    """One Markdown table: parameter, type, default, help, in the dataclass's field order."""
    hints = typing.get_type_hints(config_cls)
    rows = ["| parameter | type | default | meaning |", "|---|---|---|---|"]
    for f in dataclasses.fields(config_cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        rows.append(
            f"| `{f.name}` | {_type(hints[f.name])} | {_default(default)} | {_cell(f.metadata.get('help', ''))} |"
        )
    return "\n".join(rows)


def parameter_tables() -> str:
    """Every entry point's table, each under a `## <entry point>` heading (anchor `#<entry point>`)."""
    sections = []
    for name, cls in ENTRY_POINTS.items():
        sections.append(
            f"## {name}\n\n`mlflow run . -e {name}` or `latent-models {name}`: {SUMMARY[name]} "
            f"(`{cls.__name__}`).\n\n{parameter_table(cls)}\n"
        )
    return "\n".join(sections)


def on_page_markdown(markdown: str, page, config, files) -> str:
    if page.file.src_uri != PAGE:
        return markdown
    if not re.search(rf"^{re.escape(MARKER)}\s*$", markdown, flags=re.M):
        raise ValueError(f"{PAGE} lost its marker line {MARKER}")
    return re.sub(rf"^{re.escape(MARKER)}\s*$", lambda _: parameter_tables(), markdown, count=1, flags=re.M)

"""Every direct runtime dependency (pyproject.toml's `dependencies`) declares an OSI-approved
licence; anything else (bm3d: "free for non-commercial use") stays an opt-in extra."""

import re
from importlib.metadata import metadata

import pytest
import tomllib
from packaging.requirements import Requirement

from tests.conftest import REPO

# SPDX identifiers on the OSI's list that the dependencies use, and the public-domain dedications
# some bundle beside their main licence (numpy's CC0 files): they restrict nothing.
OSI_APPROVED = {
    "Apache-2.0", "BSD-2-Clause", "BSD-3-Clause", "0BSD", "MIT", "MIT-CMU", "ISC", "Zlib", "MPL-2.0",
    "PSF-2.0", "BSL-1.0", "LGPL-2.1-or-later", "LGPL-3.0-or-later", "HPND",
}  # fmt: skip
NO_RESTRICTION = {"CC0-1.0", "Unlicense"}
EXCEPTIONS = {"LLVM-exception"}  # `WITH` exceptions only grant more
# Old-style free-text `License:` fields, read as the licence they name.
FREE_TEXT = {"BSD": "BSD-3-Clause", "MIT License": "MIT", "Apache 2.0": "Apache-2.0"}


def runtime_dependencies() -> list[str]:
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    return [Requirement(d).name for d in deps]


def licence_verdict(meta) -> tuple[bool, str]:
    """(OSI-approved?, what the package declares) from its installed metadata."""
    classifiers = [c for c in meta.get_all("Classifier") or [] if c.startswith("License ::")]
    if any(not c.startswith("License :: OSI Approved") for c in classifiers):
        return False, "; ".join(classifiers)
    expression = meta.get("License-Expression") or FREE_TEXT.get((meta.get("License") or "").strip())
    if expression is None and (meta.get("License") or "").strip() and len(meta["License"]) < 40:
        expression = meta["License"].strip()  # a short free-text field is usually an SPDX expression
    if expression:
        ids = set(re.split(r"\s+(?:AND|OR)\s+|[()]", expression)) - {""}
        ids = {i.split(" WITH ")[0].strip() for i in ids} - EXCEPTIONS
        return ids <= OSI_APPROVED | NO_RESTRICTION and bool(ids & OSI_APPROVED), expression
    return bool(classifiers), "; ".join(classifiers) or "no licence declared"


@pytest.mark.parametrize("name", runtime_dependencies())
def test_direct_runtime_dependency_is_osi_licensed(name):
    approved, declared = licence_verdict(metadata(name))
    assert approved, f"{name} declares {declared!r}, not an OSI-approved licence: make it an opt-in extra"


def test_the_check_refuses_a_non_commercial_licence_and_the_project_declares_its_own():
    approved, declared = licence_verdict(metadata("bm3d"))  # the test extra installs it
    assert not approved and "non-commercial" in declared
    assert "bm3d" not in runtime_dependencies()
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["license"] == "Apache-2.0" and "Apache License" in (REPO / "LICENSE").read_text()

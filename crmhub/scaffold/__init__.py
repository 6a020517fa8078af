"""``crmhub connectors new NAME``: a new, installable connector package that passes the suite.

The package holds a connector for an HTTP API of people (cursor pages, updates, erasure), its
mapping, a fake of the API built on :class:`crmhub.sandbox.SandboxApp`, the conformance test
and a ``pyproject.toml`` with the entry point. A developer replaces the API details with their
system's and keeps the suite green.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

from crmhub.errors import ConfigError

__all__ = ["create_connector_package", "package_files"]

_NAME = re.compile(r"^[a-z][a-z0-9_]{1,39}$")
_FILES = {
    "pyproject.toml.tmpl": "pyproject.toml",
    "README.md.tmpl": "README.md",
    "package/__init__.py.tmpl": "__PACKAGE__/__init__.py",
    "package/server.py.tmpl": "__PACKAGE__/server.py",
    "package/mapping.yaml.tmpl": "__PACKAGE__/__NAME__.yaml",
    "tests/test_conformance.py.tmpl": "tests/test_conformance.py",
}


def _words(name: str) -> dict[str, str]:
    parts = [p for p in name.split("_") if p]
    return {
        "__PACKAGE__": f"crmhub_{name}",
        "__CLASS__": "".join(p.capitalize() for p in parts),
        "__TITLE__": " ".join(p.capitalize() for p in parts),
        "__ENV__": f"{name.upper()}_API_KEY",
        "__NAME__": name,
    }


def _fill(text: str, words: dict[str, str]) -> str:
    for token, value in words.items():  # __PACKAGE__ before __NAME__: it is not inside it
        text = text.replace(token, value)
    return text


def package_files(name: str) -> dict[str, str]:
    """The files of a new connector package for ``name``: relative path -> text.

    Raises:
        ConfigError: if ``name`` is not a lower-case identifier of 2 to 40 characters.
    """
    if not _NAME.match(name):
        raise ConfigError(
            f"{name!r} is not a usable connector name: use lower-case letters, digits and "
            "underscores, starting with a letter (e.g. 'acme_crm')"
        )
    words = _words(name)
    template = resources.files(__package__) / "template"
    return {
        _fill(target, words): _fill((template / source).read_text(encoding="utf-8"), words)
        for source, target in _FILES.items()
    }


def create_connector_package(name: str, folder: str | Path) -> Path:
    """Write the package for ``name`` into ``folder/crmhub-<name>`` and return that path.

    Raises:
        ConfigError: for a bad name, or if the target folder exists and is not empty.
    """
    root = Path(folder) / f"crmhub-{name.replace('_', '-')}"
    files = package_files(name)
    if root.exists() and any(root.iterdir()):
        raise ConfigError(f"{root} exists and is not empty: choose another folder")
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root

"""The distribution: one wheel installs every component under the `crmhub` namespace, with
its package data and the entry point that registers the built-in connectors; and every
source package is listed for installation (a package missing from ``pyproject.toml`` works
in an editable install and breaks ``pip install .``)."""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            str(out),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    [built] = out.glob("crmhub-*.whl")
    return zipfile.ZipFile(built)


def test_the_wheel_maps_every_top_level_folder_into_the_namespace(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    for expected in (
        "crmhub/__init__.py",
        "crmhub/py.typed",
        "crmhub/templates/crmhub.toml",
        "crmhub/connectors/files.py",
        "crmhub/mappings/__init__.py",
        "crmhub/mappings/people_file.yaml",
        "crmhub/mappings/activities_file.yaml",
        "crmhub/dedupe/__init__.py",
        "crmhub/resolution/resolver.py",
        "crmhub/cli/main.py",
        "crmhub/store/migrations/env.py",
        "crmhub/store/migrations/script.py.mako",
    ):
        assert expected in names, expected
    migrations = [n for n in names if n.startswith("crmhub/store/migrations/versions/0")]
    assert migrations, "no migration in the wheel"
    assert not [n for n in names if n.startswith(("tests/", "benchmarks/", "examples/"))]


def test_the_wheel_declares_the_connector_entry_point_and_the_command(
    wheel: zipfile.ZipFile,
) -> None:
    [entry_points] = [n for n in wheel.namelist() if n.endswith("entry_points.txt")]
    text = wheel.read(entry_points).decode()
    assert "[crmhub]\nfiles = crmhub.connectors.files" in text
    assert "crmhub = crmhub.cli.main:main" in text


def test_every_source_package_is_listed_for_installation() -> None:
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(setuptools["packages"])
    found = set()
    for name, folder in setuptools["package-dir"].items():
        base = ROOT / folder
        for init in base.rglob("__init__.py"):
            relative = init.parent.relative_to(base).parts
            found.add(".".join((name, *relative)))
    assert found - listed == set(), "packages missing from [tool.setuptools] packages"
    assert listed - found == set(), "listed packages that do not exist"

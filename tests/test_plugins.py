"""Plugins: built-ins come through entry points like anyone's; a broken plugin is skipped with
a warning and the rest keep working."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import crmhub
from crmhub.connector import Stream
from crmhub.errors import ConfigError
from crmhub.plugins import Plugins


def _fake_distribution(root: Path, name: str, module: str, source: str) -> None:
    """A minimal installed distribution: a dist-info folder with a `crmhub` entry point."""
    info = root / f"{name}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[crmhub]\n{name} = {module}\n")
    (root / f"{module}.py").write_text(textwrap.dedent(source))


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for module in [m for m in sys.modules if m.startswith("crmhub_test_")]:
        del sys.modules[module]


def test_built_in_connectors_are_found_through_their_entry_point() -> None:
    connectors = Plugins().connectors()
    assert {"csv", "jsonl"} <= set(connectors)
    assert connectors["csv"].__module__ == "crmhub.connectors.files"
    assert connectors["csv"].capabilities() == ("read", "write", "erase")


def test_a_plugin_that_fails_to_import_is_skipped_and_reported(site: Path) -> None:
    _fake_distribution(site, "broken", "crmhub_test_broken", "raise ImportError('no module x')")
    plugins = Plugins()
    assert [f.name for f in plugins.failures] == ["broken"]
    assert "ImportError: no module x" in plugins.failures[0].error
    assert "csv" in plugins.connectors()


def test_a_plugin_with_a_misspelled_hook_is_skipped_not_fatal(site: Path) -> None:
    _fake_distribution(
        site,
        "typo",
        "crmhub_test_typo",
        """
        import crmhub

        @crmhub.hookimpl
        def register_conectors(register):
            pass
    """,
    )
    plugins = Plugins()
    assert [f.name for f in plugins.failures] == ["typo"]
    assert "register_conectors" in plugins.failures[0].error
    assert "jsonl" in plugins.connectors()


def test_a_plugin_registering_something_invalid_is_skipped(site: Path) -> None:
    _fake_distribution(
        site,
        "odd",
        "crmhub_test_odd",
        """
        import crmhub

        @crmhub.hookimpl
        def register_connectors(register):
            register(object)
    """,
    )
    plugins = Plugins()
    assert "csv" in plugins.connectors()
    assert [f.name for f in plugins.failures] == ["odd"]
    assert "not a crmhub.Connector subclass" in plugins.failures[0].error


def test_crmhub_plugins_env_restricts_which_entry_points_load(
    site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_distribution(site, "broken", "crmhub_test_broken2", "raise ImportError('x')")
    monkeypatch.setenv("CRMHUB_PLUGINS", "files")
    plugins = Plugins()
    assert plugins.failures == []
    assert {"csv", "jsonl"} <= set(plugins.connectors())


def test_unknown_connector_type_lists_the_installed_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown connector type 'nope' \(installed: .*csv"):
        Plugins().connector("nope")


def test_plugins_can_add_transforms_used_by_mappings(tmp_path: Path) -> None:
    from crmhub.mapping import load_mapping

    class Shout:
        @crmhub.hookimpl
        def register_transforms(self, register: Any) -> None:
            register("shout", lambda value: str(value).upper() + "!")

    (tmp_path / "m.yaml").write_text(
        "streams:\n  s:\n    kind: person\n    fields:\n      external_id: id\n"
        "      attributes.motto: {from: motto, transform: shout}\n"
    )
    plugins = Plugins(extra=(Shout(),))
    mapping = load_mapping(tmp_path / "m.yaml", transforms=plugins.transforms()).stream("s")
    result = mapping.apply({"id": "1", "motto": "hi"}, source="x", stream="s")
    assert result.record is not None and result.record.attributes["motto"] == "HI!"


def test_connector_capabilities_follow_the_methods_it_overrides() -> None:
    class ReadOnly(crmhub.Connector):
        name = "ro"
        streams = {"s": Stream(primary_key="id")}

        def read(self, stream: str, state: Any) -> Any:
            return iter(())

    assert ReadOnly.capabilities() == ("read",)

"""The config file: validated, secrets only from the environment, errors name the key."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from crmhub.config import load_config, parse_config
from crmhub.connector import Connector, ConnectorConfig, Stream
from crmhub.errors import ConfigError


class _Api(Connector):
    name = "api"
    streams = {"people": Stream(primary_key="id")}

    class Config(ConnectorConfig):
        api_key: SecretStr
        folder: Path | None = None
        page_size: int = 100


TYPES = {"api": _Api}


def _parse(raw: dict, environ: dict | None = None, path: Path | None = None):  # type: ignore[no-untyped-def]
    return parse_config(raw, connector_types=TYPES, environ=environ or {}, path=path)


def test_defaults_give_an_embedded_sqlite_hub(tmp_path: Path) -> None:
    config = _parse({}, path=tmp_path / "crmhub.toml")
    assert config.hub.database_url == f"sqlite:///{tmp_path}/crmhub.db"
    assert 0 < config.dedupe.review < config.dedupe.auto_merge <= 1


def test_secrets_come_from_the_environment_and_never_print(tmp_path: Path) -> None:
    config = _parse(
        {"connectors": {"crm": {"type": "api", "api_key": "env:API_KEY", "folder": "data"}}},
        environ={"API_KEY": "sk_live_123"},
        path=tmp_path / "crmhub.toml",
    )
    settings = config.connectors["crm"].settings
    assert settings.api_key.get_secret_value() == "sk_live_123"  # type: ignore[attr-defined]
    assert "sk_live_123" not in repr(config)
    assert settings.folder == tmp_path / "data"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("raw", "environ", "message"),
    [
        (
            {"connectors": {"crm": {"type": "api", "api_key": "sk_live_123"}}},
            {},
            r"\[connectors.crm.api_key\] is a secret",
        ),
        (
            {"connectors": {"crm": {"type": "api", "api_key": "env:MISSING"}}},
            {},
            r"\[connectors.crm.api_key\] environment variable MISSING is not set",
        ),
        (
            {"connectors": {"crm": {"type": "nope"}}},
            {},
            r"\[connectors.crm\] unknown connector type 'nope' \(known: api\)",
        ),
        (
            {"connectors": {"crm": {"type": "api", "api_key": "env:K", "page_size": "many"}}},
            {"K": "x"},
            r"\[connectors.crm.page_size\]",
        ),
        (
            {"connectors": {"crm": {"type": "api", "api_key": "env:K", "colour": 1}}},
            {"K": "x"},
            r"\[connectors.crm.colour\] unknown setting",
        ),
        ({"hub": {"secret": "sk_live_123"}}, {}, r"\[hub.secret\] is a secret"),
        ({"dedupe": {"auto_merge": 0.5, "review": 0.9}}, {}, "review must be lower"),
        ({"hub": {"default_region": "Atlantis"}}, {}, r"\[hub.default_region\]"),
        (
            {"dedupe": {"blocking_rules": {"near": ["shoe_size"]}}},
            {},
            r"\[dedupe.blocking_rules\].*unknown field 'shoe_size'",
        ),
        ({"dedupe": {"blocking_rules": {}}}, {}, r"\[dedupe.blocking_rules\].*no rules"),
        ({"survivorship": {"fields": {"emails": "loudest"}}}, {}, "unknown rule 'loudest'"),
    ],
)
def test_config_errors_name_the_key_and_the_problem(raw: dict, environ: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as raised:
        _parse(raw, environ)
    assert "sk_live_123" not in str(raised.value)


def test_configured_blocking_rules_replace_the_built_in_ones() -> None:
    from crmhub.dedupe.pipeline import MatchSettings

    rules = {"email": ["emails"], "area": ["postcode", "last_name:3"]}
    settings = MatchSettings.from_config(_parse({"dedupe": {"blocking_rules": rules}}, {}).dedupe)
    assert [(r.name, r.fields) for r in settings.rules] == [
        ("email", ("emails",)),
        ("area", ("postcode", "last_name:3")),
    ]
    assert MatchSettings.from_config(_parse({}, {}).dedupe).rules == MatchSettings().rules


def test_toml_syntax_errors_name_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "crmhub.toml"
    path.write_text("[hub]\ndatabase_url = \n")
    with pytest.raises(ConfigError, match=r"crmhub.toml.*line 2"):
        load_config(path, connector_types=TYPES)


def test_missing_config_file_says_how_to_create_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="crmhub init"):
        load_config(tmp_path / "nope.toml", connector_types=TYPES)

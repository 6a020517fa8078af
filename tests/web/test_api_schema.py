"""Schemathesis against the JSON API: generated requests to every operation of the OpenAPI
schema find no server error and no response that breaks the schema. A well-formed request the
API refuses for a business reason (an email that is not one, an unknown id) is fine: the
positive-data-acceptance check is left out."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from crmhub.auth import create_token
from crmhub.sandbox.world import Sandbox
from crmhub.web import create_app

pytestmark = pytest.mark.slow

OPS_PATHS = ("/api/runs", "/api/quarantine", "/api/pushes")

# The schema does not depend on the hub: the app is built once, its hub given per test.
APP = create_app(None)  # type: ignore[arg-type]
schema = schemathesis.openapi.from_asgi("/api/openapi.json", APP)


@pytest.fixture
def tokens(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A hub with real records, suggestions and runs behind the app; a token per role."""
    hub = Sandbox(60).open_hub(tmp_path, sleep=lambda _seconds: None)
    hub.sync()
    with hub.engine.begin() as conn:
        made = {role: create_token(conn, role, role) for role in ("steward", "ops")}
    APP.state.hub = hub
    yield made
    hub.close()


@schema.parametrize()
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_the_api_never_fails_nor_breaks_its_schema(case: Any, tokens: dict[str, str]) -> None:
    role = "ops" if case.path.startswith(OPS_PATHS) else "steward"
    case.call_and_validate(
        headers={"Authorization": f"Bearer {tokens[role]}"},
        excluded_checks=[positive_data_acceptance],
    )

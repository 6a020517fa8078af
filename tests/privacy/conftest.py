"""A sandbox world holding one known subject in all five systems, twice in support (a
duplicate the hub merges), among synthetic people; and hubs synced from it."""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path
from typing import Any

from crmhub.hub import Hub
from crmhub.privacy import PrivacyDesk, parse_identifiers
from crmhub.privacy.identifiers import Identifier
from crmhub.sandbox.people import WorldOptions, iter_world
from crmhub.sandbox.world import SOURCE_SYSTEMS, Sandbox

SECRET_ENV = "CRMHUB_TEST_PRIVACY_SECRET"

SUBJECT = {
    "first_name": "Oriel",
    "last_name": "Quenby",
    "email": "oriel.quenby@fastmail.co.uk",
    "phone": "07700 900123",
    "company": "Quenby Lettings",
    "job_title": "Owner",
    "street": "9 Mill Lane",
    "city": "Leeds",
    "postcode": "LS1 4AB",
    "country": "GB",
    "birth_date": "1980-02-03",
    "newsletter": "yes",
    "updated_at": "2025-06-01T10:00:00Z",
}
SECOND_EMAIL = "o.quenby@quenbylettings.co.uk"
SUBJECT_PHONE_E164 = "+447700900123"
# What must be in no database file, no log line and no certificate once the subject is erased.
SUBJECT_STRINGS = (
    SUBJECT["email"],
    SECOND_EMAIL,
    SUBJECT_PHONE_E164,
    "7700900123",
    "7700 900123",
    "Quenby",
    "Oriel",
    "Mill Lane",
)


def subject_rows() -> dict[str, list[dict[str, str]]]:
    """The subject's rows per system: one each, and a second support record with another
    email and the same phone."""
    rows: dict[str, list[dict[str, str]]] = defaultdict(list)
    for source, system in SOURCE_SYSTEMS.items():
        rows[system].append({**SUBJECT, "id": f"{source}-subject", "person_key": "SUBJECT"})
    rows["zendesk"].append(
        {**SUBJECT, "id": "support-subject-2", "email": SECOND_EMAIL, "person_key": "SUBJECT"}
    )
    return rows


def subject_sandbox(people: int = 60, **kwargs: Any) -> Sandbox:
    """The sandbox of ``people`` synthetic people plus the subject."""
    sandbox = Sandbox(0, seed=11, **kwargs)
    rows = subject_rows()
    for source, row in iter_world(people, WorldOptions(seed=11, sources=tuple(SOURCE_SYSTEMS))):
        rows[SOURCE_SYSTEMS[source]].append(row)
    for system, app in sandbox.apps.items():
        app.seed(rows[system])
    return sandbox


def open_subject_hub(sandbox: Sandbox, folder: Path, database_url: str | None, **http: Any) -> Hub:
    """A hub on ``sandbox`` with a secret, synced and matched."""
    os.environ[SECRET_ENV] = "privacy-test-secret"
    hub = sandbox.open_hub(
        folder,
        database_url,
        hub={"secret": f"env:{SECRET_ENV}"},
        sleep=lambda _s: None,
        **http,
    )
    hub.sync()
    return hub


def subject_identifiers() -> list[Identifier]:
    """The subject named as an officer would: by the email they wrote from."""
    return parse_identifiers(emails=[SUBJECT["email"]])


def desk_for(hub: Hub, actor: str = "dpo") -> PrivacyDesk:
    """The privacy desk of ``hub``."""
    return PrivacyDesk(hub, actor)

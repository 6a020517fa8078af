"""Trained match models in the store (``dedupe_models``), versioned, one active.

A hub with no trained model scores with the built-in one (:mod:`crmhub.dedupe.builtin`) as
version 0. A hub with enough records trains its own on the first matching run; a
steward's decisions refine it (``crmhub dedupe train``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.engine import Connection

from crmhub.dedupe import builtin
from crmhub.dedupe.model import FellegiSunter
from crmhub.store.schema import dedupe_models

__all__ = ["StoredModel", "active_model", "active_version", "builtin_model", "save_model"]

_m = dedupe_models.c


@dataclass(frozen=True)
class StoredModel:
    """A model and its version (0: the built-in one)."""

    version: int
    model: FellegiSunter
    trained_on: dict[str, Any]


def builtin_model() -> StoredModel:
    """The built-in model as version 0 (see :mod:`crmhub.dedupe.builtin`)."""
    return StoredModel(0, builtin.builtin_model(), {"source": "synthetic"})


def active_model(conn: Connection) -> StoredModel | None:
    """The hub's active trained model, or None if it has none."""
    row = conn.execute(
        select(_m.version, _m.params, _m.trained_on)
        .where(_m.active == 1)
        .order_by(_m.version.desc())
        .limit(1)
    ).first()
    if row is None:
        return None
    return StoredModel(row[0], FellegiSunter.from_json(row[1]), row[2])


def active_version(conn: Connection) -> tuple[int, datetime] | None:
    """The version and creation time of the active trained model (None if it has none): a
    stored model never changes (training stores a new version), so a caller holding the
    model of this version and time has the active one without reading its parameters."""
    row = conn.execute(_ACTIVE_VERSION).first()
    return None if row is None else (row[0], row[1])


_ACTIVE_VERSION = (
    select(_m.version, _m.created_at).where(_m.active == 1).order_by(_m.version.desc()).limit(1)
)


def save_model(
    conn: Connection, model: FellegiSunter, trained_on: dict[str, Any], now: datetime
) -> StoredModel:
    """Store ``model`` as the next version and make it the active one."""
    version = int(conn.execute(select(func.coalesce(func.max(_m.version), 0))).scalar_one()) + 1
    conn.execute(update(dedupe_models).values(active=0))
    conn.execute(
        insert(dedupe_models).values(
            version=version,
            params=model.to_json(),
            trained_on=trained_on,
            created_at=now,
            active=1,
        )
    )
    return StoredModel(version, model, trained_on)

"""The hub's store: SQLAlchemy Core tables, migrations and bulk data access.

SQLite is the embedded default, PostgreSQL the production backend; the same code serves both,
and only :mod:`crmhub.store.dialect` knows the difference.
"""

from __future__ import annotations

from crmhub.store.engine import is_sqlite, open_engine, safe_url
from crmhub.store.migrate import current_revision, head_revision, require_current, upgrade

__all__ = [
    "current_revision",
    "head_revision",
    "is_sqlite",
    "open_engine",
    "require_current",
    "safe_url",
    "upgrade",
]

"""Opening the store: SQLite settings, and clear errors that never show a password."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from crmhub.errors import StoreError
from crmhub.store import open_engine, safe_url


def test_sqlite_runs_with_wal_foreign_keys_and_secure_delete(tmp_path: Path) -> None:
    engine = open_engine(f"sqlite:///{tmp_path}/hub.db")
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert conn.execute(text("PRAGMA secure_delete")).scalar() == 1
    engine.dispose()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("not a url", "not valid"),
        ("mysql://db/hub", "unsupported database 'mysql'"),
        ("sqlite:////no/such/folder/hub.db", "folder /no/such/folder does not exist"),
        ("postgresql://ops:s3cr3t-pw@127.0.0.1:1/hub", "cannot open"),
    ],
)
def test_unusable_database_urls_give_a_clear_error(url: str, expected: str) -> None:
    with pytest.raises(StoreError, match=expected) as raised:
        open_engine(url)
    assert "s3cr3t-pw" not in str(raised.value)


def test_safe_url_masks_the_password() -> None:
    assert "hunter2" not in safe_url("postgresql://u:hunter2@db/hub")
    assert "***" in safe_url("postgresql://u:hunter2@db/hub")

"""The hub's tables (SQLAlchemy Core). Alembic migrations in ``migrations/`` create them.

Portable across SQLite and PostgreSQL: integer ids are ``BIGINT`` on PostgreSQL and
``INTEGER PRIMARY KEY`` (the rowid) on SQLite; JSON is ``JSONB`` on PostgreSQL. Personal data
lives only in ``source_records``, ``activities``, ``quarantine``, ``outbox``, ``overrides`` and
``customers`` — the tables an erasure clears; everything else holds ids and hashes.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

__all__ = [
    "PENDING_MATCH",
    "activities",
    "audit_log",
    "customers",
    "dedupe_models",
    "links",
    "match_keys",
    "match_pairs",
    "metadata",
    "outbox",
    "overrides",
    "principals",
    "privacy_requests",
    "privacy_tasks",
    "push_plans",
    "push_state",
    "quarantine",
    "source_records",
    "suppressions",
    "sync_runs",
    "sync_state",
    "web_sessions",
]

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

Id = BigInteger().with_variant(Integer(), "sqlite")
Json = JSON().with_variant(JSONB(), "postgresql")
Timestamp = DateTime(timezone=True)
CustomerId = String(36)  # a UUID in text form: stable across backends and exports


def _counts() -> list[Column[int]]:
    names = (
        "read", "inserted", "updated", "unchanged", "deleted", "quarantined", "suppressed",
        "pushed", "push_failed", "retries", "rejected", "echoed",
    )  # fmt: skip
    return [Column(name, Integer, nullable=False, server_default="0") for name in names]


customers = Table(
    "customers",
    metadata,
    Column("id", CustomerId, primary_key=True),
    Column("data", Json, nullable=False),  # surviving values with provenance
    Column("traits", Json, nullable=False),
    Column("version", Integer, nullable=False, server_default="1"),
    Column("created_at", Timestamp, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
    Column("merged_into", CustomerId, ForeignKey("customers.id", ondelete="SET NULL")),
    # The folded text a steward searches by (crmhub.resolution.search): personal data, so it
    # lives and goes with the golden values; None for a customer merged away. Searched by
    # scanning the index, which is a few dozen bytes a customer where the rows are kilobytes.
    Column("search_text", Text),
    Index(None, "merged_into"),
    Index(None, "search_text", "id"),
)

PENDING_MATCH = (
    "(deleted_at IS NULL AND (matched_hash IS NULL OR matched_hash <> content_hash))"
    " OR (deleted_at IS NOT NULL AND (matched_hash IS NULL OR matched_hash <> 'deleted'))"
)
"""Person records waiting for matching: live ones whose content changed since they were last
matched (or never were), deleted ones not yet settled as deleted. The text is the condition of
a partial index, and queries spell it the same way so that both backends use that index."""

source_records = Table(
    "source_records",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("connector", String(64), nullable=False),
    Column("stream", String(64), nullable=False),
    Column("external_id", String(255), nullable=False),
    Column("data", Json, nullable=False),  # the canonical Person
    Column("content_hash", String(32), nullable=False),  # raw record + mapping fingerprint
    Column("source_updated_at", Timestamp),
    Column("first_seen", Timestamp, nullable=False),
    Column("last_seen", Timestamp, nullable=False),
    Column("deleted_at", Timestamp),
    Column("customer_id", CustomerId, ForeignKey("customers.id", ondelete="SET NULL")),
    # The content hash the record was last matched with: a record whose hash differs (new,
    # changed) or that is deleted but still linked waits for matching. Written in the same
    # transaction as the match results, so a crash never leaves a record half matched.
    Column("matched_hash", String(32)),
    UniqueConstraint("connector", "stream", "external_id"),
    Index(None, "customer_id"),
    # Only the waiting records: finding them costs what they number, not what the hub holds.
    Index(
        "ix_source_records_pending",
        "id",
        sqlite_where=text(PENDING_MATCH),
        postgresql_where=text(PENDING_MATCH),
    ),
    # Records their system deleted keep their data until erased but lose their match keys:
    # an erasure finds them through this index instead of scanning every record.
    Index(
        "ix_source_records_deleted",
        "id",
        sqlite_where=text("deleted_at IS NOT NULL"),
        postgresql_where=text("deleted_at IS NOT NULL"),
    ),
)

match_keys = Table(
    "match_keys",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("kind", String(32), nullable=False),
    Column("value", String(255), nullable=False),
    Column(
        "source_record_id",
        Id,
        ForeignKey("source_records.id", ondelete="CASCADE"),
        nullable=False,
    ),
    # Covering: a key's holders are read from the index alone, without a table lookup each.
    Index(None, "kind", "value", "source_record_id"),
    Index(None, "source_record_id"),
)

links = Table(
    "links",
    metadata,
    Column(
        "source_record_id",
        Id,
        ForeignKey("source_records.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column(
        "customer_id", CustomerId, ForeignKey("customers.id", ondelete="CASCADE"), nullable=False
    ),
    Column("method", String(16), nullable=False),  # auto | steward | rule | new
    Column("probability", Float),
    Column("decided_by", String(64)),
    Column("decided_at", Timestamp, nullable=False),
    Index(None, "customer_id"),
)

match_pairs = Table(
    "match_pairs",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("left_id", Id, ForeignKey("source_records.id", ondelete="CASCADE"), nullable=False),
    Column("right_id", Id, ForeignKey("source_records.id", ondelete="CASCADE"), nullable=False),
    Column("probability", Float, nullable=False),
    Column("weight", Float, nullable=False),
    Column("comparison", Json, nullable=False),  # per field: level and weight
    Column("status", String(16), nullable=False),  # pending | accepted | rejected | auto
    Column("model_version", Integer),
    Column("left_hash", String(32)),  # content hashes when scored: refuse stale decisions
    Column("right_hash", String(32)),
    Column("decided_by", String(64)),
    Column("decided_at", Timestamp),
    Column("reason", Text),
    Column("created_at", Timestamp, nullable=False),
    UniqueConstraint("left_id", "right_id"),
    Index(None, "status", "probability"),
    Index(None, "right_id"),
)

overrides = Table(
    "overrides",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column(
        "customer_id", CustomerId, ForeignKey("customers.id", ondelete="CASCADE"), nullable=False
    ),
    Column("field", String(64), nullable=False),
    Column("value", Json),
    Column("set_by", String(64), nullable=False),
    Column("set_at", Timestamp, nullable=False),
    Column("reason", Text, nullable=False),
    UniqueConstraint("customer_id", "field"),
)

activities = Table(
    "activities",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("connector", String(64), nullable=False),
    Column("stream", String(64), nullable=False),
    Column("external_id", String(255), nullable=False),
    Column("kind", String(40), nullable=False),
    Column("occurred_at", Timestamp, nullable=False),
    Column("person_stream", String(64)),
    Column("person_external_id", String(255)),
    Column("amount", BigInteger),  # integer minor units
    Column("currency", String(3)),
    Column("status", String(60)),
    Column("data", Json, nullable=False),  # the canonical Activity
    Column("content_hash", String(32), nullable=False),
    Column("first_seen", Timestamp, nullable=False),
    Column("last_seen", Timestamp, nullable=False),
    Column("deleted_at", Timestamp),
    UniqueConstraint("connector", "stream", "external_id"),
    Index(None, "connector", "person_external_id"),
    Index(None, "occurred_at"),
)

sync_state = Table(
    "sync_state",
    metadata,
    Column("connector", String(64), nullable=False),
    Column("stream", String(64), nullable=False),
    Column("state", Json, nullable=False),
    Column("run_id", Id),
    Column("updated_at", Timestamp, nullable=False),
    PrimaryKeyConstraint("connector", "stream"),
)

sync_runs = Table(
    "sync_runs",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("connector", String(64), nullable=False),
    Column("stream", String(64), nullable=False),
    Column("mode", String(16), nullable=False),  # incremental | full | dry-run | retry
    Column("status", String(16), nullable=False),  # running | succeeded | failed | interrupted
    Column("started_at", Timestamp, nullable=False),
    Column("heartbeat_at", Timestamp, nullable=False),
    Column("finished_at", Timestamp),
    *_counts(),
    Column("error", Text),
    Index(None, "connector", "stream", "started_at"),
    Index(None, "status"),
)

quarantine = Table(
    "quarantine",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("run_id", Id, ForeignKey("sync_runs.id", ondelete="SET NULL")),
    Column("connector", String(64), nullable=False),
    Column("stream", String(64), nullable=False),
    Column("external_id", String(255)),
    Column("record_hash", String(32), nullable=False),  # the same bad record is kept once
    Column("errors", Json, nullable=False),
    Column("raw", Text, nullable=False),  # JSON of the raw record, or the raw text
    Column("location", String(255)),
    Column("created_at", Timestamp, nullable=False),
    Column("last_seen", Timestamp, nullable=False),
    Column("resolved_at", Timestamp),
    Column("resolution", String(32)),  # retried | superseded | discarded
    UniqueConstraint("connector", "stream", "record_hash"),
    Index(None, "resolved_at"),
    Index(None, "connector", "stream", "external_id"),
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("target", String(64), nullable=False),
    Column("stream", String(64), nullable=False),
    Column("external_id", String(255)),
    Column("customer_id", CustomerId, ForeignKey("customers.id", ondelete="CASCADE")),
    Column("operation", String(16), nullable=False),  # create | update
    Column("fields", Json, nullable=False),
    Column("idempotency_key", String(64), nullable=False, unique=True),
    Column("status", String(16), nullable=False),  # pending | done | failed
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", Timestamp),
    Column("last_error", Text),
    Column("created_at", Timestamp, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
    # The hash of every pushed field's value at planning: once done, it becomes the
    # record's push_state, which tells our own echo from a real change on the next pull.
    Column("projection_hash", String(32)),
    Index(None, "status", "next_attempt_at"),
    Index(None, "customer_id"),
    Index(None, "target", "stream", "external_id"),
)

push_state = Table(
    "push_state",
    metadata,
    Column("target", String(64), nullable=False),
    Column("stream", String(64), nullable=False),
    Column("external_id", String(255), nullable=False),
    Column("last_hash", String(32), nullable=False),
    Column("pushed_at", Timestamp, nullable=False),
    PrimaryKeyConstraint("target", "stream", "external_id"),
)

push_plans = Table(
    "push_plans",
    metadata,
    Column("target", String(64), nullable=False),
    Column("stream", String(64), nullable=False),
    # Golden records changed and source records seen after this were not planned yet.
    Column("planned_until", Timestamp, nullable=False),
    PrimaryKeyConstraint("target", "stream"),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("at", Timestamp, nullable=False),
    Column("actor", String(64), nullable=False),
    Column("action", String(64), nullable=False),
    Column("subject_type", String(32)),
    Column("subject_id", String(64)),
    Column("details", Json, nullable=False),  # ids and hashes only
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)

privacy_requests = Table(
    "privacy_requests",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("kind", String(16), nullable=False),  # erasure | access
    Column("status", String(24), nullable=False),
    Column("subject", Json, nullable=False),  # keyed hashes of the identifiers
    Column("ledger", Json),  # what will be / was erased where, by keyed hash
    Column("received_at", Timestamp, nullable=False),
    Column("due_at", Timestamp, nullable=False),
    Column("extension_reason", Text),
    Column("completed_at", Timestamp),
    Column("created_by", String(64), nullable=False),
    Column("duplicate_of", String(36), ForeignKey("privacy_requests.id")),
    Column("refusal_reason", Text),
    Index(None, "status", "due_at"),
)

privacy_tasks = Table(
    "privacy_tasks",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column(
        "request_id",
        String(36),
        ForeignKey("privacy_requests.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("connector", String(64), nullable=False),
    Column("kind", String(16), nullable=False),  # api | manual
    Column("status", String(16), nullable=False),  # pending | done | failed
    Column("targets", Json, nullable=False),  # external ids, by keyed hash once done
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", Timestamp),
    Column("result", Json),
    Column("note", Text),
    Column("updated_at", Timestamp, nullable=False),
    UniqueConstraint("request_id", "connector"),
)

suppressions = Table(
    "suppressions",
    metadata,
    Column("kind", String(16), nullable=False),  # email | phone | source_id
    Column("hash", String(64), nullable=False),  # HMAC of the normalised identifier
    Column("request_id", String(36), ForeignKey("privacy_requests.id", ondelete="SET NULL")),
    Column("created_at", Timestamp, nullable=False),
    PrimaryKeyConstraint("kind", "hash"),
)

principals = Table(
    "principals",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("role", String(16), nullable=False),  # ops | steward | compliance | auditor
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("created_at", Timestamp, nullable=False),
    Column("last_used_at", Timestamp),
    Column("revoked_at", Timestamp),
)

web_sessions = Table(
    "web_sessions",
    metadata,
    # The hash of the session cookie's value: a copy of the database lets nobody sign in.
    Column("id_hash", String(64), primary_key=True),
    Column(
        "principal_id",
        Id,
        ForeignKey("principals.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("csrf_token", String(64), nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Column("expires_at", Timestamp, nullable=False),
)

dedupe_models = Table(
    "dedupe_models",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("params", Json, nullable=False),  # m and u per field level, prior, thresholds
    Column("trained_on", Json, nullable=False),  # counts, sources, steward labels used
    Column("created_at", Timestamp, nullable=False),
    Column("active", Integer, nullable=False, server_default="0"),
)

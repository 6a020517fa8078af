"""The identifiers a privacy request names its subject by: email, phone or a source id.

Each is normalised exactly as records are at the edge (so ``Ann@Example.com`` finds the
record holding ``ann@example.com``), and is stored only as its keyed hash
(:func:`crmhub.suppression.identifier_hash`); the raw value lives in memory while a request
is being handled and nowhere else.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from crmhub.errors import NormalizationError, PrivacyError
from crmhub.normalize import normalize_email, normalize_phone
from crmhub.suppression import identifier_hash

__all__ = [
    "Identifier",
    "IdentifierKind",
    "external_id_hash",
    "keyed_all",
    "parse_identifiers",
    "record_identifiers",
    "require_secret",
    "source_id",
]

IdentifierKind = Literal["email", "phone", "source_id"]


@dataclass(frozen=True, order=True)
class Identifier:
    """One normalised identifier of a subject."""

    kind: IdentifierKind
    value: str

    def hash(self, secret: bytes) -> str:
        """The keyed hash stored for this identifier (ledger, suppression, request)."""
        return identifier_hash(secret, self.kind, self.value)

    def keyed(self, secret: bytes) -> dict[str, str]:
        """``{"kind": ..., "hash": ...}``: the identifier as stored, without its value."""
        return {"kind": self.kind, "hash": self.hash(secret)}


def source_id(connector: str, stream: str, external_id: str) -> str:
    """The source id of a record: ``connector/stream/external_id``."""
    return f"{connector}/{stream}/{external_id}"


def parse_identifiers(
    *,
    emails: Iterable[str] = (),
    phones: Iterable[str] = (),
    source_ids: Iterable[str] = (),
    region: str | None = None,
) -> list[Identifier]:
    """Normalise the identifiers an officer gave.

    Source ids are written ``connector/stream/external_id`` (the external id may itself hold
    slashes). ``region`` reads phone numbers written without a country code.

    Raises:
        PrivacyError: a value is not a valid email, phone or source id, or none was given.
    """
    found: list[Identifier] = []
    for value in emails:
        try:
            found.append(Identifier("email", normalize_email(value)))
        except NormalizationError as exc:
            raise PrivacyError(f"not a valid email address: {exc}") from None
    for value in phones:
        try:
            found.append(Identifier("phone", normalize_phone(value, region)))
        except NormalizationError as exc:
            raise PrivacyError(f"not a valid phone number: {exc}") from None
    for value in source_ids:
        parts = value.strip().split("/", 2)
        if len(parts) != 3 or not all(parts):
            raise PrivacyError(
                "a source id is written connector/stream/external_id (e.g. shop/customers/cus_1)"
            )
        found.append(Identifier("source_id", source_id(*parts)))
    if not found:
        raise PrivacyError("name the subject by at least one --email, --phone or --source-id")
    return sorted(set(found))


def record_identifiers(
    connector: str, stream: str, external_id: str, data: Mapping[str, Any]
) -> list[Identifier]:
    """Every identifier a stored person record carries (its emails, phones and source id),
    the ones :meth:`crmhub.suppression.SuppressionList.suppressed` checks."""
    found = [Identifier("source_id", source_id(connector, stream, external_id))]
    found += [Identifier("email", e) for e in data.get("emails") or () if isinstance(e, str)]
    found += [Identifier("phone", p) for p in data.get("phones") or () if isinstance(p, str)]
    return found


def external_id_hash(secret: bytes, connector: str, external_id: str) -> str:
    """The keyed hash of a record's id in its system, as ledgers and tasks keep it."""
    return identifier_hash(secret, "external_id", f"{connector}:{external_id}")


def require_secret(secret: bytes | None) -> bytes:
    """The hub secret, which privacy requests cannot do without.

    Raises:
        PrivacyError: the hub has no secret configured.
    """
    if not secret:
        raise PrivacyError(
            "privacy requests need the hub secret that keys identifier hashes: "
            'set hub.secret = "env:CRMHUB_SECRET" in crmhub.toml'
        )
    return secret


def keyed_all(identifiers: Sequence[Identifier], secret: bytes) -> list[dict[str, str]]:
    """Each identifier as stored (kind and keyed hash), sorted and without repeats."""
    unique = {(i.kind, i.hash(secret)) for i in identifiers}
    return [{"kind": kind, "hash": digest} for kind, digest in sorted(unique)]

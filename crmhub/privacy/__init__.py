"""Privacy: GDPR erasure and access requests, from receipt to certificate.

- :mod:`~crmhub.privacy.requests`: requests, statuses, deadlines, duplicates;
- :mod:`~crmhub.privacy.identifiers`: the identifiers a subject is named by, kept as keyed
  hashes;
- :mod:`~crmhub.privacy.subject`: from identifiers to every source record of the subject;
- :mod:`~crmhub.privacy.ledger`: what an erasure removes where, hashes only, replayable;
- :mod:`~crmhub.privacy.erasure`: the deletion in the hub and the secure clean-up;
- :mod:`~crmhub.privacy.fanout`: one task per connected system, crash-safe, with retries;
- :mod:`~crmhub.privacy.export`: the access export;
- :mod:`~crmhub.privacy.certificate`: the PII-free certificate;
- :mod:`~crmhub.privacy.desk`: all of it as an officer works, for the CLI and the web.
"""

from crmhub.privacy.desk import ErasureOutcome, PrivacyDesk, Receipt, ReplayOutcome, RequestStatus
from crmhub.privacy.identifiers import Identifier, parse_identifiers
from crmhub.privacy.requests import STATUS_LABELS, PrivacyRequest
from crmhub.privacy.subject import Subject, SubjectRecord

__all__ = [
    "STATUS_LABELS",
    "ErasureOutcome",
    "Identifier",
    "PrivacyDesk",
    "PrivacyRequest",
    "Receipt",
    "ReplayOutcome",
    "RequestStatus",
    "Subject",
    "SubjectRecord",
    "parse_identifiers",
]

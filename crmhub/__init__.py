"""crmhub: a pluggable CRM integration and data-sync hub.

The public API for plugin authors and embedding applications.
"""

from __future__ import annotations

from crmhub.connector import (
    Change,
    Connector,
    ConnectorConfig,
    EraseResult,
    HttpConnectorConfig,
    Page,
    RecordProblem,
    Stream,
    WebhookDelivery,
    WriteResult,
)
from crmhub.hookspecs import hookimpl
from crmhub.model import Activity, Address, Consent, Customer, Person

__version__ = "0.1.0"

__all__ = [
    "Activity",
    "Address",
    "Change",
    "Connector",
    "ConnectorConfig",
    "Consent",
    "Customer",
    "EraseResult",
    "HttpConnectorConfig",
    "Page",
    "Person",
    "RecordProblem",
    "Stream",
    "WebhookDelivery",
    "WriteResult",
    "__version__",
    "hookimpl",
]

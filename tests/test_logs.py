"""Log lines never carry personal data: events are masked before they are written."""

from __future__ import annotations

import io

import orjson
import structlog

from crmhub.logs import configure_logging, mask_pii


def test_emails_and_phones_are_masked_in_any_field() -> None:
    event = mask_pii(
        None,
        "info",
        {
            "event": "oops ana@example.com called +44 7400 123456",
            "detail": {"nested": ["bo@example.org"], "count": 3},
            "email": "anything",
            "run_id": 7,
        },
    )
    text = str(event)
    assert "ana@example.com" not in text and "bo@example.org" not in text
    assert "7400 123456" not in text
    assert event["email"] == "***" and event["run_id"] == 7
    assert event["detail"]["count"] == 3


def test_configured_logger_writes_json_lines_without_pii() -> None:
    out = io.StringIO()
    configure_logging("info", stream=out, json=True)
    structlog.get_logger("t").info(
        "sync.page", run_id=1, first_name="Ana", note="reach ana@example.com"
    )
    line = orjson.loads(out.getvalue().strip())
    assert line["event"] == "sync.page" and line["run_id"] == 1
    assert "Ana" not in out.getvalue() and "ana@example.com" not in out.getvalue()

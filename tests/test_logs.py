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


def test_registered_names_are_masked_while_in_effect_and_only_as_whole_words() -> None:
    from crmhub.logs import sensitive

    event = {"event": "privacy.erased", "note": "called Era Quenby about it", "count": 2}
    with sensitive(["Era", "Quenby", ""]):
        masked = mask_pii(None, "info", dict(event))
    assert masked["note"] == "called *** *** about it"
    assert masked["event"] == "privacy.erased"  # "era" inside a word is left alone
    assert mask_pii(None, "info", dict(event))["note"] == event["note"]  # no longer in effect


def test_keys_naming_a_name_are_masked() -> None:
    masked = mask_pii(None, "info", {"event": "x", "display_name": "Ana B", "connector": "crm"})
    assert masked["display_name"] == "***" and masked["connector"] == "crm"

"""The matching and stewardship commands, end to end on a synced hub."""

from __future__ import annotations

import csv
import json
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from crmhub.cli.main import app


def _run(folder: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        app, ["--config", str(folder / "crmhub.toml"), *args], catch_exceptions=False
    )
    return result.exit_code, result.stdout if "--json" in args else result.output


ROWS = [
    # The same person three times (typo, nickname, other email), and two others.
    ("c1", "Robert", "Lindqvist", "rob.lindqvist@mailbox.org", "+44 20 7946 0101"),
    ("c2", "Bob", "Lindqvist", "rob.lindqvist@mailbox.org", "020 7946 0101"),
    ("c3", "Robert", "Lindkvist", "robert.l@fastmail.com", "+44 20 7946 0101"),
    ("c4", "Maria", "Okafor", "maria.okafor@mailbox.org", "+44 20 7946 0202"),
    ("c5", "Tomasz", "Wrobel", "t.wrobel@fastmail.com", "+44 20 7946 0303"),
]


@pytest.fixture
def hub(tmp_path: Path) -> Path:
    with (tmp_path / "people.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "first_name", "last_name", "email", "phone", "updated_at"])
        for row in ROWS:
            writer.writerow([*row, "2024-01-01T00:00:00Z"])
        writer.writerow(["c6", "", "", "", "", "2024-01-01T00:00:00Z"])  # nothing to match on
    (tmp_path / "crmhub.toml").write_text(
        textwrap.dedent("""
        [hub]
        database_url = "sqlite:///hub.db"
        default_region = "GB"

        [connectors.shop]
        type = "csv"
        path = "people.csv"
        cursor = "updated_at"
        mapping = "people_file"
    """)
    )
    code, _ = _run(tmp_path, "sync")
    assert code == 0
    return tmp_path


def _customer_of_email(hub: Path, email: str) -> dict[str, object]:
    code, out = _run(hub, "customers", "search", email, "--json")
    assert code == 0
    found = json.loads(out)
    assert len(found) == 1
    return found[0]


def test_sync_matches_and_customers_show_tells_the_whole_story(hub: Path) -> None:
    robert = _customer_of_email(hub, "rob.lindqvist@mailbox.org")
    code, out = _run(hub, "customers", "show", str(robert["id"]), "--json")
    assert code == 0
    view = json.loads(out)
    assert sorted(m["external_id"] for m in view["members"]) == ["c1", "c2", "c3"]
    emails = next(f for f in view["fields"] if f["field"] == "emails")
    assert set(emails["value"]) == {"rob.lindqvist@mailbox.org", "robert.l@fastmail.com"}
    assert emails["rule"] == "union"
    assert view["traits"]["members"] == 3
    code, out = _run(hub, "customers", "show", str(robert["id"]))
    assert code == 0
    for member in view["members"]:  # the table names every member and what it supplies
        assert f"{member['connector']}/{member['stream']}" in out
    assert "rob.lindqvist@mailbox.org" in out and "union" in out
    maria = _customer_of_email(hub, "maria.okafor@mailbox.org")
    assert maria["id"] != robert["id"]


def test_merge_unmerge_and_undo_from_the_command_line(hub: Path) -> None:
    maria = _customer_of_email(hub, "maria.okafor@mailbox.org")
    tomasz = _customer_of_email(hub, "t.wrobel@fastmail.com")
    code, out = _run(hub, "merge", str(maria["id"]), str(tomasz["id"]), "--json")
    assert code == 0
    merged = json.loads(out)
    code, out = _run(hub, "customers", "show", str(tomasz["id"]), "--json")
    assert json.loads(out)["id"] == maria["id"]  # the old id resolves
    record = next(m["record_id"] for m in json.loads(out)["members"] if m["external_id"] == "c5")
    code, out = _run(hub, "unmerge", str(maria["id"]), str(record), "--json")
    assert code == 0
    code, out = _run(hub, "undo", str(json.loads(out)["event_id"]))
    assert code == 0 and "undo" in out
    code, out = _run(hub, "undo", str(merged["event_id"]))
    assert code == 0
    assert _customer_of_email(hub, "t.wrobel@fastmail.com")["id"] == tomasz["id"]
    code, out = _run(hub, "undo", str(merged["event_id"]))
    assert code != 0 and "already undone" in out


def test_dedupe_full_is_stable_and_unknown_customers_fail_clearly(hub: Path) -> None:
    before = _customer_of_email(hub, "rob.lindqvist@mailbox.org")
    code, out = _run(hub, "dedupe", "--full", "--json")
    assert code == 0 and json.loads(out)["mode"] == "full"
    assert _customer_of_email(hub, "rob.lindqvist@mailbox.org")["id"] == before["id"]
    code, out = _run(hub, "customers", "show", "no-such-id")
    assert code == 1 and "no customer" in out
    code, out = _run(hub, "merge", "no-such-id", str(before["id"]))
    assert code != 0 and "no customer" in out


def test_dedupe_file_writes_clusters_and_pairs_and_keeps_bad_rows(tmp_path: Path) -> None:
    path = tmp_path / "import.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "first_name", "last_name", "email", "phone", "birth_date"])
        for row in ROWS:
            writer.writerow([*row, ""])
        writer.writerow(["c9", "Ada", "Byron", "ada@mailbox.org", "", "not a date"])
        writer.writerow(["c10", "", "", "", "", "1990-01-02"])  # nothing to match on
    out_dir = tmp_path / "out"
    code, out = _run(tmp_path, "dedupe", str(path), "--mapping", "people_file", "--out",
                     str(out_dir), "--region", "GB", "--json")  # fmt: skip
    assert code == 0, out
    report = json.loads(out)
    assert report["rows"] == 7 and report["unmapped"] == 1 and report["duplicate_rows"] == 3
    assert report["unmatchable"] == 1
    with (out_dir / "clusters.csv").open() as handle:
        clusters = list(csv.DictReader(handle))
    assert len(clusters) == 7  # every input row, the bad one included
    by_id = {row["id"]: row for row in clusters}
    assert by_id["c1"]["cluster"] == by_id["c2"]["cluster"] == by_id["c3"]["cluster"]
    assert by_id["c4"]["cluster"] != by_id["c1"]["cluster"]
    assert by_id["c9"]["cluster"] == "" and "birth_date" in by_id["c9"]["error"]
    with (out_dir / "pairs.csv").open() as handle:
        pairs = list(csv.DictReader(handle))
    assert pairs and all(float(p["probability"]) >= 0.6 for p in pairs)
    assert {"first_name", "emails", "phones"} <= set(pairs[0])

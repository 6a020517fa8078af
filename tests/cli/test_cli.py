"""The command line: what each command prints, and its exit codes (0 ok, 1 finished with
failures, 2 usage or configuration error)."""

from __future__ import annotations

import csv
import json
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from crmhub.cli.main import app


def _run(folder: Path, *args: str) -> tuple[int, str]:
    """Exit code and what the command printed; with --json, standard output alone (what a
    script reads), else standard output and error together."""
    result = CliRunner().invoke(
        app, ["--config", str(folder / "crmhub.toml"), *args], catch_exceptions=False
    )
    return result.exit_code, result.stdout if "--json" in args else result.output


@pytest.fixture
def hub(tmp_path: Path) -> Path:
    rows = [
        {
            "id": f"c{n}",
            "first_name": f"Ana{n}",
            "last_name": "Lovelace",
            "email": f"ana{n}@example.com",
            "updated_at": "2024-01-01T00:00:00Z",
        }
        for n in range(6)
    ]
    rows[2]["email"] = "no-at-sign"
    with (tmp_path / "people.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
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
    return tmp_path


def test_init_writes_a_commented_config_and_migrates_a_new_hub(tmp_path: Path) -> None:
    code, output = _run(tmp_path, "init", str(tmp_path / "new"))
    assert code == 0, output
    config = (tmp_path / "new" / "crmhub.toml").read_text()
    assert "env:" in config and "# " in config
    assert (tmp_path / "new" / "crmhub.db").exists()
    assert "(created)" in output
    code, output = _run(tmp_path, "init", str(tmp_path / "new"))
    assert code == 0 and "keeping it" in output


def test_connectors_list_shows_streams_and_capabilities(hub: Path) -> None:
    code, output = _run(hub, "connectors", "list", "--json")
    assert code == 0
    connectors = {c["name"]: c for c in json.loads(output)["connectors"]}
    assert connectors["csv"]["capabilities"] == ["read", "write", "erase"]


def test_sync_reports_counts_and_exits_zero_when_only_records_were_quarantined(
    hub: Path,
) -> None:
    code, output = _run(hub, "sync", "--json")
    assert code == 0, output
    [stream] = json.loads(output)
    assert (stream["inserted"], stream["quarantined"], stream["status"]) == (5, 1, "succeeded")
    code, output = _run(hub, "sync")
    assert code == 0 and "shop/people" in output


def test_dry_run_stores_nothing(hub: Path) -> None:
    code, output = _run(hub, "sync", "--dry-run", "--json")
    assert code == 0 and json.loads(output)[0]["inserted"] == 5
    code, output = _run(hub, "runs", "--json")
    assert json.loads(output) == []


def test_runs_and_quarantine_commands_show_what_happened(hub: Path) -> None:
    _run(hub, "sync")
    code, output = _run(hub, "runs", "--json")
    [run] = json.loads(output)
    assert (run["status"], run["inserted"], run["quarantined"]) == ("succeeded", 5, 1)
    code, output = _run(hub, "quarantine", "list", "--json")
    [row] = json.loads(output)
    assert row["external_id"] == "c2" and "email" in row["errors"][0]
    code, output = _run(hub, "quarantine", "show", str(row["id"]))
    assert code == 0 and "no-at-sign" in output  # the steward sees the raw record
    code, output = _run(hub, "quarantine", "retry")
    assert code == 1 and "1 still failing" in output  # the data is still wrong


def test_a_failing_stream_exits_one(hub: Path) -> None:
    (hub / "people.csv").unlink()
    code, output = _run(hub, "sync")
    assert code == 1
    assert "failed" in output


def test_config_errors_exit_two_and_name_the_key(hub: Path) -> None:
    config = hub / "crmhub.toml"
    config.write_text(config.read_text().replace('type = "csv"', 'type = "cvs"'))
    code, output = _run(hub, "sync")
    assert code == 2
    assert "[connectors.shop] unknown connector type 'cvs'" in output


def test_an_unknown_connector_name_exits_two(hub: Path) -> None:
    code, output = _run(hub, "sync", "nope")
    assert code == 2 and "no connector named 'nope'" in output


def test_a_missing_config_file_exits_two(tmp_path: Path) -> None:
    code, output = _run(tmp_path, "sync")
    assert code == 2 and "crmhub init" in output


def test_a_database_that_cannot_be_opened_exits_two(hub: Path) -> None:
    config = hub / "crmhub.toml"
    config.write_text(
        config.read_text().replace("sqlite:///hub.db", "sqlite:////no/such/dir/hub.db")
    )
    code, output = _run(hub, "sync")
    assert code == 2 and "does not exist" in output


def test_connectors_check_exits_one_for_a_broken_connector(hub: Path) -> None:
    assert _run(hub, "connectors", "check")[0] == 0
    (hub / "people.csv").unlink()
    code, output = _run(hub, "connectors", "check")
    assert code == 1 and "shop" in output

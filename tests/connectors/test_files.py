"""Tests of the ``csv`` and ``jsonl`` file connectors (crmhub.connectors.files)."""

from __future__ import annotations

import importlib
import importlib.util
import io
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from crmhub.connector import Change, Page
from crmhub.errors import FatalError


def _load() -> ModuleType:
    # Until the package is installed, `connectors/` is not yet `crmhub.connectors`.
    try:
        return importlib.import_module("crmhub.connectors.files")
    except ModuleNotFoundError:
        path = Path(__file__).resolve().parents[2] / "connectors" / "files.py"
        spec = importlib.util.spec_from_file_location("crmhub.connectors.files", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        return module


files = _load()

CSV_TEXT = "id,email,updated_at\n1,a@x.org,2024-01-01T00:00:00Z\n2,b@x.org,2024-02-01\n"


def csv_connector(path: Path, **settings_: Any) -> Any:
    return files.CsvConnector(files.CsvConfig(path=path, **settings_), name="leads")


def jsonl_connector(path: Path, **settings_: Any) -> Any:
    return files.JsonlConnector(files.JsonlConfig(path=path, **settings_), name="events")


def read_all(connector: Any, state: dict[str, Any] | None = None) -> list[Page]:
    return list(connector.read(connector.config.stream, state))


def records(pages: list[Page]) -> list[dict[str, Any]]:
    return [record for page in pages for record in page.records]


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(row) + b"\n" for row in rows))
    return path


# --- reading -------------------------------------------------------------------------------


def test_csv_file_reads_rows_as_string_dicts_keyed_by_header(tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_text(CSV_TEXT, encoding="utf-8")
    pages = read_all(csv_connector(path))
    assert records(pages) == [
        {"id": "1", "email": "a@x.org", "updated_at": "2024-01-01T00:00:00Z"},
        {"id": "2", "email": "b@x.org", "updated_at": "2024-02-01"},
    ]
    assert pages[-1].records == [] and pages[-1].state == {} and pages[-1].progress == 1.0


def test_csv_bom_and_custom_delimiter_are_handled(tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_bytes("\ufeffid;name\n1;Zoë\n".encode())
    assert records(read_all(csv_connector(path, delimiter=";"))) == [{"id": "1", "name": "Zoë"}]


def test_jsonl_file_reads_lines_as_parsed_objects(tmp_path: Path) -> None:
    rows = [{"id": 1, "tags": ["a"], "n": None}, {"id": "2", "nested": {"x": 1.5}}]
    path = write_jsonl(tmp_path / "events.jsonl", rows)
    assert records(read_all(jsonl_connector(path))) == rows


def test_folder_reads_matching_files_in_name_order_ignoring_others(tmp_path: Path) -> None:
    (tmp_path / "b.csv").write_text("id\n3\n4\n")
    (tmp_path / "a.csv").write_text("id\n1\n2\n")
    (tmp_path / "notes.txt").write_text("id\n99\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.csv").write_text("id\n98\n")
    pages = read_all(csv_connector(tmp_path))
    assert [r["id"] for r in records(pages)] == ["1", "2", "3", "4"]


def test_folder_of_jsonl_files_reads_them_in_name_order(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "2.jsonl", [{"id": 2}])
    write_jsonl(tmp_path / "1.jsonl", [{"id": 1}])
    assert [r["id"] for r in records(read_all(jsonl_connector(tmp_path)))] == [1, 2]


def test_pages_hold_at_most_page_size_items_and_end_with_an_empty_final_page(
    tmp_path: Path,
) -> None:
    path = write_jsonl(tmp_path / "e.jsonl", [{"id": i} for i in range(7)])
    pages = read_all(jsonl_connector(path, page_size=3))
    assert [len(p.records) for p in pages] == [3, 3, 1, 0]
    assert all("pass" in p.state for p in pages[:-1]) and pages[-1].state == {}
    progress = [p.progress for p in pages]
    assert progress == sorted(progress) and progress[-1] == 1.0


def test_empty_and_header_only_files_yield_nothing(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("")
    (tmp_path / "b.csv").write_text("id,email\n\n")
    pages = read_all(csv_connector(tmp_path))
    assert records(pages) == [] and [p.problems for p in pages] == [[]]


def test_blank_lines_are_skipped(tmp_path: Path) -> None:
    (tmp_path / "p.csv").write_text("\nid\n\n1\n  \n2\n")
    (tmp_path / "e.jsonl").write_text('\n{"id": 1}\n   \n\r\n{"id": 2}\n')
    assert [r["id"] for r in records(read_all(csv_connector(tmp_path / "p.csv")))] == ["1", "2"]
    assert [r["id"] for r in records(read_all(jsonl_connector(tmp_path / "e.jsonl")))] == [1, 2]


def test_quoted_newlines_in_csv_fields_stay_in_the_field(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_bytes(b'id,note\r\n1,"line one\r\nline two"\r\n2,"a ""quoted"" word"\r\n')
    assert records(read_all(csv_connector(path))) == [
        {"id": "1", "note": "line one\r\nline two"},
        {"id": "2", "note": 'a "quoted" word'},
    ]


def test_malformed_csv_rows_become_problems_with_location_and_raw_text(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text('id,name\n1,Ann\n2,Bob,extra\n3,"multi\nline",x\n4\n5,Eve\n')
    pages = read_all(csv_connector(path))
    assert [r["id"] for r in records(pages)] == ["1", "5"]
    problems = [p for page in pages for p in page.problems]
    assert [(p.location, p.raw) for p in problems] == [
        ("p.csv:3", "2,Bob,extra"),
        ("p.csv:4", '3,"multi\nline",x'),
        ("p.csv:6", "4"),
    ]
    assert "3 fields" in problems[0].reason and "Bob" not in problems[0].reason


def test_csv_parse_errors_become_problems_and_reading_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text("id,note\n1," + "x" * 200_000 + "\n2,ok\n")
    pages = read_all(csv_connector(path))
    assert records(pages) == [{"id": "2", "note": "ok"}]
    [problem] = [p for page in pages for p in page.problems]
    assert problem.location == "p.csv:2" and problem.raw.startswith("1,xxx")
    assert "xxx" not in problem.reason


def test_unparsable_csv_header_is_one_problem_and_its_file_is_skipped(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("id," + "h" * 200_000 + "\n1,2\n")
    (tmp_path / "b.csv").write_text("id\n3\n")
    pages = read_all(csv_connector(tmp_path))
    assert records(pages) == [{"id": "3"}]
    [problem] = [p for page in pages for p in page.problems]
    assert problem.location == "a.csv:1" and "file skipped" in problem.reason


def test_bad_jsonl_lines_become_problems_and_every_good_line_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "e.jsonl"
    path.write_bytes(b'{"id": 1}\nnot json\n[1, 2]\n"text"\n{"id": 2}\n{"id": \n')
    pages = read_all(jsonl_connector(path))
    assert records(pages) == [{"id": 1}, {"id": 2}]
    problems = [p for page in pages for p in page.problems]
    assert [(p.location, p.raw) for p in problems] == [
        ("e.jsonl:2", "not json"),
        ("e.jsonl:3", "[1, 2]"),
        ("e.jsonl:4", '"text"'),
        ("e.jsonl:6", '{"id": '),
    ]
    assert "array" in problems[1].reason


def test_invalid_utf8_is_replaced_not_fatal(tmp_path: Path) -> None:
    (tmp_path / "p.csv").write_bytes(b"id,name\n1,Jos\xe9\n")
    (tmp_path / "e.jsonl").write_bytes(b'{"id": 1, "name": "Jos\xe9"}\n')
    assert records(read_all(csv_connector(tmp_path / "p.csv")))[0]["name"] == "Jos\ufffd"
    assert records(read_all(jsonl_connector(tmp_path / "e.jsonl")))[0]["name"] == "Jos\ufffd"


def test_missing_primary_key_is_yielded_for_the_engine_to_quarantine(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "e.jsonl", [{"email": "a@x.org"}])
    assert records(read_all(jsonl_connector(path))) == [{"email": "a@x.org"}]


def test_deleted_field_puts_ids_in_deleted_not_records(tmp_path: Path) -> None:
    (tmp_path / "p.csv").write_text("id,gone\n1,\n2,yes\n3,TRUE\n4,0\n5,1\n")
    rows = [{"id": 1, "gone": True}, {"id": 2, "gone": False}, {"id": 3, "gone": "true"}]
    write_jsonl(tmp_path / "e.jsonl", rows)
    pages = read_all(csv_connector(tmp_path / "p.csv", deleted_field="gone"))
    assert [r["id"] for r in records(pages)] == ["1", "4"]
    assert [i for p in pages for i in p.deleted] == ["2", "3", "5"]
    pages = read_all(jsonl_connector(tmp_path / "e.jsonl", deleted_field="gone"))
    assert [r["id"] for r in records(pages)] == [2]
    assert [i for p in pages for i in p.deleted] == ["1", "3"]


# --- incremental reads and resuming --------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_incremental_read_yields_only_records_newer_than_the_cursor(
    tmp_path: Path, fmt: str
) -> None:
    stamps = ["2024-01-01T00:00:00Z", "2024-01-02", "1704326400", "2024-01-03T12:00:00+02:00"]
    path = tmp_path / f"p.{fmt}"

    def save(rows: list[tuple[int, str]]) -> None:
        if fmt == "csv":
            path.write_text("id,modified\n" + "".join(f"{i},{s}\n" for i, s in rows))
        else:
            write_jsonl(path, [{"id": i, "modified": s} for i, s in rows])

    connector = (csv_connector if fmt == "csv" else jsonl_connector)(path, cursor="modified")
    save(list(enumerate(stamps)))
    first = read_all(connector)
    assert len(records(first)) == 4
    state = first[-1].state
    assert state == {"cursor": "2024-01-04T00:00:00Z"}  # epoch 1704326400, the latest
    assert records(read_all(connector, state)) == []
    save([*enumerate(stamps), (4, "2024-01-05T00:00:00Z"), (5, "not a date")])
    later = read_all(connector, state)
    assert [str(r["id"]) for r in records(later)] == ["4", "5"]  # unparsable: always yielded
    assert later[-1].state == {"cursor": "2024-01-05T00:00:00Z"}


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_state_from_the_far_future_yields_nothing_and_keeps_the_cursor(
    tmp_path: Path, fmt: str
) -> None:
    path = tmp_path / f"p.{fmt}"
    path.write_text(CSV_TEXT)
    if fmt == "jsonl":
        write_jsonl(path, [{"id": 1, "updated_at": "2024-01-01T00:00:00Z"}])
    connector = (csv_connector if fmt == "csv" else jsonl_connector)(path, cursor="updated_at")
    pages = read_all(connector, {"cursor": "9999-01-01T00:00:00Z"})
    assert records(pages) == []
    assert pages[-1].state == {"cursor": "9999-01-01T00:00:00Z"}


def _resume_fixture(tmp_path: Path, fmt: str) -> Any:
    rows = [(i, f"2024-01-{1 + i % 28:02d}T00:00:00Z") for i in range(23)]
    if fmt == "csv":
        for part, chunk in enumerate((rows[:9], rows[9:10], rows[10:])):
            body = "".join(f'{i},"note\nfor {i}",{s}\n' for i, s in chunk)
            (tmp_path / f"part{part}.csv").write_text("id,note,modified\n" + body)
        (tmp_path / "part1.csv").write_text((tmp_path / "part1.csv").read_text() + "broken,row\n")
        return csv_connector(tmp_path, cursor="modified", page_size=4)
    for part, chunk in enumerate((rows[:9], rows[9:10], rows[10:])):
        write_jsonl(tmp_path / f"part{part}.jsonl", [{"id": i, "modified": s} for i, s in chunk])
    return jsonl_connector(tmp_path, cursor="modified", page_size=4)


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
@pytest.mark.parametrize("resume_after", [1, 2, 3, 5])
def test_resume_from_a_mid_pass_state_continues_exactly_where_it_stopped(
    tmp_path: Path, fmt: str, resume_after: int
) -> None:
    connector = _resume_fixture(tmp_path, fmt)
    full = read_all(connector)
    state = full[resume_after - 1].state
    assert state is not None and "pass" in state
    resumed = read_all(connector, state)
    assert records(full[:resume_after]) + records(resumed) == records(full)
    problems = [(p.location, p.raw) for page in full for p in page.problems]
    again = [(p.location, p.raw) for page in full[:resume_after] + resumed for p in page.problems]
    assert again == problems  # locations stay right after a resume
    assert resumed[-1].state == full[-1].state == {"cursor": "2024-01-23T00:00:00Z"}


def test_resume_keeps_the_threshold_of_the_interrupted_pass(tmp_path: Path) -> None:
    rows = [{"id": i, "modified": f"2024-01-{1 + i:02d}"} for i in range(10)]
    path = write_jsonl(tmp_path / "e.jsonl", rows)
    connector = jsonl_connector(path, cursor="modified", page_size=2)
    full = read_all(connector, {"cursor": "2024-01-03T00:00:00Z"})
    assert [r["id"] for r in records(full)] == list(range(3, 10))
    resumed = read_all(connector, full[0].state)
    assert [r["id"] for r in records(resumed)] == list(range(5, 10))
    assert resumed[-1].state == {"cursor": "2024-01-10T00:00:00Z"}


def test_resume_rereads_a_file_that_shrank_since_the_state_was_saved(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "e.jsonl", [{"id": i} for i in range(10)])
    connector = jsonl_connector(path, page_size=4)
    state = read_all(connector)[1].state
    write_jsonl(path, [{"id": 0}])
    assert records(read_all(connector, state)) == [{"id": 0}]


# --- check ---------------------------------------------------------------------------------


def test_check_fails_clearly_for_a_missing_path(tmp_path: Path) -> None:
    with pytest.raises(FatalError, match=r"leads: .*nowhere\.csv does not exist"):
        csv_connector(tmp_path / "nowhere.csv").check()


def test_check_fails_for_a_folder_without_matching_files(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("id\n1\n")
    with pytest.raises(FatalError, match=r"no files matching '\*\.jsonl'"):
        jsonl_connector(tmp_path).check()


def test_check_names_file_and_column_when_the_header_lacks_the_primary_key(
    tmp_path: Path,
) -> None:
    (tmp_path / "a.csv").write_text("email,name\nx@y.z,X\n")
    with pytest.raises(FatalError, match=r"a\.csv: .*'id' \(setting `primary_key`\).*email, name"):
        csv_connector(tmp_path).check()
    with pytest.raises(FatalError, match=r"'changed' \(setting `cursor`\)"):
        csv_connector(tmp_path, primary_key="email", cursor="changed").check()
    csv_connector(tmp_path, primary_key="email").check()


def test_config_rejects_bad_page_size_delimiter_and_encoding(tmp_path: Path) -> None:
    for bad in (
        {"page_size": 0},
        {"page_size": 100_001},
        {"delimiter": ";;"},
        {"encoding": "utf-16"},
        {"encoding": "nope"},
        {"unknown": 1},
    ):
        with pytest.raises(ValidationError):
            files.CsvConfig(path=tmp_path, **bad)
    for bad in ({"delimiter": ";"}, {"encoding": "latin-1"}):
        with pytest.raises(ValidationError):
            files.JsonlConfig(path=tmp_path, **bad)
    assert files.CsvConfig(path=tmp_path, encoding="cp1252", delimiter="\t").page_size == 1000


def test_stream_is_named_and_keyed_by_the_settings(tmp_path: Path) -> None:
    connector = csv_connector(
        tmp_path, stream="deals", kind="activity", primary_key="deal_id", cursor="changed"
    )
    assert connector.stream_names() == ["deals"]
    stream = connector.stream("deals")
    assert (stream.primary_key, stream.cursor, stream.kind) == ("deal_id", "changed", "activity")
    assert files.CsvConnector.streams and files.CsvConnector.capabilities() == (
        "read",
        "write",
        "erase",
    )


def test_module_registers_both_connectors() -> None:
    registered: list[type[Any]] = []
    files.register_connectors(registered.append)
    assert [c.name for c in registered] == ["csv", "jsonl"]


# --- write and erase -----------------------------------------------------------------------


def _changes() -> list[Change]:
    return [
        Change(external_id="1", fields={"email": "a@x.org"}, idempotency_key="k1"),
        Change(
            external_id=None, fields={"email": "b@x.org", "tags": ["v", "w"]}, idempotency_key="k2"
        ),
    ]


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_write_is_idempotent_same_changes_twice_give_rows_once(tmp_path: Path, fmt: str) -> None:
    out = tmp_path / f"out.{fmt}"
    make = csv_connector if fmt == "csv" else jsonl_connector
    first = list(make(tmp_path, output=out).write("people", _changes()))
    second = list(make(tmp_path, output=out).write("people", _changes()))  # a fresh instance
    assert [r.ok for r in first + second] == [True] * 4
    assert [r.idempotency_key for r in second] == ["k1", "k2"]
    if fmt == "csv":
        assert out.read_bytes() == (
            b"external_id,idempotency_key,email,tags\r\n1,k1,a@x.org,\r\n"
            b',k2,b@x.org,"[""v"",""w""]"\r\n'
        )
    else:
        assert [orjson.loads(line) for line in out.read_bytes().splitlines()] == [
            {"external_id": "1", "idempotency_key": "k1", "email": "a@x.org"},
            {"external_id": None, "idempotency_key": "k2", "email": "b@x.org", "tags": ["v", "w"]},
        ]


def test_csv_write_appends_under_the_existing_header_and_fails_unknown_columns(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out.csv"
    connector = csv_connector(tmp_path, output=out)
    list(connector.write("people", _changes()[:1]))
    results = list(
        connector.write(
            "people",
            [
                Change(external_id="3", fields={"email": "c@x.org"}, idempotency_key="k3"),
                Change(external_id="4", fields={"phone": "+1"}, idempotency_key="k4"),
            ],
        )
    )
    assert [r.ok for r in results] == [True, False] and "phone" in (results[1].error or "")
    assert out.read_text().splitlines() == [
        "external_id,idempotency_key,email",
        "1,k1,a@x.org",
        "3,k3,c@x.org",
    ]


def test_write_without_output_is_fatal(tmp_path: Path) -> None:
    with pytest.raises(FatalError, match="set `output`"):
        list(jsonl_connector(tmp_path).write("people", _changes()))


def test_csv_write_refuses_an_output_that_is_not_its_own(tmp_path: Path) -> None:
    out = tmp_path / "people.csv"
    out.write_text(CSV_TEXT)
    with pytest.raises(FatalError, match="no idempotency_key column"):
        list(csv_connector(tmp_path, output=out).write("people", _changes()))


def test_csv_erase_removes_rows_and_counts_already_gone_ids(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_bytes(b'\xef\xbb\xbfid,note\r\n1,"x\r\ny"\r\n2,keep \xff\r\n')
    (tmp_path / "b.csv").write_text("id,note\n3,z\n1,again\n")
    connector = csv_connector(tmp_path)
    results = list(connector.erase(["1", "3", "9"]))
    assert [(r.external_id, r.status) for r in results] == [
        ("1", "erased"),
        ("3", "erased"),
        ("9", "already_gone"),
    ]
    assert (tmp_path / "a.csv").read_bytes() == b"\xef\xbb\xbfid,note\r\n2,keep \xff\r\n"
    assert (tmp_path / "b.csv").read_text() == "id,note\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv", "b.csv"]  # no temp files
    assert [r.status for r in connector.erase(["1"])] == ["already_gone"]


def test_jsonl_erase_removes_lines_and_keeps_the_rest_byte_for_byte(tmp_path: Path) -> None:
    path = tmp_path / "e.jsonl"
    path.write_bytes(b'{"id": 1}\nnot json\n{"id":2,  "x":1}\n{"id": "1"}\n')
    results = list(jsonl_connector(path).erase(["1", "7"]))
    assert [r.status for r in results] == ["erased", "already_gone"]
    assert path.read_bytes() == b'not json\n{"id":2,  "x":1}\n'


# --- arbitrary input -----------------------------------------------------------------------

_BYTES = st.lists(
    st.one_of(
        st.binary(max_size=12),
        st.sampled_from(
            [b"\n", b"\r\n", b"\x00", b"\xff\xfe", b'{"id": 1}', b"[]", b",", b'"', b"\xef\xbb\xbf"]
        ),
    ),
    max_size=25,
).map(b"".join)

_FUZZ = settings(
    max_examples=100, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)


def _lines(data: bytes) -> list[bytes]:
    lines = io.BytesIO(data.removeprefix(b"\xef\xbb\xbf")).readlines()
    return [line for line in lines if line.strip()]


@_FUZZ
@given(data=_BYTES, page_size=st.integers(1, 4))
def test_jsonl_read_of_arbitrary_bytes_never_raises_and_accounts_for_every_line(
    data: bytes, page_size: int
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "e.jsonl"
        path.write_bytes(data)
        pages = read_all(jsonl_connector(path, page_size=page_size))
        seen = sum(len(p.records) + len(p.problems) for p in pages)
        assert seen == len(_lines(data))
        assert all(len(p.records) + len(p.problems) <= page_size for p in pages)


@_FUZZ
@given(data=_BYTES, page_size=st.integers(1, 4))
def test_csv_read_of_arbitrary_bytes_never_raises_and_resumes_losslessly(
    data: bytes, page_size: int
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "p.csv"
        path.write_bytes(b"id,name\n" + data)
        connector = csv_connector(path, page_size=page_size)
        full = read_all(connector)
        assert all(len(p.records) + len(p.problems) <= page_size for p in full)
        if b'"' not in data:  # without quotes, each non-blank line is one row
            text = data.decode("utf-8", "replace")
            rows = [ln for ln in io.StringIO(text, newline="").readlines() if ln.strip()]
            assert sum(len(p.records) + len(p.problems) for p in full) == len(rows)
        for cut, page in enumerate(full[:-1], start=1):
            resumed = read_all(connector, page.state)
            assert records(full[:cut]) + records(resumed) == records(full)

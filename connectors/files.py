"""The ``csv`` and ``jsonl`` connectors: read records from files or folders, append changes
to an output file, erase rows for privacy requests.

Reads are streamed (never a whole file in memory), resumable and crash-safe: each page's
state names the file and the byte offset just after its last record, so a rerun after a
kill continues there instead of starting over, and with a ``cursor`` column a finished pass
leaves a high-water mark so the next sync yields only newer records::

    [connectors.leads]
    type = "csv"
    path = "exports/leads"          # a file, or a folder of *.csv read in name order
    cursor = "updated_at"
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, ClassVar, Literal

import orjson
from pydantic import Field, field_validator

from crmhub.connector import (
    Change,
    Connector,
    ConnectorConfig,
    EraseResult,
    Page,
    RecordProblem,
    Stream,
    WriteResult,
)
from crmhub.errors import FatalError
from crmhub.hookspecs import hookimpl

__all__ = ["CsvConfig", "CsvConnector", "FilesConfig", "JsonlConfig", "JsonlConnector"]

UTC = UTC
_BOM = codecs.BOM_UTF8
_TRUTHY = frozenset({"1", "true", "yes"})
_POSITION_MASK = (1 << 64) - 1  # a text-file tell() cookie keeps the byte position here
_JSON_KINDS = {list: "an array", str: "a string", int: "a number", float: "a number",
               bool: "a boolean", type(None): "null"}  # fmt: skip


def _plain(encoding: str) -> str:
    """The codec to write with: "utf-8-sig" reads past a BOM but must not write one."""
    name = codecs.lookup(encoding).name
    return "utf-8" if name == "utf-8-sig" else name


class FilesConfig(ConnectorConfig):
    """Settings shared by the ``csv`` and ``jsonl`` connectors (see the module docstring)."""

    path: Path
    pattern: str = "*"
    stream: str = "people"
    kind: Literal["person", "activity"] = "person"
    primary_key: str = "id"
    cursor: str | None = None
    deleted_field: str | None = None
    page_size: int = Field(1000, ge=1, le=100_000)
    encoding: str = "utf-8-sig"
    output: Path | None = None

    @field_validator("encoding")
    @classmethod
    def _ascii_compatible(cls, value: str) -> str:
        # Offsets are byte offsets and lines are split on b"\n": that needs an encoding in
        # which ASCII bytes mean ASCII characters (UTF-8, Latin-1, cp1252, ... not UTF-16).
        sample = '\n\r,;\t"{}'
        try:
            codecs.lookup(value)
            ok = sample.encode("ascii").decode(value) == sample
        except (LookupError, UnicodeDecodeError):
            ok = False
        if not ok:
            raise ValueError(f"{value!r} is not a known ASCII-compatible encoding")
        return value


class CsvConfig(FilesConfig):
    """Settings of the ``csv`` connector."""

    pattern: str = "*.csv"
    delimiter: str = ","

    @field_validator("delimiter")
    @classmethod
    def _one_character(cls, value: str) -> str:
        if len(value) != 1 or value in '\r\n"':
            raise ValueError("must be one character other than a quote or a line break")
        return value


class JsonlConfig(FilesConfig):
    """Settings of the ``jsonl`` connector."""

    pattern: str = "*.jsonl"

    @field_validator("encoding")
    @classmethod
    def _utf8(cls, value: str) -> str:
        if _plain(value) != "utf-8":  # RFC 8259: JSON exchanged between systems is UTF-8
            raise ValueError("JSON Lines files are UTF-8: use 'utf-8' or 'utf-8-sig'")
        return value


def _from_epoch(seconds: float) -> datetime | None:
    try:
        if abs(seconds) >= 1e11:  # beyond year 5138 as seconds: the source counts milliseconds
            seconds /= 1000
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _to_utc(value: Any) -> datetime | None:
    """An aware datetime for a cursor value (ISO-8601, date, epoch seconds), None if unusable."""
    if isinstance(value, str):
        try:  # the common case first: one C call, no copies
            found = datetime.fromisoformat(value)
        except ValueError:
            return _to_utc_slowly(value)
        return found.replace(tzinfo=UTC) if found.tzinfo is None else found
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _from_epoch(value)
    return None


def _to_utc_slowly(value: str) -> datetime | None:
    text = value.strip()
    if text.isdigit() and text.isascii():
        if len(text) == 8:  # YYYYMMDD, as Python 3.11's fromisoformat reads it
            with contextlib.suppress(ValueError):
                return datetime.strptime(text, "%Y%m%d").replace(tzinfo=UTC)
        return _from_epoch(int(text))
    if text[-1:] in ("Z", "z"):  # fromisoformat learnt "Z" only in Python 3.11
        text = text[:-1] + "+00:00"
    try:
        found = datetime.fromisoformat(text)
    except ValueError:
        try:
            return _from_epoch(float(text))
        except ValueError:
            return None
    return found.replace(tzinfo=UTC) if found.tzinfo is None else found


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in _TRUTHY
    return value is True or (type(value) in (int, float) and value == 1)


def _cell(value: Any) -> str:
    """A CSV cell for a field value: JSON text for lists and objects, ISO text for dates."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    return orjson.dumps(value, default=str).decode()


class _Page:
    """The page being filled, shared between :meth:`read` and the per-file scanners."""

    __slots__ = ("deleted", "file", "high", "line", "offset", "problems", "records", "room",
                 "since", "size")  # fmt: skip

    def __init__(self, size: int, since: datetime | None, high: datetime | None) -> None:
        self.size, self.since, self.high = size, since, high
        self.file, self.offset, self.line = "", 0, 0
        self.records: list[dict[str, Any]] = []
        self.deleted: list[str] = []
        self.problems: list[RecordProblem] = []
        self.room = size

    def take(self) -> tuple[list[dict[str, Any]], list[str], list[RecordProblem]]:
        """Copies of the lists, which are then emptied in place: scanners keep them in locals."""
        taken = (self.records.copy(), self.deleted.copy(), self.problems.copy())
        self.records.clear()
        self.deleted.clear()
        self.problems.clear()
        self.room = self.size
        return taken

    def mark(self, file: str, offset: int, line: int) -> None:
        self.file, self.offset, self.line = file, offset, line


class _RawLines:
    """Recovers the raw text of rows that failed, by following a second handle on the file
    only once a problem occurs, so that good rows pay nothing for it."""

    def __init__(self, path: Path, encoding: str, offset: int, line: int) -> None:
        self._file = open(path, encoding=encoding, errors="replace", newline="")  # noqa: SIM115
        self._file.seek(offset)
        self._line = line

    def get(self, first: int, last: int) -> str:
        while self._line < first - 1:
            self._file.readline()
            self._line += 1
        parts = [self._file.readline() for _ in range(max(last - self._line, 0))]
        self._line = max(last, self._line)
        return "".join(parts).rstrip("\r\n")

    def close(self) -> None:
        self._file.close()


class _FilesConnector(Connector):
    """What the ``csv`` and ``jsonl`` connectors share: files, state, write and erase."""

    config: FilesConfig
    streams: ClassVar[dict[str, Stream]] = {
        "records": Stream(
            primary_key="id", description="one stream per instance, named by `stream`"
        )
    }
    default_mapping = "people_file"
    join_pages = False  # `page_size` is the unit of work the user chose: one commit each

    def __init__(self, config: ConnectorConfig, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        # Keys already in the output, reused while the file is as we left it (size, mtime).
        self._known: tuple[int, int, set[str]] | None = None

    def stream_names(self) -> list[str]:
        """The single stream of this instance, named by ``config.stream``."""
        return [self.config.stream]

    def stream(self, name: str) -> Stream:
        """The declaration of this instance's stream, built from its settings."""
        if name != self.config.stream:
            raise KeyError(name)
        cfg = self.config
        return Stream(primary_key=cfg.primary_key, cursor=cfg.cursor, kind=cfg.kind)

    def _files(self) -> list[tuple[str, Path]]:
        """(name, path) of every file to read, in name order."""
        path = self.config.path
        if path.is_dir():
            found = [p for p in path.glob(self.config.pattern) if p.is_file()]
            return sorted(((p.name, p) for p in found), key=lambda item: item[0])
        if path.is_file():
            return [(path.name, path)]
        raise FatalError(f"{path} does not exist", connector=self.instance_name)

    def check(self) -> None:
        """Verify the path exists and is readable, and (CSV) that the columns exist.

        Raises:
            FatalError: naming the path, file or column that is wrong.
        """
        files = self._files()
        if not files:
            raise FatalError(
                f"folder {self.config.path} has no files matching {self.config.pattern!r}",
                connector=self.instance_name,
            )
        for name, path in files:
            if not os.access(path, os.R_OK):
                raise FatalError(f"{name} is not readable", connector=self.instance_name)
        self._check_first_file(*files[0])

    def _check_first_file(self, name: str, path: Path) -> None:
        """Format-specific checks of the first file (nothing by default)."""

    def _scan(self, name: str, path: Path, offset: int, line: int, page: _Page) -> Iterator[None]:
        """Fill ``page`` from one file, yielding each time it is full."""
        raise NotImplementedError

    def read(self, stream: str, state: dict[str, Any] | None) -> Iterator[Page]:
        """Yield pages of raw records, resuming a pass that ``state`` says was interrupted.

        Args:
            stream: the instance's stream name.
            state: the state of the last committed page, or None for a full read.

        Yields:
            Pages of at most ``page_size`` records, deletions and problems, then a final
            empty page whose state holds the new cursor high-water mark.
        """
        cfg = self.config
        if stream != cfg.stream:
            raise FatalError(
                f"unknown stream {stream!r} (this instance reads {cfg.stream!r})",
                connector=self.instance_name,
            )
        state = state or {}
        previous = state.get("cursor") if cfg.cursor else None
        running = state.get("pass")
        if isinstance(running, dict):
            since, high = _to_utc(running.get("since")), _to_utc(running.get("max"))
            start = str(running.get("file", ""))
            offset, line = int(running.get("offset") or 0), int(running.get("line") or 0)
        else:
            since, high, start, offset, line = _to_utc(previous), None, "", 0, 0
        if not cfg.cursor:
            since = high = None
        files = [(name, path, path.stat().st_size) for name, path in self._files()]
        total = sum(size for _, _, size in files) or 1
        page = _Page(cfg.page_size, since, high)
        done = 0

        def emit(final: bool = False) -> Page:
            new_state: dict[str, Any]
            if final:
                ends = [d for d in (_to_utc(previous), page.high) if d is not None]
                new_state = {"cursor": _iso(max(ends))} if cfg.cursor and ends else {}
            else:
                new_state = {
                    "pass": {
                        "since": _iso(since),
                        "max": _iso(page.high),
                        "file": page.file,
                        "offset": page.offset,
                        "line": page.line,
                    }
                }
                if previous is not None:
                    new_state["cursor"] = previous
            progress = 1.0 if final else min(1.0, (done + page.offset) / total)
            records, deleted, problems = page.take()
            return Page(
                records=records,
                state=new_state,
                deleted=deleted,
                problems=problems,
                progress=progress,
            )

        for name, path, size in files:
            if name < start:
                done += size
                continue
            at, at_line = (offset, line) if name == start else (0, 0)
            if (at & _POSITION_MASK) > size:  # the file was replaced since: read it again
                at, at_line = 0, 0
            try:
                for _ in self._scan(name, path, at, at_line, page):
                    yield emit()
            except FileNotFoundError:
                continue  # deleted since it was listed: nothing left to read in it
            except OSError as exc:
                raise FatalError(
                    f"cannot read {name}: {exc.strerror or exc}", connector=self.instance_name
                ) from exc
            done += size
            if page.room <= 0:  # a problem outside the row loop filled the page
                yield emit()
        if page.room < page.size:
            yield emit()
        yield emit(final=True)

    def _output(self) -> Path:
        if self.config.output is None:
            raise FatalError(
                "cannot write: set `output` to the file changes are appended to",
                connector=self.instance_name,
            )
        return self.config.output

    def accepts_writes(self) -> bool:
        """Pushes are appended to ``output``: without one, this instance takes none."""
        return self.config.output is not None

    def write(self, stream: str, changes: Iterable[Change]) -> Iterator[WriteResult]:
        """Append changes to ``config.output``, skipping idempotency keys already there.

        Results are yielded only once the file is flushed and fsynced.

        Raises:
            FatalError: if no ``output`` is configured or it is not one of our files.
        """
        output = self._output()
        output.parent.mkdir(parents=True, exist_ok=True)
        stat = output.stat() if output.exists() else None
        known, self._known = self._known, None  # stale if this call fails half-way
        if stat and known and known[:2] == (stat.st_size, stat.st_mtime_ns):
            seen = known[2]
        else:
            seen = self._read_keys(output) if stat and stat.st_size else set()
        results: list[WriteResult] = []
        todo: list[Change] = []
        for change in changes:
            if change.idempotency_key not in seen:
                seen.add(change.idempotency_key)
                todo.append(change)
            results.append(
                WriteResult(change.idempotency_key, ok=True, external_id=change.external_id)
            )
        failed = self._append(output, todo) if todo else {}
        if stat is None and output.exists():
            _fsync_folder(output.parent)  # make the new file's name durable too
        after = output.stat() if output.exists() else None
        self._known = (after.st_size, after.st_mtime_ns, seen - set(failed)) if after else None
        for result in results:
            error = failed.get(result.idempotency_key)
            yield (
                result
                if error is None
                else WriteResult(
                    result.idempotency_key, ok=False, external_id=result.external_id, error=error
                )
            )

    def _read_keys(self, output: Path) -> set[str]:
        raise NotImplementedError

    def _append(self, output: Path, changes: list[Change]) -> dict[str, str]:
        """Append changes; return the error of each change that could not be written."""
        raise NotImplementedError

    def erase(self, external_ids: Iterable[str]) -> Iterator[EraseResult]:
        """Rewrite every source file without the rows of these ids, atomically.

        Yields:
            ``erased`` for ids found, ``already_gone`` for the others, or ``failed``
            (retriable) for every id when a file could not be rewritten.
        """
        ids = list(dict.fromkeys(str(i) for i in external_ids))
        wanted, found, error = set(ids), set(), None
        for name, path in self._files():
            try:
                found |= self._rewrite(path, wanted)
            except OSError as exc:  # the id may be in that file: never report it gone
                error = f"could not rewrite {name}: {exc.strerror or exc}"
        for ext_id in ids:
            if error is not None:
                yield EraseResult(ext_id, "failed", error=error, retriable=True)
            else:
                yield EraseResult(ext_id, "erased" if ext_id in found else "already_gone")

    def _rewrite(self, path: Path, ids: set[str]) -> set[str]:
        """Rewrite ``path`` without the records of ``ids``; return the ids found in it."""
        raise NotImplementedError

    @staticmethod
    def _replace(path: Path, fill: Any) -> bool:
        """Write a temp file next to ``path`` with ``fill(binary_file)`` and, if it returns
        True, fsync it and move it over ``path``; the temp file never survives."""
        fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as out:
                if not fill(out):
                    return False
                out.flush()
                os.fsync(out.fileno())
            os.chmod(temp, path.stat().st_mode & 0o7777)
            os.replace(temp, path)
            _fsync_folder(path.parent)
            return True
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)


def _fsync_folder(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform can fsync a folder
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _csv_rows(reader: Iterator[list[str]]) -> Iterator[list[str] | None]:
    """Rows of a csv reader, None for a row it could not parse, stopping at the end."""
    while True:
        try:
            yield next(reader)
        except StopIteration:
            return
        except csv.Error:
            yield None


def _is_blank(row: list[str] | None) -> bool:
    return row is not None and (not row or (len(row) == 1 and not row[0].strip()))


class CsvConnector(_FilesConnector):
    """Reads CSV files with a header row; appends changes as rows; erases rows by id."""

    name = "csv"
    Config = CsvConfig
    config: CsvConfig
    description = "CSV files with a header row: a file or a folder, read incrementally"

    def _header(self, path: Path) -> list[str]:
        with open(path, encoding=self.config.encoding, errors="replace", newline="") as f:
            reader = csv.reader(iter(f.readline, ""), delimiter=self.config.delimiter)
            return next((r for r in _csv_rows(reader) if r and not _is_blank(r)), [])

    def _check_first_file(self, name: str, path: Path) -> None:
        cfg = self.config
        header = self._header(path)
        if not header:
            return  # an empty export is legal: it just has nothing to read yet
        for setting, column in (
            ("primary_key", cfg.primary_key),
            ("cursor", cfg.cursor),
            ("deleted_field", cfg.deleted_field),
        ):
            if column and column not in header:
                raise FatalError(
                    f"{name}: the header has no column {column!r} (setting `{setting}`); "
                    f"its columns are: {', '.join(header)}",
                    connector=self.instance_name,
                )

    def _scan(self, name: str, path: Path, offset: int, line: int, page: _Page) -> Iterator[None]:
        cfg, to_utc, fromiso = self.config, _to_utc, datetime.fromisoformat
        moment: datetime | None
        records, deleted, problems, room, size = (
            page.records,
            page.deleted,
            page.problems,
            page.room,
            page.size,
        )
        since, high = page.since, page.high
        raw: _RawLines | None = None
        with open(path, encoding=cfg.encoding, errors="replace", newline="") as f:
            reader = csv.reader(iter(f.readline, ""), delimiter=cfg.delimiter)
            try:
                header = next((r for r in _csv_rows(reader) if not _is_blank(r)), [])
                if header is None:  # unparsable header: no row of this file can be keyed
                    raw = _RawLines(path, cfg.encoding, 0, 0)
                    problems.append(
                        RecordProblem(
                            "the header row cannot be parsed as CSV; file skipped",
                            raw.get(1, reader.line_num),
                            f"{name}:1",
                        )
                    )
                    page.room = room - 1
                    page.mark(name, f.seek(0, os.SEEK_END), reader.line_num)
                    return
                base = 0
                if offset:  # resuming: the header is re-read above, then jump past the rows
                    f.seek(offset)
                    base = line - reader.line_num
                n = len(header)
                index = {column: i for i, column in enumerate(header)}
                ci = index.get(cfg.cursor) if cfg.cursor else None
                di = index.get(cfg.deleted_field) if cfg.deleted_field else None
                pi = index.get(cfg.primary_key) if di is not None else None
                prev = reader.line_num
                while True:
                    try:
                        for row in reader:
                            start, prev = prev + 1, reader.line_num
                            if len(row) == n and (n > 1 or row[0].strip()):
                                if ci is not None:
                                    try:  # inlined fast path of _to_utc: a call per row less
                                        moment = fromiso(row[ci])
                                        if moment.tzinfo is None:
                                            moment = moment.replace(tzinfo=UTC)
                                    except ValueError:
                                        moment = to_utc(row[ci])
                                    if moment is not None:
                                        if since is not None and moment <= since:
                                            continue
                                        if high is None or moment > high:
                                            high = moment
                                if (
                                    pi is not None
                                    and di is not None
                                    and row[pi]
                                    and _truthy(row[di])
                                ):
                                    deleted.append(row[pi])
                                else:
                                    records.append(dict(zip(header, row, strict=True)))
                            elif not row or (len(row) == 1 and not row[0].strip()):
                                continue  # a blank line
                            else:
                                raw = raw or _RawLines(path, cfg.encoding, offset, line)
                                problems.append(
                                    RecordProblem(
                                        f"row has {len(row)} fields, the header has {n}",
                                        raw.get(base + start, base + prev),
                                        f"{name}:{base + start}",
                                    )
                                )
                            room -= 1
                            if not room:  # tell() is slow on text files: only per page
                                page.high = high
                                page.mark(name, f.tell(), base + prev)
                                yield
                                room = size
                        break
                    except csv.Error as exc:
                        start, prev = prev + 1, reader.line_num
                        raw = raw or _RawLines(path, cfg.encoding, offset, line)
                        problems.append(
                            RecordProblem(
                                f"row cannot be parsed as CSV ({exc})",
                                raw.get(base + start, base + prev),
                                f"{name}:{base + start}",
                            )
                        )
                        room -= 1
                        if not room:
                            page.high = high
                            page.mark(name, f.tell(), base + prev)
                            yield
                            room = size
                page.high, page.room = high, room
                page.mark(name, f.tell(), base + reader.line_num)
            finally:
                if raw is not None:
                    raw.close()

    def _read_keys(self, output: Path) -> set[str]:
        with open(output, encoding=self.config.encoding, errors="replace", newline="") as f:
            rows = _csv_rows(csv.reader(iter(f.readline, ""), delimiter=self.config.delimiter))
            header = next(rows, None) or []
            if "idempotency_key" not in header:
                raise FatalError(
                    f"output {output.name} has no idempotency_key column: it is "
                    "not a file this connector writes",
                    connector=self.instance_name,
                )
            i = header.index("idempotency_key")
            return {row[i] for row in rows if row is not None and len(row) > i}

    def _append(self, output: Path, changes: list[Change]) -> dict[str, str]:
        cfg = self.config
        new = not output.exists() or output.stat().st_size == 0
        if new:
            fields = dict.fromkeys(k for change in changes for k in change.fields)
            columns = [
                "external_id",
                "idempotency_key",
                *(k for k in fields if k not in ("external_id", "idempotency_key")),
            ]
        else:
            columns = self._header(output)
        known, failed, rows = set(columns), {}, []
        for change in changes:
            missing = [k for k in change.fields if k not in known]
            if missing:  # a CSV cannot grow columns in place; rewriting it is not ours to do
                failed[change.idempotency_key] = (
                    f"output {output.name} has no column {', '.join(missing)}"
                )
                continue
            values = {
                **change.fields,
                "external_id": change.external_id,
                "idempotency_key": change.idempotency_key,
            }
            rows.append([_cell(values.get(column)) for column in columns])
        # No BOM: "utf-8-sig" is the default so that reads accept Excel exports, but the
        # output is for other programs, many of which trip over one.
        with open(output, "a", encoding=_plain(cfg.encoding), newline="") as f:
            if not new and not _ends_with_newline(output):
                f.write("\r\n")
            writer = csv.writer(f, delimiter=cfg.delimiter)
            if new:
                writer.writerow(columns)
            writer.writerows(rows)
            f.flush()
            os.fsync(f.fileno())
        return failed

    def _rewrite(self, path: Path, ids: set[str]) -> set[str]:
        cfg, found = self.config, set()
        # surrogateescape and the BOM by hand: kept rows are copied byte for byte.
        plain = _plain(cfg.encoding)
        sig = codecs.lookup(cfg.encoding).name != plain

        def fill(out: Any) -> bool:
            with open(path, "rb") as probe:
                if sig and probe.read(3) == _BOM:
                    out.write(_BOM)
            with open(path, encoding=cfg.encoding, errors="surrogateescape", newline="") as f:
                pending: list[str] = []

                def lines() -> Iterator[str]:
                    for text in iter(f.readline, ""):
                        pending.append(text)
                        yield text

                key: int | None = None
                for row in _csv_rows(csv.reader(lines(), delimiter=cfg.delimiter)):
                    if key is None and row and not _is_blank(row):
                        if cfg.primary_key not in row:
                            return False
                        key = row.index(cfg.primary_key)
                    elif key is not None and row and len(row) > key and row[key] in ids:
                        found.add(row[key])
                        pending.clear()
                    out.write("".join(pending).encode(plain, "surrogateescape"))
                    pending.clear()
            return bool(found)

        self._replace(path, fill)
        return found


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) in (b"\n", b"\r")


class JsonlConnector(_FilesConnector):
    """Reads JSON Lines files (one object per line); appends changes; erases lines by id."""

    name = "jsonl"
    Config = JsonlConfig
    config: JsonlConfig
    description = "JSON Lines files, one object per line: a file or a folder, read incrementally"

    def _scan(self, name: str, path: Path, offset: int, line: int, page: _Page) -> Iterator[None]:
        cfg, to_utc, fromiso = self.config, _to_utc, datetime.fromisoformat
        loads, error = orjson.loads, orjson.JSONDecodeError
        moment: datetime | None
        value: Any
        records, deleted, problems, room, size = (
            page.records,
            page.deleted,
            page.problems,
            page.room,
            page.size,
        )
        since, high = page.since, page.high
        cursor, flag, pk = cfg.cursor, cfg.deleted_field, cfg.primary_key
        with open(path, "rb") as f:
            if offset:
                f.seek(offset)
            elif f.read(3) != _BOM:
                f.seek(0)
            for raw in f:
                line += 1
                try:
                    obj = loads(raw)
                except error as exc:
                    if not raw.strip():
                        continue
                    try:  # invalid UTF-8 in a string: replace it, as CSV reads do
                        obj = loads(raw.decode("utf-8", "replace"))
                    except error:
                        obj = exc
                if type(obj) is not dict:
                    reason = (
                        "the line is not valid JSON"
                        if isinstance(obj, error)
                        else f"the line is {_JSON_KINDS.get(type(obj), 'JSON')}, not an object"
                    )
                    problems.append(
                        RecordProblem(
                            reason, raw.decode("utf-8", "replace").rstrip("\r\n"), f"{name}:{line}"
                        )
                    )
                else:
                    if cursor is not None:
                        value = obj.get(cursor)
                        try:  # inlined fast path of _to_utc: a call per line less
                            moment = fromiso(value)
                            if moment.tzinfo is None:
                                moment = moment.replace(tzinfo=UTC)
                        except (TypeError, ValueError):
                            moment = to_utc(value)
                        if moment is not None:
                            if since is not None and moment <= since:
                                continue
                            if high is None or moment > high:
                                high = moment
                    if (
                        flag is not None
                        and _truthy(obj.get(flag))
                        and obj.get(pk) not in (None, "")
                    ):
                        deleted.append(str(obj[pk]))
                    else:
                        records.append(obj)
                room -= 1
                if not room:
                    page.high = high
                    page.mark(name, f.tell(), line)
                    yield
                    room = size
            page.high, page.room = high, room
            page.mark(name, f.tell(), line)

    def _read_keys(self, output: Path) -> set[str]:
        keys: set[str] = set()
        with open(output, "rb") as f:
            for raw in f:
                try:
                    obj = orjson.loads(raw.removeprefix(_BOM).decode("utf-8", "replace"))
                except orjson.JSONDecodeError:
                    continue
                if isinstance(obj, dict) and isinstance(obj.get("idempotency_key"), str):
                    keys.add(obj["idempotency_key"])
        return keys

    def _append(self, output: Path, changes: list[Change]) -> dict[str, str]:
        needs_newline = (
            output.exists() and output.stat().st_size > 0 and not (_ends_with_newline(output))
        )
        with open(output, "ab") as f:
            if needs_newline:
                f.write(b"\n")
            for change in changes:
                obj = {
                    "external_id": change.external_id,
                    "idempotency_key": change.idempotency_key,
                    **change.fields,
                }
                obj["external_id"], obj["idempotency_key"] = (
                    change.external_id,
                    change.idempotency_key,
                )
                f.write(orjson.dumps(obj, default=str) + b"\n")
            f.flush()
            os.fsync(f.fileno())
        return {}

    def _rewrite(self, path: Path, ids: set[str]) -> set[str]:
        found: set[str] = set()
        pk = self.config.primary_key

        def fill(out: Any) -> bool:
            with open(path, "rb") as f:
                for raw in f:
                    try:
                        obj = orjson.loads(raw.removeprefix(_BOM).decode("utf-8", "replace"))
                    except orjson.JSONDecodeError:
                        obj = None
                    if isinstance(obj, dict) and obj.get(pk) is not None and str(obj[pk]) in ids:
                        found.add(str(obj[pk]))
                        continue
                    out.write(raw)
            return bool(found)

        self._replace(path, fill)
        return found


@hookimpl
def register_connectors(register: Callable[[type[Any]], None]) -> None:
    """Register the ``csv`` and ``jsonl`` connectors."""
    register(CsvConnector)
    register(JsonlConnector)

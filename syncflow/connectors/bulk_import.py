"""Bulk import: a file of one source's records (JSON lines, CSV, or XML for Yardi) onto
its raw topic. Records that cannot be read or do not fit the source's schema are written
to a rejects file with their reasons; everything else is produced in batches, each one
acknowledged by the broker before the next."""

from __future__ import annotations

import csv
import json
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from syncflow.connectors.publish import RawPublisher, new_batch_number
from syncflow.connectors.schemas import load_schema
from syncflow.connectors.xml_records import element_to_record, local_name, parse_xml
from syncflow.errors import EncodeError, FieldError, TooLargeError, ValidationError
from syncflow.streams.producer import OutgoingRecord, ReliableProducer
from syncflow.settings import Settings

FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv", ".xml": "xml"}


@dataclass
class Row:
    """One record read from the file: where it was, what it is, or why it cannot be read."""

    position: int  # line (JSON lines, CSV) or element number (XML), 1-based
    raw: Any
    record: Any = None
    errors: list[FieldError] | None = None


@dataclass
class ImportSummary:
    path: Path
    source: str
    entity_type: str
    read: int = 0
    published: int = 0
    rejected: int = 0
    rejects_path: Path | None = None
    batch_number: int = 0


def file_format(path: Path) -> str:
    try:
        return FORMATS[path.suffix.lower()]
    except KeyError:
        raise ValueError(f"{path.name}: unknown file type; use {', '.join(sorted(FORMATS))}") from None


def read_rows(path: Path, schema: dict[str, Any]) -> Iterator[Row]:
    fmt = file_format(path)
    if fmt == "jsonl":
        yield from _jsonl_rows(path)
    elif fmt == "csv":
        yield from _csv_rows(path, schema)
    else:
        yield from _xml_rows(path, schema)


def count_rows(path: Path) -> int | None:
    """Rows to expect, for the progress bar (None when unknown cheaply)."""
    fmt = file_format(path)
    if fmt == "xml":
        return None
    with path.open("rb") as f:
        lines = sum(1 for line in f if line.strip())
    return lines - 1 if fmt == "csv" else lines


def _jsonl_rows(path: Path) -> Iterator[Row]:
    # bytes that are not UTF-8 become lone surrogates: such a row is rejected (it cannot be
    # encoded), the others still go out
    with path.open(encoding="utf-8", errors="surrogateescape") as f:
        first = f.read(1)
        f.seek(0)
        if first == "[":  # a JSON array file
            try:
                items = json.load(f)
            except RecursionError:
                yield Row(1, None, errors=[FieldError("format", "(file)", None, "not valid JSON: nested too deeply")])
                return
            except ValueError as exc:
                yield Row(1, None, errors=[FieldError("format", "(file)", None, f"not valid JSON: {exc}")])
                return
            for i, item in enumerate(items, 1):
                yield Row(i, item, record=item)
            return
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except RecursionError:
                yield Row(n, line.rstrip("\n"), errors=[FieldError("format", "(line)", None,
                                                                     "not valid JSON: nested too deeply")])
                continue
            except ValueError as exc:
                yield Row(n, line.rstrip("\n"), errors=[FieldError("format", "(line)", None, f"not valid JSON: {exc}")])
                continue
            yield Row(n, line.rstrip("\n"), record=record)


def _csv_rows(path: Path, schema: dict[str, Any]) -> Iterator[Row]:
    with path.open(encoding="utf-8", errors="surrogateescape", newline="") as f:
        for n, row in enumerate(csv.DictReader(f), 2):
            record, errors = csv_row_to_record(row, schema)
            yield Row(n, row, record=record, errors=errors or None)


def _xml_rows(path: Path, schema: dict[str, Any]) -> Iterator[Row]:
    try:
        root = parse_xml(path)
    except ValueError as exc:
        yield Row(1, None, errors=[FieldError("format", "(file)", None, str(exc))])
        return
    field_names = {f["name"] for f in schema["fields"]}
    elements = [root] if any(local_name(c.tag) in field_names for c in root) else list(root)
    for n, elem in enumerate(elements, 1):
        raw = ET.tostring(elem, encoding="unicode")
        try:
            yield Row(n, raw, record=element_to_record(elem, schema))
        except ValidationError as exc:
            yield Row(n, raw, errors=exc.errors)


def csv_row_to_record(row: dict[str, str | None], schema: dict[str, Any]) -> tuple[dict[str, Any], list[FieldError]]:
    """A flat CSV row -> a record: nested fields as dotted columns ('address.city'), lists as
    JSON in their cell, an empty cell is null. Values are converted to the schema's types."""
    errors: list[FieldError] = []
    record = _csv_record(row, schema, "", errors)
    known = _column_names(schema, "")
    for column in row:
        if column is not None and column not in known:
            errors.append(FieldError("schema", column, row[column], f"is not a field of {schema['name']}"))
    return record, errors


def _column_names(schema: dict[str, Any], prefix: str) -> set[str]:
    names: set[str] = set()
    for f in schema["fields"]:
        sub = _record_branch(f["type"])
        names |= _column_names(sub, f"{prefix}{f['name']}.") if sub else {prefix + f["name"]}
    return names


def _record_branch(ftype: Any) -> dict[str, Any] | None:
    for branch in ftype if isinstance(ftype, list) else [ftype]:
        if isinstance(branch, dict) and branch.get("type") == "record":
            return branch
    return None


def _csv_record(row: dict[str, str | None], schema: dict[str, Any], prefix: str,
                errors: list[FieldError]) -> dict[str, Any] | None:
    """The record under `prefix`; None when none of its cells has a value."""
    out: dict[str, Any] = {}
    filled = False
    for f in schema["fields"]:
        column, ftype = prefix + f["name"], f["type"]
        sub = _record_branch(ftype)
        if sub is not None:
            nested = _csv_record(row, sub, column + ".", errors)
            nullable = isinstance(ftype, list) and "null" in ftype
            out[f["name"]] = nested if nested is not None or nullable else _csv_record_defaults(sub)
            filled = filled or nested is not None
            continue
        cell = row.get(column)
        if cell is None or cell == "":
            out[f["name"]] = f.get("default")
            continue
        filled = True
        out[f["name"]] = _convert(cell, ftype, column, errors)
    return out if filled or not prefix else None


def _csv_record_defaults(schema: dict[str, Any]) -> dict[str, Any]:
    return {f["name"]: f.get("default") for f in schema["fields"]}


def _convert(cell: str, ftype: Any, column: str, errors: list[FieldError]) -> Any:
    kinds = [t if isinstance(t, str) else t.get("type") for t in (ftype if isinstance(ftype, list) else [ftype])]
    kinds = [k for k in kinds if k != "null"]
    kind = kinds[0] if kinds else "string"
    try:
        if kind in ("int", "long"):
            return int(cell)
        if kind in ("float", "double"):
            return float(cell)
        if kind == "boolean":
            if cell.strip().lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(cell)
            return cell.strip().lower() in ("true", "1", "yes")
        if kind in ("array", "map"):
            return json.loads(cell)
    except ValueError:
        errors.append(FieldError("schema", column, cell, f"is not a valid {kind}"))
        return None
    return cell


def import_file(settings: Settings, path: Path, source: str, entity_type: str, *, rejects_path: Path | None = None,
                batch_size: int = 500, producer: ReliableProducer | None = None,
                progress: Callable[[int], None] | None = None) -> ImportSummary:
    """Import `path`; returns the summary (rejects, if any, are in summary.rejects_path)."""
    file_format(path)
    schema = load_schema(settings.schemas_dir, source, entity_type)
    own_producer = producer is None
    producer = producer or ReliableProducer(settings)
    publisher = RawPublisher(settings, source, producer)
    summary = ImportSummary(path, source, entity_type, batch_number=new_batch_number())
    rejects_path = rejects_path or path.with_name(path.name + ".rejects.jsonl")
    batch: list[OutgoingRecord] = []
    try:
        with rejects_path.open("w", encoding="utf-8") as rejects:
            for row in read_rows(path, schema):
                summary.read += 1
                out, errors = _prepare(publisher, entity_type, row, summary.batch_number)
                if errors:
                    summary.rejected += 1
                    rejects.write(json.dumps({"position": row.position, "record": row.raw,
                                              "errors": [e.to_dict() for e in errors]}, default=str) + "\n")
                    _advance(progress, 1)
                    continue
                assert out is not None
                batch.append(out)
                if len(batch) >= batch_size:
                    summary.published += _send(producer, batch, progress)
        if summary.rejected:
            summary.rejects_path = rejects_path
        summary.published += _send(producer, batch, progress)
    finally:
        if not summary.rejected and rejects_path.exists():
            rejects_path.unlink()
        if own_producer:
            producer.close()
    return summary


def _prepare(publisher: RawPublisher, entity_type: str, row: Row,
             batch_number: int) -> tuple[OutgoingRecord | None, list[FieldError]]:
    if row.errors:
        return None, row.errors
    try:
        return publisher.prepare(entity_type, row.record, batch_number), []
    except ValidationError as exc:
        return None, exc.errors
    except EncodeError as exc:
        return None, [FieldError("schema", "(record)", None, str(exc))]
    except TooLargeError as exc:
        return None, [FieldError("size", "(record)", None, str(exc))]


def _send(producer: ReliableProducer, batch: list[OutgoingRecord], progress: Callable[[int], None] | None) -> int:
    if not batch:
        return 0
    sent = producer.send_all(batch)
    _advance(progress, sent)
    batch.clear()
    return sent


def _advance(progress: Callable[[int], None] | None, n: int) -> None:
    if progress is not None:
        progress(n)

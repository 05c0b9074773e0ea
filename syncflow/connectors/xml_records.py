"""Yardi's XML <-> native records, driven by the record's Avro schema: one element per
field, a missing element is null, booleans are 'true'/'false', lists are a container
element with one child per item. Used by the Yardi emulator, connector, ingest and bulk
import, so all of them read and write the same XML."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from defusedxml import DefusedXmlException
from defusedxml import ElementTree as SafeET

from syncflow.errors import FieldError, ValidationError

Record = dict[str, Any]


def parse_xml(source: bytes | Path) -> ET.Element:
    """The root element of an XML document (bytes, or a file) from outside. DTDs are refused,
    so no entity is ever expanded (billion laughs) or fetched (external entities). Raises
    ValueError, with a readable reason, for anything that is not plain well-formed XML."""
    try:
        if isinstance(source, Path):
            return SafeET.parse(source, forbid_dtd=True).getroot()
        return SafeET.fromstring(source, forbid_dtd=True)
    except DefusedXmlException as exc:
        raise ValueError(f"XML with a DTD or entity declarations is not accepted ({exc})") from exc
    except ET.ParseError as exc:
        raise ValueError(f"not well-formed XML: {exc}") from exc


def local_name(tag: str) -> str:
    """'{namespace}Name' -> 'Name'."""
    return tag.rsplit("}", 1)[-1]


def _non_null(ftype: Any) -> Any:
    if isinstance(ftype, list):
        rest = [t for t in ftype if t != "null"]
        return rest[0] if len(rest) == 1 else rest
    return ftype


def record_to_element(tag: str, record: Record, schema: dict[str, Any]) -> ET.Element:
    elem = ET.Element(tag)
    for f in schema["fields"]:
        value = record.get(f["name"], f.get("default"))
        if value is None:
            continue
        elem.append(_value_to_element(f["name"], value, _non_null(f["type"])))
    return elem


def _value_to_element(tag: str, value: Any, ftype: Any) -> ET.Element:
    if isinstance(ftype, dict) and ftype["type"] == "record":
        return record_to_element(tag, value, ftype)
    if isinstance(ftype, dict) and ftype["type"] == "array":
        items = ftype["items"]
        item_tag = items["name"] if isinstance(items, dict) and "name" in items else "Item"
        container = ET.Element(tag)
        for item in value:
            container.append(_value_to_element(item_tag, item, items))
        return container
    elem = ET.Element(tag)
    if isinstance(value, bool):
        elem.text = "true" if value else "false"
    elif isinstance(value, float):
        elem.text = repr(value)
    else:
        elem.text = str(value)
    return elem


def element_to_record(elem: ET.Element, schema: dict[str, Any]) -> Record:
    """Read one record element. Raises ValidationError naming each field that cannot be read."""
    errors: list[FieldError] = []
    record = _read_record(elem, schema, "", errors)
    if errors:
        raise ValidationError(errors)
    return record


def _read_record(elem: ET.Element, schema: dict[str, Any], path: str, errors: list[FieldError]) -> Record:
    children: dict[str, ET.Element] = {}
    for child in elem:
        children.setdefault(local_name(child.tag), child)
    known = {f["name"] for f in schema["fields"]}
    for name in children:
        if name not in known:
            errors.append(FieldError("schema", f"{path}{name}", None, f"is not a field of {schema['name']}"))
    out: Record = {}
    for f in schema["fields"]:
        name, sub = f["name"], f"{path}{f['name']}"
        child = children.get(name)
        if child is None:
            if "default" in f:
                out[name] = f["default"]
            elif isinstance(f["type"], list) and "null" in f["type"]:
                out[name] = None
            else:
                errors.append(FieldError("schema", sub, None, "is required"))
            continue
        out[name] = _read_value(child, _non_null(f["type"]), sub, errors)
    return out


def _read_value(elem: ET.Element, ftype: Any, path: str, errors: list[FieldError]) -> Any:
    if isinstance(ftype, dict):
        if ftype["type"] == "record":
            return _read_record(elem, ftype, path + ".", errors)
        if ftype["type"] == "array":
            return [_read_value(item, ftype["items"], f"{path}[{i}]", errors) for i, item in enumerate(elem)]
        ftype = ftype["type"]
    text = (elem.text or "").strip() if ftype != "string" else (elem.text or "")
    try:
        if ftype in ("int", "long"):
            return int(text)
        if ftype in ("float", "double"):
            return float(text)
        if ftype == "boolean":
            if text.lower() not in ("true", "false", "1", "0"):
                raise ValueError(text)
            return text.lower() in ("true", "1")
    except ValueError:
        errors.append(FieldError("schema", path, text, f"is not a valid {ftype}"))
        return None
    return text

"""Yardi Voyager connector: per property and entity type, one SOAP call for everything
modified since the cursor (FromDate, inclusive, minus the overlap); no paging."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp

from syncflow.connectors.base import Page, cursor_ceiling_ms, latest_modified_ms
from syncflow.connectors.http import SourceHttp
from syncflow.connectors.publish import Reject
from syncflow.connectors.schemas import SOURCE_ENTITIES, load_schema
from syncflow.connectors.xml_records import element_to_record, local_name, parse_xml
from syncflow.errors import PermanentSourceError, TransientSourceError, ValidationError
from syncflow.settings import SourceSettings

ENDPOINT = "/Voyager/ItfServiceRequests.asmx"
SOAP_NS = "http://schemas.xmlsoap.org/soap/envelope/"
YSI_NS = "http://tempuri.org/YSI.Interfaces.WebServices/ItfServiceRequests"
OPERATION = {"location": "GetUnitInformation", "resident": "GetResidents", "service_request": "GetServiceRequest_Search"}


def soap_request(operation: str, params: dict[str, str | None]) -> bytes:
    """A SOAP 1.1 request the way Voyager interface clients send it."""
    env = ET.Element(f"{{{SOAP_NS}}}Envelope")
    body = ET.SubElement(env, f"{{{SOAP_NS}}}Body")
    op = ET.SubElement(body, f"{{{YSI_NS}}}{operation}")
    for name, value in params.items():
        if value is not None:
            ET.SubElement(op, f"{{{YSI_NS}}}{name}").text = value
    return ET.tostring(env, encoding="utf-8", xml_declaration=True)


def voyager_time(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def parse_result(operation: str, body: bytes) -> ET.Element | None:
    """The <OpResult> content element, None for "no records". In-band errors become
    typed errors: 'Invalid …' (credentials, property code, dates) is permanent, anything
    else transient. Raises ValueError for a body that is not the expected XML."""
    root = parse_xml(body)
    result = next((e for e in root.iter() if local_name(e.tag) == f"{operation}Result"), None)
    if result is None:
        raise ValueError(f"no {operation}Result element")
    content = next(iter(result), None)
    if content is None:
        raise ValueError(f"empty {operation}Result")
    if local_name(content.tag) == "ErrorMessages":
        text = " ".join((e.text or "").strip() for e in content).strip()
        if not text:
            return None
        if text.startswith("Invalid"):
            raise PermanentSourceError(f"yardi {operation}: {text}")
        raise TransientSourceError(f"yardi {operation}: {text}")
    return content


def read_records(content: ET.Element | None, schema: dict[str, Any],
                 entity_type: str) -> tuple[list[dict[str, Any]], list[Reject]]:
    """Records of a result element; one that cannot be read becomes a Reject."""
    records: list[dict[str, Any]] = []
    rejects: list[Reject] = []
    for elem in content if content is not None else []:
        try:
            records.append(element_to_record(elem, schema))
        except ValidationError as exc:
            rejects.append(Reject(ET.tostring(elem, encoding="utf-8"), exc, entity_type))
    return records, rejects


class YardiClient:
    source = "yardi"

    def __init__(self, session: aiohttp.ClientSession, settings: SourceSettings, schemas_dir: Any):
        self.settings, self.schemas_dir = settings, schemas_dir
        self.http = SourceHttp(session, settings, self.source)
        self.url = settings.base_url.rstrip("/") + ENDPOINT

    def _auth(self) -> dict[str, str | None]:
        s = self.settings
        return {"UserName": s.username, "Password": s.api_key, "ServerName": s.server_name, "Database": s.database,
                "Platform": "SQL Server", "InterfaceEntity": "syncflow", "InterfaceLicense": "syncflow-license"}

    async def _call(self, operation: str, params: dict[str, str | None]) -> ET.Element | None:
        body = soap_request(operation, {**self._auth(), **params})
        headers = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": f'"{YSI_NS}/{operation}"'}
        return await self.http.call("POST", self.url, lambda b: parse_result(operation, b), operation=operation,
                                    data=body, headers=headers)

    async def properties(self) -> list[str]:
        if self.settings.properties:
            return list(self.settings.properties)
        content = await self._call("GetPropertyConfigurations", {})
        codes = []
        for prop in content if content is not None else []:
            code = next((c.text for c in prop if local_name(c.tag) == "Code"), None)
            if code:
                codes.append(code)
        return codes

    async def streams(self) -> list[str]:
        return [f"{code}/{entity}" for code in await self.properties() for entity in SOURCE_ENTITIES[self.source]]

    def replay_from_ms(self, cursor: str) -> int | None:
        """FromDate of the next pass: cursor - overlap, to the second (as sent)."""
        ms = int(cursor) - int(self.settings.overlap_s * 1000)
        return ms - ms % 1000

    async def pages(self, stream: str, cursor: str | None) -> AsyncIterator[Page]:
        code, entity_type = stream.rsplit("/", 1)
        current = int(cursor) if cursor else None
        from_date = voyager_time(current - int(self.settings.overlap_s * 1000)) if current is not None else None
        content = await self._call(OPERATION[entity_type], {"YardiPropertyId": code, "FromDate": from_date})
        records, rejects = read_records(content, load_schema(self.schemas_dir, self.source, entity_type), entity_type)
        newest = latest_modified_ms(self.source, records, current, cursor_ceiling_ms(self.settings))
        yield Page(stream, entity_type, records, None if newest is None else str(newest), rejects)

"""Yardi Voyager emulator: SOAP 1.1 over one endpoint, the interface's auth block in the
body, whole-property results without paging, a `FromDate` modified-since filter, errors
inside HTTP 200 as <ErrorMessages>, "no records" as an empty error message."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime

from aiohttp import web

from syncflow.connectors.schemas import load_schema
from syncflow.connectors.xml_records import local_name, record_to_element
from syncflow.emulators.sources.base import STATE_KEY, EmulatorState, make_app
from syncflow.emulators.sources.render import render
from syncflow.emulators.sources.world import World
from syncflow.settings import REPO_ROOT

ENDPOINT = "/Voyager/ItfServiceRequests.asmx"
SOAP_NS = "http://schemas.xmlsoap.org/soap/envelope/"
YSI_NS = "http://tempuri.org/YSI.Interfaces.WebServices/ItfServiceRequests"
# operation -> (entity type, container element, record element)
OPERATIONS = {
    "GetUnitInformation": ("location", "Locations", "Location"),
    "GetResidents": ("resident", "Customers", "Customer"),
    "GetServiceRequest_Search": ("service_request", "ServiceRequests", "ServiceRequest"),
}
AUTH_FIELDS = ("UserName", "Password", "ServerName", "Database")
SCHEMAS_DIR = REPO_ROOT / "avro_schemas"


def envelope(operation: str, result: ET.Element) -> bytes:
    """<soap:Envelope><soap:Body><OpResponse><OpResult>…</OpResult></OpResponse>…"""
    ET.register_namespace("soap", SOAP_NS)
    env = ET.Element(f"{{{SOAP_NS}}}Envelope")
    body = ET.SubElement(env, f"{{{SOAP_NS}}}Body")
    response = ET.SubElement(body, f"{{{YSI_NS}}}{operation}Response")
    wrapper = ET.SubElement(response, f"{{{YSI_NS}}}{operation}Result")
    wrapper.append(result)
    return ET.tostring(env, encoding="utf-8", xml_declaration=True)


def error_messages(text: str) -> ET.Element:
    """Voyager's in-band error; an empty text means "no records"."""
    errors = ET.Element("ErrorMessages")
    ET.SubElement(errors, "Error").text = text or None
    return errors


def _xml(operation: str, result: ET.Element) -> web.Response:
    return web.Response(body=envelope(operation, result), content_type="text/xml", charset="utf-8")


def _parse(body: bytes) -> tuple[str, dict[str, str]]:
    root = ET.fromstring(body)
    body_elem = next(e for e in root if local_name(e.tag) == "Body")
    op_elem = next(iter(body_elem))
    return local_name(op_elem.tag), {local_name(c.tag): (c.text or "") for c in op_elem}


def _unauthorized(request: web.Request, state: EmulatorState) -> web.StreamResponse | None:
    """Auth is checked in the handler (it needs the body); the middleware only calls this to
    build the answer for an injected auth failure."""
    if state.api_key.startswith("\x00"):
        return _xml("Authentication", error_messages("Invalid Username/Password"))
    return None


async def soap_endpoint(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    try:
        operation, params = _parse(await request.read())
    except (ET.ParseError, StopIteration):
        return web.Response(status=400, text="request is not a SOAP envelope")
    if any(not params.get(f) for f in AUTH_FIELDS) or params["Password"] != state.api_key:
        state.stats["auth_failures"] += 1
        return _xml(operation, error_messages("Invalid Username/Password"))
    if operation == "GetPropertyConfigurations":
        return _xml(operation, _properties(state.world))
    if operation not in OPERATIONS:
        return _xml(operation, error_messages(f"Unknown operation {operation}"))
    code = params.get("YardiPropertyId", "")
    if code not in {p.data["property_code"] for p in state.world.properties("yardi")}:
        return _xml(operation, error_messages(f"Invalid property code {code}"))
    from_ms = 0
    if params.get("FromDate"):
        try:
            from_ms = int(datetime.strptime(params["FromDate"], "%Y-%m-%dT%H:%M:%S")
                          .replace(tzinfo=UTC).timestamp() * 1000)
        except ValueError:
            return _xml(operation, error_messages(f"Invalid FromDate {params['FromDate']}"))
    entity_type, container_tag, record_tag = OPERATIONS[operation]
    schema = load_schema(SCHEMAS_DIR, "yardi", entity_type)
    entities = [e for e in state.entities(entity_type, code) if e.modified_ms >= from_ms]
    if not entities:
        return _xml(operation, error_messages(""))
    container = ET.Element(container_tag)
    for e in entities:
        container.append(record_to_element(record_tag, render(e), schema))
    state.stats["records_served"] += len(entities)
    return _xml(operation, container)


def _properties(world: World) -> ET.Element:
    props = ET.Element("Properties")
    for p in world.properties("yardi"):
        elem = ET.SubElement(props, "Property")
        ET.SubElement(elem, "Code").text = p.data["property_code"]
        ET.SubElement(elem, "MarketingName").text = p.data["name"]
    return props


def make_yardi_app(state: EmulatorState) -> web.Application:
    app = make_app(state, _unauthorized)
    app.router.add_post(ENDPOINT, soap_endpoint)
    return app

"""A bad rules file is refused at load with a ConfigError naming the file, the place in the
document and the problem."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import ACME_RULES, RULES_FILE

from syncflow.agents.rules import RulesEngine
from syncflow.errors import ConfigError


def load_changed(tmp_path: Path, change) -> RulesEngine:
    document = yaml.safe_load(ACME_RULES.read_text())
    change(document)
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return RulesEngine.from_file(path)


def refused(tmp_path: Path, change) -> str:
    with pytest.raises(ConfigError) as caught:
        load_changed(tmp_path, change)
    message = str(caught.value)
    assert "rules.yaml" in message
    return message


def sr(document: dict) -> dict:
    return document["sources"]["acme"]["entities"]["service_request"]


def test_the_real_and_the_test_rules_load():
    assert RulesEngine.from_file(RULES_FILE).supports("yardi", "service_request")
    assert RulesEngine.from_file(ACME_RULES).supports("acme", "location")


def test_unknown_step(tmp_path):
    message = refused(tmp_path, lambda d: sr(d).update(transfrom={}))
    assert "sources.acme.entities.service_request" in message and "transfrom" in message


def test_unknown_rule_type(tmp_path):
    message = refused(tmp_path, lambda d: sr(d)["transform"].update(status={"mapp": {"a": "b"}}))
    assert "sources.acme.entities.service_request.transform.status" in message
    assert "unknown rule type 'mapp'" in message


def test_rule_type_of_another_step(tmp_path):
    message = refused(tmp_path, lambda d: sr(d).update(validate={"status": "trim"}))
    assert "unknown rule type 'trim' in step validate" in message


def test_mapping_to_a_field_not_in_the_canonical_schema(tmp_path):
    message = refused(tmp_path, lambda d: sr(d)["extract"].update(colour="Colour"))
    assert "sources.acme.entities.service_request.extract.colour" in message
    assert "not a field of the canonical ServiceRequest" in message


def test_rules_may_not_write_engine_fields(tmp_path):
    message = refused(tmp_path, lambda d: sr(d)["extract"].update(entity_id="id"))
    assert "set by the engine" in message


def test_bad_regex(tmp_path):
    message = refused(tmp_path, lambda d: sr(d).setdefault("validate", {}).update(subcategory={"regex": "([a-z"}))
    assert "validate.subcategory.regex" in message and "bad regex" in message


def test_missing_section(tmp_path):
    assert "missing section(s) identity" in refused(tmp_path, lambda d: d.pop("identity"))
    assert "missing section(s) extract" in refused(tmp_path, lambda d: sr(d).pop("extract"))


def test_required_canonical_field_nobody_writes(tmp_path):
    message = refused(tmp_path, lambda d: sr(d)["extract"].pop("category"))
    assert "requires category" in message


def test_unknown_entity_type_and_bad_values(tmp_path):
    assert "unknown entity type" in refused(
        tmp_path, lambda d: d["sources"]["acme"]["entities"].update(lease={"extract": {}}))
    assert "not a known IANA time zone" in refused(tmp_path, lambda d: d["sources"]["acme"].update(timezone="Mars"))
    assert "not a UUID" in refused(tmp_path, lambda d: d["identity"].update(namespace="nope"))
    assert "priority must be" in refused(tmp_path, lambda d: sr(d).update(priority=11))


def test_bad_arguments_of_a_rule(tmp_path):
    assert "'map' needs" in refused(tmp_path, lambda d: sr(d)["transform"].update(status={"map": []}))
    assert "'ref' entity 'lease'" in refused(
        tmp_path, lambda d: sr(d)["enrich"].update(location_id={"ref": {"entity": "lease", "from": ["_x"]}}))
    assert "bad path segment" in refused(tmp_path, lambda d: sr(d)["extract"].update(subcategory="tags[0"))
    assert "only in normalize" in refused(tmp_path, lambda d: sr(d)["transform"].update({"*": "int"}))
    assert "phone' default region" in refused(
        tmp_path, lambda d: sr(d).setdefault("normalize", {}).update(requestor_phone={"phone": "DE"}))


def test_yaml_problems(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text("sources: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        RulesEngine.from_file(path)
    path.write_text("version: 1\nversion: 2\n")
    with pytest.raises(ConfigError, match="appears twice"):
        RulesEngine.from_file(path)
    with pytest.raises(ConfigError, match="cannot read"):
        RulesEngine.from_file(tmp_path / "missing.yaml")

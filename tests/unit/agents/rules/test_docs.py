"""docs/rules.md shows the mapping tables of the rules file as it is."""

from __future__ import annotations

from conftest import REPO, RULES_FILE

from syncflow.agents.rules.doc import BEGIN, END, mapping_tables, render_into


def test_mapping_tables_in_the_docs_are_current():
    doc = (REPO / "docs" / "rules.md").read_text()
    assert BEGIN in doc and END in doc
    assert render_into(doc, mapping_tables(RULES_FILE)) == doc, (
        "docs/rules.md is out of date: run `python -m syncflow.agents.rules.doc`")


def test_every_source_entity_has_a_table():
    tables = mapping_tables(RULES_FILE)
    for source, entity in [("yardi", "location"), ("yardi", "resident"), ("yardi", "service_request"),
                           ("realpage", "attachment"), ("insight", "service_request"),
                           ("lessen360", "service_request"), ("lessen360", "attachment")]:
        assert f"#### {source} {entity}" in tables

"""Every SYNCFLOW_* variable docs/deployment.md names is a real setting, and every field of
the kafka_security group is documented there."""

from __future__ import annotations

import re

from syncflow.settings import KafkaSecuritySettings
from syncflow.settings import REPO_ROOT, Settings

DOC = (REPO_ROOT / "docs" / "deployment.md").read_text()


def test_every_variable_named_in_the_doc_is_a_setting() -> None:
    names = set(re.findall(r"\bSYNCFLOW_[A-Z0-9_]*[A-Z0-9]\b", DOC))
    assert names
    for name in sorted(names):
        if name.startswith("SYNCFLOW_LOCAL_") or name == "SYNCFLOW_ENV_FILE":
            continue  # the local stack's names for tests, the env file switch
        top, *nested = name.removeprefix("SYNCFLOW_").lower().split("__")
        assert top in Settings.model_fields, name
        model = Settings.model_fields[top].annotation
        for part in nested:
            assert part in model.model_fields, name  # type: ignore[union-attr]


def test_every_kafka_security_field_is_documented() -> None:
    for field in KafkaSecuritySettings.model_fields:
        assert re.search(rf"`(SYNCFLOW_KAFKA_SECURITY__)?{field.upper()}`", DOC), field

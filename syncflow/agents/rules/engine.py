"""The rules engine of sync-in: a source-native record in, a canonical entity out, or a
ValidationError naming every rule the record breaks. All behaviour lives in the rules file."""

from __future__ import annotations

from pathlib import Path

from syncflow.agents.rules.loader import compile_rules
from syncflow.agents.rules.pipeline import Pipeline
from syncflow.agents.rules.record import CanonicalRecord
from syncflow.agents.rules.schemas import DEFAULT_SCHEMAS_DIR, load_canonical_schemas
from syncflow.errors import FieldError, ValidationError


class RulesEngine:
    """Compiled rules for every (source, entity type) the rules file describes."""

    def __init__(self, pipelines: dict[tuple[str, str], Pipeline]):
        self._pipelines = pipelines

    @classmethod
    def from_file(cls, path: Path, schemas_dir: Path = DEFAULT_SCHEMAS_DIR) -> "RulesEngine":
        """Load and compile once; a bad file raises ConfigError naming the problem."""
        return cls(compile_rules(Path(path), load_canonical_schemas(Path(schemas_dir))))

    def supports(self, source: str, entity_type: str) -> bool:
        return (source, entity_type) in self._pipelines

    def transform(self, source: str, entity_type: str, record: dict) -> CanonicalRecord:
        """The canonical record, or ValidationError listing every failing rule."""
        pipeline = self._pipelines.get((source, entity_type))
        if pipeline is None:
            raise ValidationError([FieldError(f"{source}.{entity_type}", "", None,
                                              f"no rules for entity type {entity_type!r} from source {source!r}")])
        try:
            return pipeline.run(record)
        except ValidationError:
            raise
        except Exception as exc:  # bad input must never stop the line with another error type
            raise ValidationError([FieldError(f"{source}.{entity_type}", "", None,
                                              f"cannot be processed ({type(exc).__name__}: {exc})")]) from exc

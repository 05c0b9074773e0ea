"""Fixtures for the Avro layer: the repository's catalogue and small catalogues written to
temporary directories, to play a writer and a reader of different schema versions."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from syncflow.streams.schemas import SchemaCatalogue
from syncflow.settings import Settings

CatalogueFactory = Callable[..., SchemaCatalogue]


@pytest.fixture(scope="session")
def repo_catalogue() -> SchemaCatalogue:
    return SchemaCatalogue.load(Settings().schemas_dir)


@pytest.fixture
def write_schemas(tmp_path: Path) -> Callable[..., Path]:
    """write_schemas("dir", {"a/B.avsc": {...}, ...}) writes the files and returns the directory."""

    def write(name: str, files: dict[str, object]) -> Path:
        root = tmp_path / name
        for rel, schema in files.items():
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(schema if isinstance(schema, str) else json.dumps(schema))
        root.mkdir(parents=True, exist_ok=True)
        return root

    return write


@pytest.fixture
def catalogue_of(write_schemas: Callable[..., Path]) -> CatalogueFactory:
    """catalogue_of(current=[schema...], history=[schema...]) -> a loaded catalogue."""
    count = 0

    def make(current: list[dict], history: list[dict] = ()) -> SchemaCatalogue:  # type: ignore[assignment]
        nonlocal count
        count += 1
        files: dict[str, object] = {f"S{i}.avsc": s for i, s in enumerate(current)}
        files.update({f"history/H{i}.avsc": s for i, s in enumerate(history)})
        return SchemaCatalogue.load(write_schemas(f"catalogue{count}", files))

    return make

"""Getting source records onto raw.<source>: polling connectors, the push ingest API and
bulk import (docs/sources.md)."""

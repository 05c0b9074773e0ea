"""One composition root per role: each module builds a role's parts from the settings and
runs it (sync-in, sync-out, connector, ingest). Wiring only; nothing is created at import."""

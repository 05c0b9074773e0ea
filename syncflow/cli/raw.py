"""`syncflow raw purge|reprocess`: the raw store's retention and failed raw documents."""

from __future__ import annotations

import json

import typer

from syncflow.errors import OpsError
from syncflow.ops.raw_purge import purge_expired
from syncflow.ops.reprocess import ReprocessFilter, reprocess
from syncflow.ops.times import parse_moment
from syncflow.sinks.raw_store import RawRecordStore
from syncflow.streams.producer import ReliableProducer
from syncflow.settings import get_settings

app = typer.Typer(no_args_is_help=True, help="Raw store (MongoDB) operations.")


@app.command()
def purge(
    dry_run: bool = typer.Option(False, "--dry-run", help="Count expired documents; delete nothing."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Delete raw documents whose expiresAfter has passed (any MongoDB-compatible server)."""
    store = RawRecordStore(get_settings())
    try:
        result = purge_expired(store, dry_run=dry_run)
    except Exception as exc:  # noqa: BLE001 - reported with a non-zero exit
        typer.echo(f"raw purge: {type(exc).__name__}: {exc}", err=True)
        raise typer.Exit(1) from exc
    finally:
        store.close()
    if as_json:
        typer.echo(json.dumps({**result.to_dict(), "dry_run": dry_run}))
    else:
        typer.echo(f"expired: {result.expired}, deleted: {result.deleted}" + (" (dry run)" if dry_run else ""))


@app.command("reprocess")
def reprocess_(
    source: str | None = typer.Option(None, help="Only this source system (yardi, realpage, ...)."),
    entity_type: str | None = typer.Option(None, "--entity-type", help="Only this entity type."),
    since: str | None = typer.Option(None, help="Last sent by the source at or after (ISO-8601 UTC or epoch ms)."),
    until: str | None = typer.Option(None, help="Last sent by the source before."),
    limit: int | None = typer.Option(None, help="At most this many documents."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List what would be sent; send nothing."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Send raw documents whose inbound processing failed back through sync-in (raw.<source>).
    Exit code 3 when some documents could not be encoded."""
    from syncflow.streams.avro import codec_for

    settings = get_settings()
    store = RawRecordStore(settings)
    try:
        codec = codec_for(settings)
        flt = ReprocessFilter(source, entity_type, parse_moment(since), parse_moment(until))
        result = reprocess(
            store, ReliableProducer(settings),
            lambda schema, record, topic: codec.encode(schema, record, topic=topic),
            flt, dry_run=dry_run, limit=limit,
        )  # fmt: skip
    except (OpsError, Exception) as exc:  # noqa: BLE001 - reported with a non-zero exit
        typer.echo(f"raw reprocess: {type(exc).__name__}: {exc}", err=True)
        raise typer.Exit(1) from exc
    finally:
        store.close()
    if as_json:
        typer.echo(json.dumps({**result.to_dict(), "dry_run": dry_run}, indent=2))
    else:
        for rec in result.sent:
            typer.echo(f"{'would send' if dry_run else 'sent'} {rec['topic']} {rec['key']}")
        for bad in result.failed:
            typer.echo(f"not sent {bad['source']} {bad['entity_type']} {bad['source_id']}: {bad['error']}")
        typer.echo(f"{len(result.sent)} sent, {len(result.failed)} not encodable")
    if result.failed:
        raise typer.Exit(3)

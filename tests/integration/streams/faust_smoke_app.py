"""A minimal Faust worker for the smoke test: relays change events from one topic to
another through the Avro codec, marking each one. Run as
`python faust_smoke_app.py worker --web-port N -l warning` with SMOKE_APP_ID, SMOKE_IN,
SMOKE_OUT and SMOKE_DATADIR in the environment."""

from __future__ import annotations

import os

import faust

from syncflow.streams.avro import DecodedRecord
from syncflow.streams.codec import register_faust_codec
from syncflow.settings import Settings

settings = Settings.load()
register_faust_codec(settings, "avro")

app = faust.App(
    os.environ["SMOKE_APP_ID"],
    broker=f"kafka://{settings.kafka_bootstrap_servers}",
    datadir=os.environ["SMOKE_DATADIR"],
    store="memory://",
    consumer_auto_offset_reset="earliest",
    topic_allow_declare=False,
)
source = app.topic(os.environ["SMOKE_IN"], key_serializer="raw", value_serializer="avro")
sink = app.topic(os.environ["SMOKE_OUT"], key_serializer="raw", value_serializer="avro")


@app.agent(source)
async def relay(stream: faust.Stream) -> None:
    async for key, event in stream.items():
        record = {**event.record, "priority": 1, "trace_id": f"relayed:{event.record['trace_id']}"}
        await sink.send(key=key, value=DecodedRecord(event.schema_name, record))


if __name__ == "__main__":
    app.main()

"""The Avro codec as a Faust codec, so topics can declare `value_serializer="avro"`.

Faust codecs are synchronous and carry no topic, so schemas are loaded when the codec is
registered (at start-up) and registry subjects use the RecordNameStrategy.

Two shapes: unbound (`schema_name=None`), which dumps and loads `DecodedRecord`s and so
serves topics carrying several record types; and bound to one schema, which dumps and
loads plain dicts and reads with that schema as the reader.

A decode error raised inside a Faust codec ends in Faust's own decode-error handling, not
in syncflow's dead-letter routing: an agent that must send undecodable records to a DLQ
consumes raw bytes and calls `AvroCodec.decode` itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import faust
from faust.serializers import codecs

from syncflow.errors import EncodeError
from syncflow.streams.avro import AvroCodec, DecodedRecord, codec_for
from syncflow.settings import Settings


class FaustAvroCodec(faust.Codec):
    """A faust.Codec that delegates to an AvroCodec (single-object or registry format)."""

    def __init__(
        self,
        avro: AvroCodec,
        schema_name: str | None = None,
        children: tuple[Any, ...] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(children=children, avro=avro, schema_name=schema_name, **kwargs)
        self.avro = avro
        self.schema_name = schema_name

    def _dumps(self, obj: Any) -> bytes:
        if isinstance(obj, DecodedRecord):
            if self.schema_name is not None and obj.schema_name != self.schema_name:
                raise EncodeError(f"codec for {self.schema_name} was given a {obj.schema_name} record")
            return self.avro.encode(obj.schema_name, obj.record)
        if self.schema_name is not None and isinstance(obj, Mapping):
            return self.avro.encode(self.schema_name, dict(obj))
        expected = "a dict or DecodedRecord" if self.schema_name else "a DecodedRecord (schema name + record)"
        raise EncodeError(f"Avro codec expected {expected}, got {type(obj).__name__}")

    def _loads(self, s: bytes) -> Any:
        decoded = self.avro.decode(s, reader=self.schema_name)
        return decoded if self.schema_name is None else decoded.record


def register_faust_codec(
    settings: Settings,
    name: str = "avro",
    *,
    schema_name: str | None = None,
    avro: AvroCodec | None = None,
) -> FaustAvroCodec:
    """Register the Avro codec under `name` for `value_serializer=name`; returns it.

    Loads the schema catalogue now (Faust codecs cannot wait for I/O per message)."""
    codec = FaustAvroCodec(avro if avro is not None else codec_for(settings), schema_name)
    codecs.register(name, codec)
    return codec

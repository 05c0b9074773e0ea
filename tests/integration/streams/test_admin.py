"""Topic creation from the catalogue and deletion, against the real broker."""

from __future__ import annotations

from collections.abc import Callable

from syncflow.streams.admin import admin_client, create_topics, delete_topics
from syncflow.settings import Settings
from syncflow.streams.topics import TopicSpec


def test_create_is_idempotent_and_delete_removes(stack: Settings, unique: Callable[[str], str]) -> None:
    spec = TopicSpec(unique("admin"), 3, 60_000)
    assert create_topics(stack, [spec]) == {spec.name: "created"}
    assert create_topics(stack, [spec]) == {spec.name: "exists"}
    metadata = admin_client(stack).list_topics(spec.name, timeout=10)
    assert len(metadata.topics[spec.name].partitions) == 3
    delete_topics(stack, [spec.name])
    assert spec.name not in admin_client(stack).list_topics(timeout=10).topics

"""Target system clients. Each maps the target's answers to syncflow's typed errors."""

from syncflow.sinks.targets.base import Delivery, DeliveryResult, OAuth2Token, TargetClient, error_for, join_url, parse_retry_after
from syncflow.sinks.targets.lessen360 import Lessen360TargetClient
from syncflow.sinks.targets.one import OneClient

__all__ = ["Delivery", "DeliveryResult", "Lessen360TargetClient", "OAuth2Token", "OneClient", "TargetClient", "error_for", "join_url", "parse_retry_after"]

"""Validation and transformation rules of sync-in: source-native record -> canonical entity."""

from syncflow.agents.rules.engine import RulesEngine
from syncflow.agents.rules.record import CanonicalRecord

__all__ = ["CanonicalRecord", "RulesEngine"]

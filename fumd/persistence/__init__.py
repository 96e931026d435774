"""Persistence: crash-safe checkpoints of the full state (SPEC §9)."""

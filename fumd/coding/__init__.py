"""Encoding inputs into spikes and decoding output spikes into actions (SPEC §2)."""

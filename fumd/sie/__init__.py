"""Self-Improvement Engine: TD(0), novelty, habituation, self-benefit, combined reward (SPEC §4)."""

"""The long-running service: configuration, the input ledger, the perception-action loop."""

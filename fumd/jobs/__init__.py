"""Scheduled self-regulation jobs (SPEC §6-§8): clustering, decay, persistence tagging, Bayesian
tuning, structural plasticity, criticality control. ``base.py`` is the contract between the engine
and a job (snapshot -> compute -> apply, the knobs a job may change); ``state.py`` saves a job's
state; ``runner.py`` runs them on their cadences without ever touching the network during a cycle."""

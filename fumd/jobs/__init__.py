"""Scheduled self-regulation jobs (SPEC §6-§8): clustering, decay, persistence tagging, Bayesian
tuning, structural plasticity, criticality control. ``base.py`` says how a job is shaped;
``runner.py`` runs them on their cadences without ever touching the network during a cycle."""

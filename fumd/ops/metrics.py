"""Prometheus metrics of the daemon (prometheus-client, one registry per daemon, no globals).

Names follow Prometheus conventions: ``fumd_`` prefix, base units (seconds, bytes, hertz),
``_total`` for counters. ``monitoring/`` (dashboards, alerts) uses exactly these names.
"""
from __future__ import annotations

import os
import time
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    start_http_server,
)

REWARD_COMPONENTS = ("td_error", "novelty", "habituation", "self_benefit", "external")


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        ProcessCollector(registry=r)  # process_resident_memory_bytes etc. (memory-growth alert)
        PlatformCollector(registry=r)
        self.cycles = Counter("fumd_cycles_total", "Perception-action cycles run (one per learned record)", registry=r)
        self.records = Counter("fumd_records_total", "Input records handled, by outcome", ["outcome"], registry=r)
        self.cycle_duration = Histogram(
            "fumd_cycle_duration_seconds", "Wall time of one cycle (encode, simulate, decode, SIE, learn)", registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
        )
        self.files = Counter("fumd_input_files_total", "Input files finished, by status (done|failed)", ["status"],
                             registry=r)
        self.files_failed = Counter("fumd_input_files_failed_total", "Input files rejected, by reason", ["reason"],
                                    registry=r)
        self.records_failed = Counter("fumd_records_failed_total", "Records rejected inside good files, by reason",
                                      ["reason"], registry=r)
        self.queue_depth = Gauge("fumd_queue_depth", "Input files waiting (inbox + admitted, not yet processed)",
                                 registry=r)
        self.replays = Gauge("fumd_replays",
                             "Stored labelled inputs replayed between live ones since the network was created "
                             "(learning/replay.py; checkpointed, so it does not reset at a restart)", registry=r)
        self.rate = Gauge("fumd_firing_rate_hz", "Mean firing rate over all neurons in the last cycle", registry=r)
        self.rate_variance = Gauge("fumd_firing_rate_variance_hz2",
                                   "Variance across neurons of the firing rate in the last cycle", registry=r)
        self.reward = Gauge("fumd_reward", "total_reward of the last cycle", registry=r)
        self.reward_component = Gauge("fumd_reward_component", "Reward components of the last cycle", ["component"],
                                      registry=r)
        self.novelty = Gauge("fumd_novelty", "Novelty of the last input", registry=r)
        self.feature_active = Gauge("fumd_feature_active_fraction",
                                    "Fraction of the feature neurons that fired in the last cycle "
                                    "(learning.feature_activity is its target)", registry=r)
        self.correct = Counter("fumd_correct_total", "Labelled records whose decoded action matched the label",
                               registry=r)
        self.labelled = Counter("fumd_labelled_total", "Labelled records", registry=r)
        self.step = Gauge("fumd_step", "Cycles the network has learned from (its age)", registry=r)
        self.neurons = Gauge("fumd_neurons", "Neurons in the network", registry=r)
        self.synapses = Gauge("fumd_synapses", "Synapses in the network", registry=r)
        self.persistent = Gauge("fumd_persistent_synapses", "Synapses tagged persistent", registry=r)
        self.sparsity = Gauge("fumd_sparsity_ratio", "1 - synapses / (N (N - 1))", registry=r)
        self.checkpoints = Counter("fumd_checkpoints_total", "Checkpoints written, by outcome", ["outcome"], registry=r)
        self.checkpoint_duration = Histogram(
            "fumd_checkpoint_duration_seconds", "Wall time to write one checkpoint (in the background)", registry=r,
            buckets=(0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
        )
        self.checkpoint_stall = Gauge("fumd_checkpoint_stall_seconds",
                                      "Time the loop stopped for the last checkpoint snapshot", registry=r)
        self.checkpoint_bytes = Gauge("fumd_checkpoint_bytes", "Size of the newest checkpoint", registry=r)
        self.checkpoint_timestamp = Gauge("fumd_checkpoint_last_success_timestamp_seconds",
                                          "Unix time of the newest checkpoint", registry=r)
        self.checkpoint_age = Gauge("fumd_checkpoint_age_seconds",
                                    "Seconds since the newest checkpoint (since start if none)", registry=r)
        self.errors = Counter("fumd_errors_total", "Internal errors the daemon survived, by kind", ["kind"], registry=r)
        self.restarts_without_progress = Gauge(
            "fumd_restarts_without_progress",
            "Starts in a row that restored the same checkpoint after an unclean stop (crash loop)", registry=r)
        self.disk_full = Gauge("fumd_disk_full", "1 while admission and learning are paused because the disk is full",
                               registry=r)
        self.disk_full_events = Counter("fumd_disk_full_events_total",
                                        "Disk-full episodes, by the write that hit it first", ["where"], registry=r)
        self.state_dir_bytes = Gauge("fumd_state_dir_bytes",
                                     "Bytes in each subdirectory of the state directory (at the last retention pass)",
                                     ["dir"], registry=r)
        self.retention_removed = Counter("fumd_retention_removed_total", "Entries deleted by retention, by directory",
                                         ["dir"], registry=r)
        self.fs_avail = Gauge("fumd_filesystem_avail_bytes",
                              "Bytes available to the daemon on the state directory's filesystem", registry=r)
        self.fs_size = Gauge("fumd_filesystem_size_bytes", "Size of the state directory's filesystem", registry=r)
        self.queue_oldest_age = Gauge("fumd_queue_oldest_age_seconds",
                                      "Age of the oldest input waiting to be learned, in the inbox or admitted (0: "
                                      "none)", registry=r)
        self.up_since = Gauge("fumd_start_time_seconds", "Unix time the daemon started", registry=r)
        self._started = time.time()
        self._last_checkpoint: float | None = None
        self.up_since.set(self._started)
        self.checkpoint_age.set_function(self._checkpoint_age)
        self.jobs_runs = Counter("fumd_job_runs_total", "Scheduled job runs", ["job"], registry=r)
        self.jobs_failures = Counter("fumd_job_failures_total", "Scheduled job runs that raised", ["job"], registry=r)
        self.jobs_duration = Histogram("fumd_job_duration_seconds", "Scheduled job duration (snapshot to apply)",
                                       ["job"], registry=r, buckets=(0.001, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 60, 300))
        self.jobs_misfires = Counter("fumd_job_misfires_total",
                                     "Scheduled job runs missed (the loop was busy past the grace time)", ["job"],
                                     registry=r)
        self.jobs_output = Gauge("fumd_job_output", "Key outputs of each job's last run", ["job", "key"], registry=r)
        for outcome in ("ok", "failed"):
            self.records.labels(outcome)
            self.checkpoints.labels(outcome)
        for status in ("done", "failed"):
            self.files.labels(status)
        for kind in ("cycle", "reader", "checkpoint", "checkpoint_unusable", "config_reload"):
            self.errors.labels(kind)
        for where in ("results", "checkpoint", "admission"):
            self.disk_full_events.labels(where)
        for d in ("outbox", "done", "failed"):
            self.retention_removed.labels(d)
        self._server: Any = None

    def watch_filesystem(self, path: Any) -> None:
        """Free and total bytes of ``path``'s filesystem, read at every scrape (statvfs)."""
        def stat(attr: str) -> float:
            try:
                st = os.statvfs(path)
            except OSError:
                return float("nan")
            return float((st.f_bavail if attr == "avail" else st.f_blocks) * st.f_frsize)

        self.fs_avail.set_function(lambda: stat("avail"))
        self.fs_size.set_function(lambda: stat("size"))

    def _checkpoint_age(self) -> float:
        return time.time() - (self._last_checkpoint or self._started)

    def observe_checkpoint(self, seconds: float, size: int, when: float) -> None:
        self.checkpoints.labels("ok").inc()
        self.checkpoint_duration.observe(seconds)
        self.checkpoint_bytes.set(size)
        self.checkpoint_timestamp.set(when)
        self._last_checkpoint = when

    def observe_cycle(self, result: Any, seconds: float, rate_variance: float) -> None:
        self.cycles.inc()
        self.records.labels("ok").inc()
        self.cycle_duration.observe(seconds)
        self.rate.set(result.rate_hz)
        self.rate_variance.set(rate_variance)
        self.reward.set(result.total_reward)
        for name in REWARD_COMPONENTS:
            value = result.components.get(name)
            if value is not None:
                self.reward_component.labels(name).set(value)
        self.novelty.set(result.novelty)
        if getattr(result, "feature_active", None) is not None:
            self.feature_active.set(result.feature_active)
        self.step.set(result.step)
        if result.correct is not None:
            self.labelled.inc()
            if result.correct:
                self.correct.inc()

    def observe_network(self, neurons: int, synapses: int, persistent: int, sparsity: float) -> None:
        self.neurons.set(neurons)
        self.synapses.set(synapses)
        self.persistent.set(persistent)
        self.sparsity.set(sparsity)

    def serve(self, host: str, port: int) -> int:
        """Start the HTTP endpoint; returns the bound port."""
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        self._server = server
        return int(server.server_port)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

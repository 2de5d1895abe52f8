"""Prometheus metrics (own registry, so several servers can live in one test process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily

from ..engine.outputs import EngineStats

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "atom_requests", "Finished HTTP requests by status", ["endpoint", "status"], registry=r
        )
        self.unauthorized = Counter(
            "atom_unauthorized_requests", "Requests refused for a missing or wrong API key", registry=r
        )
        self.ttft = Histogram(
            "atom_time_to_first_token_seconds", "Time to first token", buckets=LATENCY_BUCKETS, registry=r
        )
        self.tpot = Histogram(
            "atom_time_per_output_token_seconds",
            "Time per output token after the first",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.e2e = Histogram(
            "atom_e2e_request_latency_seconds",
            "End-to-end request latency",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.running = Gauge("atom_num_requests_running", "Requests being computed", registry=r)
        self.waiting = Gauge("atom_num_requests_waiting", "Requests waiting for a batch slot", registry=r)
        self.kv_usage = Gauge("atom_kv_cache_usage_ratio", "Fraction of KV blocks in use", registry=r)
        self.prefix_hit = Gauge("atom_prefix_cache_hit_rate", "Prefix-cache block hit rate", registry=r)
        self.free_blocks = Gauge("atom_kv_cache_free_blocks", "Free KV blocks", registry=r)
        self.core_counters = CoreCounters()
        r.register(self.core_counters)
        # data parallelism: each replica's load and cache, and why the router sent requests where it did
        self.replica_labels: set[str] = set()
        self.replica_up = Gauge("atom_replica_up", "1 while a replica serves", ["replica"], registry=r)
        self.replica_load = Gauge(
            "atom_replica_requests_in_flight", "Requests a replica is computing", ["replica"], registry=r
        )
        self.replica_prefix_hit = Gauge(
            "atom_replica_prefix_cache_hit_rate",
            "A replica's prefix-cache block hit rate",
            ["replica"],
            registry=r,
        )
        self.replica_routed = Gauge(
            "atom_replica_routed_requests", "Requests sent to a replica, by the router's reason",
            ["replica", "reason"], registry=r,
        )  # fmt: skip

    def observe_stats(self, stats) -> None:
        """From the EngineStats the core sends with every step (never from the scheduler itself)."""
        self.running.set(stats.running)
        self.waiting.set(stats.waiting)
        self.kv_usage.set(stats.kv_usage)
        self.prefix_hit.set(stats.prefix_hit_rate)
        self.free_blocks.set(stats.free_blocks)
        self.core_counters.stats = stats

    def observe_replicas(self, engine) -> None:
        loads = engine.replica_loads()
        for gone in self.replica_labels - {str(r.index) for r in engine.replicas}:  # retired (autoscaling)
            for gauge in (self.replica_up, self.replica_load, self.replica_prefix_hit):
                gauge.remove(gone)
        self.replica_labels = {str(r.index) for r in engine.replicas}
        for replica in engine.replicas:
            label = str(replica.index)
            self.replica_up.labels(label).set(1 if replica.ready else 0)
            self.replica_load.labels(label).set(loads[replica.index])
            self.replica_prefix_hit.labels(label).set(replica.stats.prefix_hit_rate)
        for (index, reason), count in engine.routed.items():
            self.replica_routed.labels(str(index), reason).set(count)


class CoreCounters:
    """The core's cumulative counters as Prometheus counters: the core counts, this only reports the
    latest values it sent (a Counter object cannot be set)."""

    FIELDS = (
        ("steps", "atom_engine_steps", "Engine steps run"),
        ("step_seconds", "atom_engine_step_seconds", "Time inside engine steps"),
        ("batch_sequences", "atom_engine_batch_sequences", "Sequences scheduled, summed over steps"),
        ("batch_tokens", "atom_engine_batch_tokens", "Tokens computed, summed over steps"),
        ("graph_steps", "atom_engine_graph_steps", "Engine steps replayed from CUDA graphs"),
        ("graph_step_seconds", "atom_engine_graph_step_seconds", "Time inside CUDA-graph steps"),
        ("ipc_seconds", "atom_engine_ipc_seconds", "Engine-core loop time outside steps while busy"),
        ("kernel_compiles", "atom_engine_kernel_compiles", "Triton kernels compiled after the warm-up"),
    )

    def __init__(self) -> None:
        self.stats = EngineStats()

    def collect(self):
        for field, name, doc in self.FIELDS:
            yield CounterMetricFamily(name, doc, value=getattr(self.stats, field))

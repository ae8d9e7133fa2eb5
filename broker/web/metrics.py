"""Prometheus metrics of one broker process, on a registry of its own.

A registry per app (not the global default) lets tests run many brokers in
one process and read each one's counters.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["Metrics"]


class Metrics:
    """Every metric the broker exports on `/metrics`."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        # Write side.
        self.events_received = Counter(
            "broker_events_received", "Events received from agents", registry=r
        )
        self.events_dropped = Counter(
            "broker_events_dropped", "Malformed or unknown agent events dropped", registry=r
        )
        self.events_oversized = Counter(
            "broker_events_oversized",
            "Agent events refused for being over BROKER_MAX_EVENT_BYTES",
            registry=r,
        )
        self.events_flushed = Counter("broker_events_flushed", "Events durably stored", registry=r)
        self.flushes = Counter("broker_flushes", "Flush transactions committed", registry=r)
        self.flush_retries = Counter(
            "broker_flush_retries", "Flushes retried after a database error", registry=r
        )
        self.flush_duration = Histogram(
            "broker_flush_duration_seconds",
            "Duration of one flush transaction",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=r,
        )
        self.batch_size = Histogram(
            "broker_flush_batch_size",
            "Events per flush",
            buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000),
            registry=r,
        )
        self.buffered_events = Gauge(
            "broker_buffered_events", "Events waiting to be flushed", registry=r
        )
        self.active_producers = Gauge(
            "broker_active_producers", "Runs this process is producing", registry=r
        )
        # Read side.
        self.viewers = Gauge("broker_viewers", "Connected viewers", registry=r)
        self.tails = Gauge("broker_tails", "Runs tailed by this process", registry=r)
        self.tail_reads = Counter(
            "broker_tail_reads", "Statements run by the tails (polls and sweeps)", registry=r
        )
        self.notifications = Counter("broker_notifications", "NOTIFY wake-ups received", registry=r)
        self.events_delivered = Counter(
            "broker_events_delivered", "Events written to viewers", registry=r
        )
        self.catchup_reads = Counter(
            "broker_catchup_reads",
            "Statements run by viewers reading the table (catching up, or cut loose)",
            registry=r,
        )
        # Agent callbacks.
        self.integration_queries = Counter(
            "broker_integration_queries",
            "Integration queries run for agents, by outcome (ok or the error code)",
            ["outcome"],
            registry=r,
        )
        self.integration_query_duration = Histogram(
            "broker_integration_query_duration_seconds",
            "Duration of one integration query, connect included",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)

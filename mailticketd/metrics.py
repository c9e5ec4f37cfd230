"""The daemon's counters and histograms, in a registry of its own, for ``/metrics`` and ``mailticketd status``.

Queue sizes are not counted here: they are read from the database at each
scrape, so they are right after a restart and for the CLI too.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


class Metrics:
    """One set of metrics per daemon (tests run several daemons in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.accepted = Counter("mailticketd_smtp_accepted", "Mails accepted over SMTP (250 after the commit)",
                                registry=r)
        self.refused = Counter("mailticketd_smtp_refused", "SMTP refusals by reply code", ["code"], registry=r)
        self.processed = Counter("mailticketd_mails_processed", "Mails processed by the pipeline, by decision",
                                 ["decision"], registry=r)
        self.failed = Counter("mailticketd_mails_failed", "Failed processing attempts", registry=r)
        self.latency = Histogram("mailticketd_processing_latency_seconds",
                                 "Time from the SMTP 250 until the mail was processed", buckets=LATENCY_BUCKETS,
                                 registry=r)
        self.sent = Counter("mailticketd_outbox_sent", "Outgoing mails delivered", registry=r)
        self.retried = Counter("mailticketd_outbox_retried", "Outgoing mails deferred for a retry", registry=r)
        self.delivery_failed = Counter("mailticketd_outbox_delivery_failed", "Outgoing mails that failed for good",
                                       registry=r)
        self.inbox_backlog = Gauge("mailticketd_inbox_backlog", "Mails waiting to be processed", registry=r)
        self.inbox_failed = Gauge("mailticketd_inbox_failed", "Mails kept as failed", registry=r)
        self.outbox_queued = Gauge("mailticketd_outbox_queued", "Outgoing mails waiting to be sent", registry=r)
        self.outbox_failed = Gauge("mailticketd_outbox_failed", "Outgoing mails marked failed", registry=r)

    def render(self) -> bytes:
        """The Prometheus text exposition format."""
        return generate_latest(self.registry)

"""The worker's Prometheus metrics, served at `/metrics` on its web server.

Labels are bounded sets (reason codes, outcomes, partitions, backends): never a user id or event id.
Gauges about pending state and consumer lag are computed when scraped, from callbacks the app
registers, so they cannot drift from the state they describe.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

__all__ = ["PendingFigures", "StreamMetrics"]

# Seconds: from interactive (sub-second ledger) to long AlignXplore+ generations under load.
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200)
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 128)


@dataclass(frozen=True)
class PendingFigures:
    """What this worker is waiting for, read at scrape time (the autoscaling signals, docs/operations.md)."""

    users: int = 0  # users with events not yet in their profile
    events: int = 0
    oldest_age_s: float = 0.0  # age of the oldest pending event
    oldest_active_age_s: float = 0.0  # the same, parked users left out (they wait for an operator, not the model)
    in_flight: int = 0  # updates running or awaiting apply
    parked: int = 0
    waiting: int = 0  # users whose update was due at the last pass and found no free model slot
    running: int = 0  # model calls running now
    slots: int = 0  # the backend's window: model calls it runs at once


class _Callbacks(Collector):
    """Gauges read at scrape time."""

    def __init__(self) -> None:
        self.pending: Callable[[], PendingFigures] = PendingFigures
        self.lag: Callable[[], Mapping[tuple[str, int], int]] = dict

    def collect(self) -> Iterable[GaugeMetricFamily]:
        f = self.pending()
        yield GaugeMetricFamily("prefstream_users_pending", "Users with events not yet in their profile.", f.users)
        yield GaugeMetricFamily("prefstream_events_pending", "Accepted events not yet in a profile.", f.events)
        yield GaugeMetricFamily(
            "prefstream_oldest_pending_age_seconds", "Age of the oldest pending event on this worker.", f.oldest_age_s
        )
        yield GaugeMetricFamily(
            "prefstream_oldest_active_pending_age_seconds",
            "Age of the oldest pending event of a user that is not parked (the autoscaling age signal).",
            f.oldest_active_age_s,
        )
        yield GaugeMetricFamily("prefstream_updates_in_flight", "Model updates running or awaiting apply.", f.in_flight)
        yield GaugeMetricFamily("prefstream_users_parked", "Users parked after repeated failures.", f.parked)
        # The autoscaling signals (docs/operations.md, "Scaling"): demand the model window cannot take now.
        yield GaugeMetricFamily(
            "prefstream_users_waiting",
            "Users whose update is due but found no free model slot at the last scheduling pass.",
            f.waiting,
        )
        yield GaugeMetricFamily("prefstream_model_requests_running", "Model calls running now.", f.running)
        yield GaugeMetricFamily(
            "prefstream_model_slots", "The backend's window: model calls this worker runs at once.", f.slots
        )
        lag = GaugeMetricFamily(
            "prefstream_consumer_lag", "Messages behind the log end, per consumed partition.", labels=["topic", "partition"]
        )
        for (topic, partition), value in sorted(self.lag().items()):
            lag.add_metric([topic, str(partition)], value)
        yield lag


class StreamMetrics:
    """Every metric the worker exports, on its own registry."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.callbacks = _Callbacks()
        r.register(self.callbacks)
        self.events_received = Counter(
            "prefstream_events_received", "Messages read from the events topic.", registry=r
        )
        self.events_accepted = Counter(
            "prefstream_events_accepted", "Valid, new events buffered for their user (by the owning worker).", registry=r
        )
        self.events_rejected = Counter(
            "prefstream_events_rejected", "Invalid events sent to the dead-letter topic, by code.", ["reason"], registry=r
        )
        self.events_repartitioned = Counter(
            "prefstream_events_repartitioned",
            "Events forwarded to the partition that owns their user, by cause (partitioner, key).",
            ["cause"],
            registry=r,
        )
        self.events_duplicate = Counter(
            "prefstream_events_duplicate", "Redelivered or repeated events dropped by dedupe.", registry=r
        )
        self.forgets = Counter("prefstream_forgets", "Forget events applied.", registry=r)
        self.events_dropped = Counter(
            "prefstream_events_dropped",
            "Valid events not applied, by reason (before_forget: it happened before the user's last forget).",
            ["reason"], registry=r,
        )
        self.events_per_update = Histogram(
            "prefstream_events_per_update", "Events folded by each applied update.", buckets=BATCH_BUCKETS, registry=r
        )
        self.event_to_profile = Histogram(
            "prefstream_event_to_profile_seconds",
            "From an event's Kafka timestamp to the publish of the profile that includes it.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.model_latency = Histogram(
            "prefstream_model_latency_seconds",
            "Duration of model update calls, by outcome.",
            ["outcome"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "prefstream_model_tokens",
            "Model tokens by direction (in: prompt, out: completion) and source (the backend).",
            ["direction", "source"],
            registry=r,
        )
        self.update_failures = Counter(
            "prefstream_update_failures", "Failed model updates, by reason code.", ["reason"], registry=r
        )
        self.updates = Counter(
            "prefstream_updates",
            "Results handled by apply: applied, failed, or stale (lost the compare-and-set), by outcome.",
            ["outcome"],
            registry=r,
        )
        self.parks = Counter("prefstream_parks", "Users parked after exhausting their attempts.", registry=r)
        self.profile_publishes = Counter(
            "prefstream_profile_publishes", "Records sent to the profiles topic, by kind (profile, tombstone, republish: a replay's profile sent again).",
            ["kind"], registry=r,
        )
        self.offset_gaps = Counter(
            "prefstream_offset_gaps",
            "Jumps in a source partition's offsets the agent found and resolved before going on, by source "
            "(events, repartition, results). Any count here means a consumer defect was caught.",
            ["source"], registry=r,
        )
        self.gap_records_recovered = Counter(
            "prefstream_gap_records_recovered",
            "Records read back from the broker for skipped offsets and processed, by source.",
            ["source"], registry=r,
        )
        self.gap_offsets_empty = Counter(
            "prefstream_gap_offsets_empty",
            "Skipped offsets confirmed to hold no record (transaction markers, compaction), by source.",
            ["source"], registry=r,
        )
        self.gap_offsets_expired = Counter(
            "prefstream_gap_offsets_expired",
            "Skipped offsets the topic's retention had deleted before they could be read back, by source: events "
            "lost to retention while their partition had no owner for longer than the retention.",
            ["source"], registry=r,
        )
        self.records_replayed = Counter(
            "prefstream_records_replayed",
            "Source records the state already included, processed again after a restart or rebalance, by source.",
            ["source"], registry=r,
        )
        self.dead_letter_values_omitted = Counter(
            "prefstream_dead_letter_values_omitted",
            "Dead letters sent without their value: larger than the dead-letter topic takes (see its header).",
            registry=r,
        )
        self.dead_letters_suppressed = Counter(
            "prefstream_dead_letters_suppressed",
            "Replayed rejected events not dead-lettered again: the broker had confirmed their dead letter.",
            registry=r,
        )
        self.update_records = Counter(
            "prefstream_update_records", "Records sent to the updates topic, by kind (record, republish: a replay's "
            "record sent again).", ["kind"], registry=r,
        )  # fmt: skip
        self.requests_aborted = Counter(
            "prefstream_requests_aborted", "In-flight updates cancelled, by cause (revoked, forget, shutdown).",
            ["cause"], registry=r,
        )

"""Tenants in the worker: per-tenant limits and bounded per-tenant metrics.

A user key (`schemas.keys`) names its tenant; events without one belong to no tenant and are never
limited here. Three limits, each per tenant and per worker (a worker sees only the partitions it owns;
with W workers a tenant may get up to W times a limit, less when its users are unevenly spread):

- events per second: a token bucket with one second of burst; an event past it is dead-lettered
  `tenant_rate_limited` (`Ingest` asks `admit_event`);
- pending events: the sum of the pending counts of the tenant's users, kept from the fold scheduler's
  views (`observe`, `reset`); an event past it is dead-lettered `tenant_backlog_full`;
- model tokens per minute: a token bucket the scheduler charges with each update's prompt and completion
  tokens (`charge`); while it is empty the tenant's updates are not started (`may_start`), so its events
  wait, and once its pending limit is reached, its new events are dead-lettered.

Metric labels are bounded (`TenantLabels`): the first `PREFSTREAM_TENANT_LABEL_VALUES_MAX` tenants seen
get their own label value, later ones share `_other`, events without a tenant are `_none` (tenant names
start with a letter or digit, so neither can collide with one).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final

from prometheus_client import CollectorRegistry, Counter

from prefstream.schemas.errors import StreamCode
from prefstream.schemas.keys import split_key
from prefstream.settings import TenantSettings
from prefstream.streams.policy import UserView

__all__ = ["Bucket", "TenantLabels", "TenantLimits", "TenantMetrics", "Tenancy", "tenant_of"]

NO_TENANT: Final = "_none"
OTHER: Final = "_other"


def tenant_of(key: str) -> str | None:
    """The tenant of a user key (None: no tenant)."""
    return split_key(key)[0]


@dataclass
class Bucket:
    """A token bucket: `rate` per second, at most `capacity`; it may go into debt (a charge after the fact)."""

    rate: float
    capacity: float
    level: float | None = None  # None: not used yet (starts full)
    updated: float = 0.0

    def refill(self, now: float) -> float:
        if self.level is None:
            self.level = self.capacity
        else:
            self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
        self.updated = now
        return self.level

    def take(self, amount: float, now: float) -> bool:
        """Take `amount` if the bucket holds that much."""
        level = self.refill(now)
        if level >= amount:
            self.level = level - amount
            return True
        return False

    def charge(self, amount: float, now: float) -> None:
        self.level = self.refill(now) - amount


@dataclass(frozen=True)
class Limits:
    events_per_s: float
    max_pending_events: int
    tokens_per_min: int


@dataclass
class TenantLimits:
    """The three limits of every tenant, and the state they need (memory only: rebuilt after a rebalance)."""

    settings: TenantSettings
    clock: Callable[[], float] = time.monotonic
    _overrides: dict[str, dict[str, float]] = field(default_factory=dict)
    _rates: dict[str, Bucket] = field(default_factory=dict)
    _tokens: dict[str, Bucket] = field(default_factory=dict)
    _pending_by_key: dict[str, tuple[str, int]] = field(default_factory=dict)
    _pending: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._overrides = self.settings.overrides()

    def limits(self, tenant: str) -> Limits:
        s, o = self.settings, self._overrides.get(tenant, {})
        return Limits(
            events_per_s=o.get("events_per_s", s.events_per_s),
            max_pending_events=int(o.get("max_pending_events", s.max_pending_events)),
            tokens_per_min=int(o.get("tokens_per_min", s.tokens_per_min)),
        )

    # --- events ---------------------------------------------------------------------------------

    def admit_event(self, key: str) -> StreamCode | None:
        """None if the tenant may add one more pending event now; otherwise the dead-letter code."""
        tenant = tenant_of(key)
        if tenant is None:
            return None
        lim = self.limits(tenant)
        if lim.max_pending_events and self._pending.get(tenant, 0) >= lim.max_pending_events:
            return StreamCode.TENANT_BACKLOG_FULL
        if lim.events_per_s:
            bucket = self._rates.get(tenant)
            if bucket is None:
                bucket = self._rates[tenant] = Bucket(lim.events_per_s, max(1.0, lim.events_per_s))
            if not bucket.take(1.0, self.clock()):
                return StreamCode.TENANT_RATE_LIMITED
        return None

    def pending(self, tenant: str) -> int:
        return self._pending.get(tenant, 0)

    def observe(self, key: str, view: UserView | None) -> None:
        """The user's pending count changed (None: nothing pending)."""
        tenant = tenant_of(key)
        if tenant is None:
            return
        old = self._pending_by_key.pop(key, None)
        if old is not None:
            self._pending[tenant] = self._pending.get(tenant, 0) - old[1]
        if view is not None and view.count:
            self._pending_by_key[key] = (tenant, view.count)
            self._pending[tenant] = self._pending.get(tenant, 0) + view.count

    def reset(self, views: Mapping[str, UserView]) -> None:
        """Recount from the scheduler's views (after an assignment changed them wholesale)."""
        self._pending_by_key.clear()
        self._pending.clear()
        for key, view in views.items():
            self.observe(key, view)

    # --- model tokens ---------------------------------------------------------------------------

    def _token_bucket(self, tenant: str) -> Bucket | None:
        per_min = self.limits(tenant).tokens_per_min
        if not per_min:
            return None
        bucket = self._tokens.get(tenant)
        if bucket is None:
            bucket = self._tokens[tenant] = Bucket(per_min / 60.0, float(per_min))
        return bucket

    def may_start(self, key: str) -> bool:
        """Whether an update of this user may start now (its tenant has model tokens left this minute)."""
        tenant = tenant_of(key)
        bucket = None if tenant is None else self._token_bucket(tenant)
        return bucket is None or bucket.refill(self.clock()) > 0

    def charge(self, key: str, tokens: int) -> None:
        """An update of this user used `tokens` (prompt + completion)."""
        tenant = tenant_of(key)
        bucket = None if tenant is None else self._token_bucket(tenant)
        if bucket is not None:
            bucket.charge(tokens, self.clock())


@dataclass
class TenantLabels:
    """Bounded label values: the first `max_values` tenants by name, then `_other`; `_none` for no tenant."""

    max_values: int
    _named: set[str] = field(default_factory=set)

    def __call__(self, key: str) -> str:
        tenant = tenant_of(key)
        if tenant is None:
            return NO_TENANT
        if tenant in self._named:
            return tenant
        if len(self._named) < self.max_values:
            self._named.add(tenant)
            return tenant
        return OTHER


class TenantMetrics:
    """Per-tenant counters, on the worker's registry, with bounded tenant labels."""

    def __init__(self, registry: CollectorRegistry, labels: TenantLabels) -> None:
        self.label = labels
        self.accepted = Counter("prefstream_tenant_events_accepted", "Events accepted, by tenant.", ["tenant"],
                                registry=registry)  # fmt: skip
        self.rejected = Counter(
            "prefstream_tenant_events_rejected",
            "Valid events dead-lettered by the stream's limits, by tenant and code (tenant_rate_limited, "
            "tenant_backlog_full, backlog_full).",
            ["tenant", "reason"], registry=registry,
        )  # fmt: skip
        self.tokens = Counter("prefstream_tenant_model_tokens", "Model tokens by tenant and direction (in, out).",
                              ["tenant", "direction"], registry=registry)  # fmt: skip
        self.updates = Counter("prefstream_tenant_updates", "Updates applied, by tenant.", ["tenant"],
                               registry=registry)  # fmt: skip
        self.throttled = Counter(
            "prefstream_tenant_updates_throttled",
            "Scheduler passes in which a due update waited because its tenant's tokens per minute were used up.",
            ["tenant"], registry=registry,
        )  # fmt: skip


@dataclass
class Tenancy:
    """What the stream modules call: limits and metrics together."""

    limits: TenantLimits
    metrics: TenantMetrics

    @classmethod
    def from_settings(cls, settings: TenantSettings, registry: CollectorRegistry) -> Tenancy:
        return cls(TenantLimits(settings), TenantMetrics(registry, TenantLabels(settings.label_values_max)))

    def accepted(self, key: str) -> None:
        self.metrics.accepted.labels(self.metrics.label(key)).inc()

    def rejected(self, key: str, code: str) -> None:
        self.metrics.rejected.labels(self.metrics.label(key), code).inc()

    def applied(self, key: str) -> None:
        self.metrics.updates.labels(self.metrics.label(key)).inc()

    def charge(self, key: str, prompt_tokens: int, completion_tokens: int) -> None:
        label = self.metrics.label(key)
        self.metrics.tokens.labels(label, "in").inc(prompt_tokens)
        self.metrics.tokens.labels(label, "out").inc(completion_tokens)
        self.limits.charge(key, prompt_tokens + completion_tokens)

    def may_start(self, key: str) -> bool:
        if self.limits.may_start(key):
            return True
        self.metrics.throttled.labels(self.metrics.label(key)).inc()
        return False

"""Per-tenant limits and bounded metric labels (pure, with a controlled clock)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from prefstream.schemas.errors import StreamCode
from prefstream.schemas.keys import split_key, user_key
from prefstream.settings import TenantSettings
from prefstream.streams.policy import UserView
from prefstream.streams.tenancy import TenantLabels, TenantLimits, Tenancy, TenantMetrics


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def view(count: int) -> UserView:
    return UserView(partition=0, epoch=1, count=count, tokens=count, oldest_ms=0, newest_ms=0)


def test_user_key_is_the_user_id_without_a_tenant_and_splits_back() -> None:
    """No tenant: the key is the user id (as before tenants); with one, `tenant/user_id`, split unambiguously."""
    assert user_key(None, "u:1@x") == "u:1@x" and split_key("u:1@x") == (None, "u:1@x")
    assert user_key("shop", "u:1@x") == "shop/u:1@x" and split_key("shop/u:1@x") == ("shop", "u:1@x")


def test_events_per_second_bucket_and_override() -> None:
    """A tenant gets one second of burst at its rate, then refills; an override changes one tenant only;
    events without a tenant are never limited."""
    clock = Clock()
    limits = TenantLimits(TenantSettings(events_per_s=2, limits='{"big": {"events_per_s": 5}}'), clock=clock)
    assert [limits.admit_event("a/u") for _ in range(3)] == [None, None, StreamCode.TENANT_RATE_LIMITED]
    assert sum(limits.admit_event("big/u") is None for _ in range(7)) == 5
    assert all(limits.admit_event("plain-user") is None for _ in range(100))
    clock.now += 0.5
    assert limits.admit_event("a/u") is None and limits.admit_event("a/u") == StreamCode.TENANT_RATE_LIMITED


def test_pending_limit_counts_every_user_of_the_tenant() -> None:
    """The pending count is the sum over the tenant's users, follows every view change and a reset."""
    limits = TenantLimits(TenantSettings(max_pending_events=5))
    limits.observe("a/u1", view(3))
    limits.observe("a/u2", view(2))
    limits.observe("b/u1", view(4))
    assert (limits.pending("a"), limits.pending("b")) == (5, 4)
    assert limits.admit_event("a/u3") == StreamCode.TENANT_BACKLOG_FULL and limits.admit_event("b/u1") is None
    limits.observe("a/u1", None)  # applied
    assert limits.pending("a") == 2 and limits.admit_event("a/u1") is None
    limits.reset({"a/u9": view(1)})
    assert (limits.pending("a"), limits.pending("b")) == (1, 0)


def test_tokens_per_minute_hold_updates_until_refilled() -> None:
    """Once a tenant's tokens of the minute are spent, its updates may not start; they may after the refill."""
    clock = Clock()
    limits = TenantLimits(TenantSettings(tokens_per_min=600), clock=clock)
    assert limits.may_start("a/u")
    limits.charge("a/u", 900)  # one update may overdraw: it was started while tokens were left
    assert not limits.may_start("a/u") and limits.may_start("b/u") and limits.may_start("plain")
    clock.now += 31  # 10 tokens/s: 310 back, 10 above zero
    assert limits.may_start("a/u")


def test_metric_labels_are_bounded() -> None:
    """The first N tenants keep their name, later ones are `_other`, no tenant is `_none`."""
    labels = TenantLabels(max_values=2)
    assert [labels(k) for k in ("a/u", "b/u", "c/u", "a/v", "u")] == ["a", "b", "_other", "a", "_none"]
    registry = CollectorRegistry()
    tenancy = Tenancy(TenantLimits(TenantSettings()), TenantMetrics(registry, TenantLabels(1)))
    for key in ("a/u", "b/u", "c/u"):
        tenancy.accepted(key)
    assert registry.get_sample_value("prefstream_tenant_events_accepted_total", {"tenant": "a"}) == 1
    assert registry.get_sample_value("prefstream_tenant_events_accepted_total", {"tenant": "_other"}) == 2

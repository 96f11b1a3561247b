"""Timestamps on the wire: RFC 3339 strings or epoch milliseconds in, RFC 3339 UTC strings out."""

from __future__ import annotations

import datetime as dt
import re
from typing import Final

from schemas.bounds import TS_PATTERN

_TS = re.compile(TS_PATTERN)
# The same shape as TS_PATTERN, with groups to read the parts.
_PARTS = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:([Zz])|([+-])(\d{2}):(\d{2}))$"
)
_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def ts_to_ms(ts: str | int) -> int:
    """Epoch milliseconds of an event `ts`. Raises ValueError for a date that does not exist.

    A string must already match `TS_PATTERN` (the decoder guarantees it); fractions beyond
    milliseconds are truncated, not rounded, so the result never lies in the future of the input.
    """
    if isinstance(ts, int):
        return ts
    m = _PARTS.match(ts) if _TS.match(ts) else None
    if m is None:
        raise ValueError("not an RFC 3339 date-time")
    year, month, day, hour, minute, second = (int(m.group(i)) for i in range(1, 7))
    frac = m.group(7) or ""
    if m.group(8):
        tz = dt.UTC
    else:
        sign = 1 if m.group(9) == "+" else -1
        tz = dt.timezone(sign * dt.timedelta(hours=int(m.group(10)), minutes=int(m.group(11))))
    # datetime() refuses days that do not exist (2025-02-30) and years outside 1..9999.
    when = dt.datetime(year, month, day, hour, minute, second, tzinfo=tz)
    millis = int((frac + "000")[:3])
    delta = when - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + millis


def ms_to_rfc3339(ms: int) -> str:
    """An RFC 3339 UTC string with millisecond precision, e.g. `2026-01-31T08:15:00.250Z`."""
    when = _EPOCH + dt.timedelta(milliseconds=ms)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def now_rfc3339() -> str:
    """The current time as `ms_to_rfc3339` writes it."""
    now = dt.datetime.now(dt.UTC)
    return ms_to_rfc3339(int((now - _EPOCH).total_seconds() * 1000))

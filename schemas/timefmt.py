"""Timestamps on the wire: RFC 3339 strings or epoch milliseconds in, RFC 3339 UTC strings out."""

from __future__ import annotations

import datetime as dt
import re
from typing import Final

from prefstream.schemas.bounds import MAX_EPOCH_MS, TS_PATTERN

_TS = re.compile(TS_PATTERN)
# The same shape as TS_PATTERN, with groups to read the parts.
_PARTS = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:([Zz])|([+-])(\d{2}):(\d{2}))$"
)
_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
#: Epoch milliseconds of 0001-01-01T00:00:00Z, the earliest instant RFC 3339 can write (in UTC).
MIN_EPOCH_MS: Final = -62_135_596_800_000


def ts_to_ms(ts: str | int) -> int:
    """Epoch milliseconds of an event `ts`. Raises ValueError for a date that does not exist.

    A string must already match `TS_PATTERN` (the decoder guarantees it); fractions beyond
    milliseconds are truncated, not rounded, so the result never lies in the future of the input.
    A local time whose offset moves it outside the years 1 to 9999 in UTC (`9999-12-31T23:59:59-01:00`,
    `0001-01-01T00:00:00+01:00`) names an instant no RFC 3339 UTC string can write (`ms_to_rfc3339`
    could not write it back into a profile), so it is refused like a date that does not exist.
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
    ms = (delta.days * 86_400 + delta.seconds) * 1000 + millis
    if not MIN_EPOCH_MS <= ms <= MAX_EPOCH_MS:
        raise ValueError("outside 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999Z")
    return ms


def ms_to_rfc3339(ms: int) -> str:
    """An RFC 3339 UTC string with millisecond precision, e.g. `2026-01-31T08:15:00.250Z`.

    `ms` must lie in MIN_EPOCH_MS to MAX_EPOCH_MS (years 1 to 9999); the year always has four digits
    (strftime's `%Y` writes year 999 as `999` on glibc, which is not RFC 3339).
    """
    when = _EPOCH + dt.timedelta(milliseconds=ms)
    return f"{when.year:04d}-" + when.strftime("%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def now_rfc3339() -> str:
    """The current time as `ms_to_rfc3339` writes it."""
    now = dt.datetime.now(dt.UTC)
    return ms_to_rfc3339(int((now - _EPOCH).total_seconds() * 1000))

"""ISO 8601 renderings of epoch-based numbers, in the layouts of the reference's tables.

All instants are rendered in UTC, so the reference's `XXX` offset is always `Z` (Java writes a
zero offset as `Z`). Fraction digits are fixed per layout (`SSS` = 3, `SSSSSS` = 6,
`SSSSSSSSS` = 9), never trimmed. Years are zero-padded to four digits. Values outside the
years 1..9999 raise `ValueError` (Python's datetime range); callers decide what that means.
"""

from __future__ import annotations

from datetime import date, timedelta

_EPOCH_DATE = date(1970, 1, 1)
_NANOS_PER_DAY = 86_400 * 1_000_000_000


_TWO = tuple(f"{i:02d}" for i in range(100))
_THREE = tuple(f"{i:03d}" for i in range(1000))
_DAYS: dict[int, str] = {}  # epoch day → 'yyyy-MM-ddT'; messages cluster on few days


def _day_prefix(days: int) -> str:
    prefix = _DAYS.get(days)
    if prefix is None:
        if len(_DAYS) >= 4096:
            _DAYS.clear()
        prefix = _DAYS[days] = epoch_day(days) + "T"
    return prefix


def epoch_units(value: int, per_second: int, digits: int, zone: str = "Z") -> str:
    """`value` units since the epoch (per_second: 1000 for ms, ...) → 'yyyy-MM-ddTHH:mm:ss.F…'."""
    seconds, fraction = divmod(value, per_second)  # floor: negative values count back correctly
    days, second_of_day = divmod(seconds, 86_400)
    minutes, sec = divmod(second_of_day, 60)
    hour, minute = divmod(minutes, 60)
    frac = _THREE[fraction] if digits == 3 else f"{fraction:0{digits}d}"
    return f"{_day_prefix(days)}{_TWO[hour]}:{_TWO[minute]}:{_TWO[sec]}.{frac}{zone}"


#: The 'SSS' fraction of a millisecond count (index 0..999), for callers that inline millis_utc.
MILLIS_DIGITS = _THREE
_SECONDS: dict[int, str] = {}  # epoch second → 'yyyy-MM-ddTHH:mm:ss.'; hot in metadata times


def second_prefix(seconds: int) -> str:
    """Epoch second → 'yyyy-MM-ddTHH:mm:ss.' (cached): millis_utc is this + 'SSS' + 'Z'."""
    prefix = _SECONDS.get(seconds)
    if prefix is None:
        if len(_SECONDS) >= 4096:
            _SECONDS.clear()
        prefix = _SECONDS[seconds] = epoch_units(seconds * 1000, 1000, 3)[:-4]
    return prefix


def millis_utc(ms: int) -> str:
    """'yyyy-MM-ddTHH:mm:ss.SSSZ' (DATE, TIME, TIMESTAMP, timestamp-millis, metadata times)."""
    seconds, fraction = divmod(ms, 1000)
    prefix = _SECONDS.get(seconds)
    if prefix is None:
        prefix = second_prefix(seconds)
    return f"{prefix}{_THREE[fraction]}Z"


def micros_utc(us: int) -> str:
    """'yyyy-MM-ddTHH:mm:ss.SSSSSSZ' (timestamp-micros)."""
    return epoch_units(us, 1_000_000, 6)


def nanos_utc(ns: int) -> str:
    """'yyyy-MM-ddTHH:mm:ss.SSSSSSSSSZ' (timestamp-nanos)."""
    return epoch_units(ns, 1_000_000_000, 9)


def millis_local(ms: int) -> str:
    """'yyyy-MM-ddTHH:mm:ss.SSS' (local-timestamp-millis)."""
    return epoch_units(ms, 1000, 3, "")


def micros_local(us: int) -> str:
    """'yyyy-MM-ddTHH:mm:ss.SSSSSS' (local-timestamp-micros)."""
    return epoch_units(us, 1_000_000, 6, "")


def nanos_local(ns: int) -> str:
    """'yyyy-MM-ddTHH:mm:ss.SSSSSSSSS' (local-timestamp-nanos)."""
    return epoch_units(ns, 1_000_000_000, 9, "")


def instant(seconds: int, nanos: int) -> str:
    """Pulsar INSTANT (epoch seconds + nano adjustment) → 'yyyy-MM-ddTHH:mm:ss.SSSSSSSSSZ'."""
    if not 0 <= nanos < 1_000_000_000:
        raise ValueError(f"nano adjustment {nanos} is outside 0..999999999")
    return epoch_units(seconds * 1_000_000_000 + nanos, 1_000_000_000, 9)


_DATES: dict[int, str] = {}  # epoch day → 'yyyy-MM-dd'


def epoch_day(days: int) -> str:
    """Days since 1970-01-01 → 'yyyy-MM-dd' (LOCAL_DATE, Avro `date`)."""
    text = _DATES.get(days)
    if text is not None:
        return text
    try:
        d = _EPOCH_DATE + timedelta(days=days)
    except OverflowError as exc:
        raise ValueError(f"epoch day {days} is outside the years 1..9999") from exc
    if len(_DATES) >= 4096:
        _DATES.clear()
    text = _DATES[days] = f"{d.year:04d}-{d.month:02d}-{d.day:02d}"
    return text


def _time_of_day(value: int, per_second: int, digits: int, keep: int) -> str:
    if not 0 <= value < 86_400 * per_second:
        raise ValueError(f"time of day {value} is outside one day")
    seconds, fraction = divmod(value, per_second)
    minutes, sec = divmod(seconds, 60)
    hour, minute = divmod(minutes, 60)
    return f"{hour:02d}:{minute:02d}:{sec:02d}.{fraction // keep:0{digits}d}"


def nano_of_day(ns: int) -> str:
    """Pulsar LOCAL_TIME (nanos of day) → 'HH:mm:ss.SSSSSSSSS'."""
    return _time_of_day(ns, 1_000_000_000, 9, 1)


def millis_of_day(ms: int) -> str:
    """Avro time-millis → 'HH:mm:ss.SSS'."""
    return _time_of_day(ms, 1000, 3, 1)


def micros_of_day_as_millis(us: int) -> str:
    """Avro time-micros → 'HH:mm:ss.SSS', as the reference's table says (truncated to ms)."""
    return _time_of_day(us, 1_000_000, 3, 1000)


def local_date_time(days: int, nano_of_day_value: int) -> str:
    """Pulsar LOCAL_DATE_TIME (epoch day + nanos of day) → 'yyyy-MM-ddTHH:mm:ss.SSSSSSSSS'."""
    if not 0 <= nano_of_day_value < _NANOS_PER_DAY:
        raise ValueError(f"nano of day {nano_of_day_value} is outside one day")
    return f"{epoch_day(days)}T{nano_of_day(nano_of_day_value)}"

"""Five-field cron expressions and their occurrences in a time zone: pure, no I/O.

`parse("*/15 9-17 * * mon-fri")` gives a Cron; `next_after(cron, zone, instant)`
the first occurrence strictly after an aware UTC instant, as an aware UTC
datetime. Fields: minute (0-59), hour (0-23), day of month (1-31), month
(1-12 or jan-dec), day of week (0-7 or sun-sat, 0 and 7 both Sunday). Each
field is `*`, a number, a range `a-b`, a step `*/n`, `a-b/n` or `a/n`, or a
comma list of those. As in Vixie cron, when both day fields are restricted
(neither starts with `*`) a day matches if EITHER matches; otherwise both
must (one of them being every day).

Time zones, where a wall clock jumps:
- a wall time that does not exist (spring forward) fires once, at the first
  minute after the gap (02:30 on a 02:00->03:00 night fires at 03:00);
- a wall time that happens twice (fall back) fires once, the first time.
Zone names need the standard library's zoneinfo (Python 3.9+) and the
system's time zone files; on Python 3.8 only UTC and fixed offsets
(`+02:00`, `-0530`, `UTC+2`) are accepted.
"""

import re
from datetime import datetime, timedelta, timezone

MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
MACROS = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
          "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
          "@hourly": "0 * * * *"}
# (name, low, high, names whose index is the value offset by `base`)
FIELDS = (("minute", 0, 59, None, 0), ("hour", 0, 23, None, 0),
          ("day of month", 1, 31, None, 0), ("month", 1, 12, MONTH_NAMES, 1),
          ("day of week", 0, 7, DAY_NAMES, 0))
SEARCH_YEARS = 9  # Feb 29 on a given weekday recurs within this many years
MINUTE = timedelta(minutes=1)
_OFFSET = re.compile(r"(?:UTC|GMT)?([+-])(\d{1,2})(?::?(\d{2}))?\Z")


class CronError(ValueError):
    """An expression or time zone that cannot be used; the message says why."""


class Cron:
    def __init__(self, text, minutes, hours, days, months, weekdays, days_star, weekdays_star):
        self.text = text
        self.minutes = minutes
        self.hours = hours
        self.days = days
        self.months = months
        self.weekdays = weekdays
        self.days_star = days_star
        self.weekdays_star = weekdays_star

    def day_matches(self, day):
        """The day-of-month / day-of-week rule for one date."""
        in_days = day.day in self.days
        in_weekdays = (day.isoweekday() % 7) in self.weekdays
        if self.days_star or self.weekdays_star:
            return in_days and in_weekdays
        return in_days or in_weekdays

    def next_local(self, wall):
        """The first matching wall time (naive, whole minutes) after `wall`, or None."""
        t = wall.replace(second=0, microsecond=0) + MINUTE
        last_year = t.year + SEARCH_YEARS
        while t.year <= last_year:
            if t.month not in self.months:
                t = (t.replace(day=1, hour=0, minute=0) + timedelta(days=32)).replace(day=1)
                continue
            if not self.day_matches(t):
                t = t.replace(hour=0, minute=0) + timedelta(days=1)
                continue
            if t.hour not in self.hours:
                t = t.replace(minute=0) + timedelta(hours=1)
                continue
            later = [m for m in self.minutes if m >= t.minute]
            if not later:
                t = t.replace(minute=0) + timedelta(hours=1)
                continue
            return t.replace(minute=later[0])
        return None


def _value(token, name, low, high, names, base):
    token = token.lower()
    if names is not None and token in names:
        return names.index(token) + base
    if not token.isdigit():
        raise CronError("cron %s: %r is not a number%s" % (
            name, token, "" if names is None else " or a name (%s)" % "/".join(names[:3] + ("...",))))
    value = int(token)
    if not low <= value <= high:
        raise CronError("cron %s: %d is outside %d-%d" % (name, value, low, high))
    return value


def _field(text, name, low, high, names, base):
    values = set()
    for item in text.split(","):
        if not item:
            raise CronError("cron %s: empty list item in %r" % (name, text))
        spec, _, step_text = item.partition("/")
        step = 1
        if _:
            if not step_text.isdigit() or int(step_text) == 0:
                raise CronError("cron %s: step %r must be a whole number above 0" % (name, step_text))
            step = int(step_text)
        if spec == "*":
            start, stop = low, high
        elif "-" in spec:
            first, _, last = spec.partition("-")
            start = _value(first, name, low, high, names, base)
            stop = _value(last, name, low, high, names, base)
            if start > stop:
                raise CronError("cron %s: range %r runs backwards" % (name, spec))
        else:
            start = _value(spec, name, low, high, names, base)
            stop = high if _ else start
        values.update(range(start, stop + 1, step))
    return values


def parse(text):
    """A Cron from five fields or a macro (@hourly, @daily, @weekly, @monthly, @yearly)."""
    if not isinstance(text, str):
        raise CronError("cron must be a string")
    expanded = MACROS.get(text.strip().lower(), text)
    parts = expanded.split()
    if len(parts) != 5:
        raise CronError("cron must have five fields (minute hour day-of-month month day-of-week), "
                        "not %d" % len(parts))
    sets = [_field(part, *spec) for part, spec in zip(parts, FIELDS)]
    weekdays = {0 if day == 7 else day for day in sets[4]}
    cron = Cron(text, sorted(sets[0]), sets[1], sets[2], sets[3], weekdays,
                parts[2].startswith("*"), parts[4].startswith("*"))
    if cron.next_local(datetime(2000, 1, 1)) is None:
        raise CronError("cron %r never fires (no such day)" % text)
    return cron


def zone(name):
    """A tzinfo for an IANA name, UTC, or a fixed offset; CronError when unknown."""
    if not isinstance(name, str) or not name or len(name) > 64:
        raise CronError("timezone must be an IANA name like Europe/Prague, UTC or an offset like +02:00")
    if name.upper() in ("UTC", "Z", "GMT", "ETC/UTC"):
        return timezone.utc
    match = _OFFSET.match(name.upper())
    if match:
        sign, hours, minutes = match.groups()
        offset = timedelta(hours=int(hours), minutes=int(minutes or 0))
        if offset >= timedelta(hours=24):
            raise CronError("timezone offset %r is out of range" % name)
        return timezone(-offset if sign == "-" else offset)
    try:
        from zoneinfo import ZoneInfo
    except ImportError:
        raise CronError("time zone names need Python 3.9 or later on the server; "
                        "use UTC or a fixed offset like +02:00") from None
    try:
        return ZoneInfo(name)
    except (ValueError, KeyError, OSError):
        raise CronError("unknown time zone %r" % name) from None


def _to_utc(wall, tz):
    """The instant of a wall time: the first one in an overlap, the end of a gap."""
    instant = wall.replace(tzinfo=tz).astimezone(timezone.utc)
    if instant.astimezone(tz).replace(tzinfo=None) == wall:
        return instant
    probe = wall
    for _ in range(2 * 24 * 60):  # no gap is longer than a day
        probe += MINUTE
        instant = probe.replace(tzinfo=tz).astimezone(timezone.utc)
        if instant.astimezone(tz).replace(tzinfo=None) == probe:
            return instant
    raise CronError("no wall time after %s exists in this time zone" % wall)


def next_after(cron, tz, instant):
    """The first occurrence strictly after `instant` (aware), as aware UTC, or None."""
    wall = instant.astimezone(tz).replace(tzinfo=None)
    while True:
        wall = cron.next_local(wall)
        if wall is None:
            return None
        found = _to_utc(wall, tz)
        if found > instant:
            return found

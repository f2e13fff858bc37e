"""The cron parser and occurrence rules (lib/taskq/cron.py, schedules.Recurrence): pure units."""

import sys
from datetime import datetime, timedelta, timezone

import pytest

from taskq import cron
from taskq.schedules import Recurrence

UTC = timezone.utc
needs_zoneinfo = pytest.mark.skipif(sys.version_info < (3, 9), reason="zoneinfo is Python 3.9+")


def at(*args):
    return datetime(*args, tzinfo=UTC)


def occurrences(expr, start, count, tz=UTC):
    c = cron.parse(expr)
    out, moment = [], start
    for _ in range(count):
        moment = cron.next_after(c, tz, moment)
        out.append(moment)
    return out


def test_every_minute_fires_on_the_next_whole_minute():
    assert occurrences("* * * * *", at(2026, 1, 1, 10, 0, 30), 2) == [at(2026, 1, 1, 10, 1),
                                                                      at(2026, 1, 1, 10, 2)]


def test_next_is_strictly_after_the_instant():
    assert occurrences("0 10 * * *", at(2026, 1, 1, 10, 0), 1) == [at(2026, 1, 2, 10, 0)]


def test_ranges_steps_and_lists():
    c = cron.parse("0,30 8-10/2 * * *")
    assert sorted(c.minutes) == [0, 30] and c.hours == {8, 10}
    assert cron.parse("*/20 * * * *").minutes == [0, 20, 40]
    assert cron.parse("5/20 * * * *").minutes == [5, 25, 45]
    assert cron.parse("10-50/15 * * * *").minutes == [10, 25, 40]


def test_month_and_day_names_case_insensitive():
    c = cron.parse("0 0 * JAN-mar Mon,FRI")
    assert c.months == {1, 2, 3} and c.weekdays == {1, 5}


def test_sunday_is_0_and_7():
    assert cron.parse("0 0 * * 7").weekdays == {0} == cron.parse("0 0 * * sun").weekdays


def test_macros():
    assert occurrences("@hourly", at(2026, 1, 1, 10, 5), 1) == [at(2026, 1, 1, 11)]
    assert occurrences("@weekly", at(2026, 1, 1), 1) == [at(2026, 1, 4)]  # a Sunday
    assert occurrences("@yearly", at(2026, 3, 1), 1) == [at(2027, 1, 1)]


def test_day_of_month_or_day_of_week_when_both_are_restricted():
    # the 13th, or any Friday (Vixie cron's OR rule)
    found = occurrences("0 0 13 * fri", at(2026, 1, 1), 4)
    assert found == [at(2026, 1, 2), at(2026, 1, 9), at(2026, 1, 13), at(2026, 1, 16)]


def test_day_of_week_alone_when_day_of_month_is_star():
    found = occurrences("0 0 * * fri", at(2026, 1, 1), 2)
    assert found == [at(2026, 1, 2), at(2026, 1, 9)]


def test_starred_day_with_step_counts_as_star_for_the_or_rule():
    # */2 in day-of-month starts with '*': both fields must match (odd days that are Mondays)
    found = occurrences("0 0 */2 * mon", at(2026, 1, 1), 2)
    assert all(d.day % 2 == 1 and d.weekday() == 0 for d in found), found


def test_february_29_is_found_in_the_next_leap_year():
    assert occurrences("0 0 29 2 *", at(2026, 1, 1), 1) == [at(2028, 2, 29)]


@pytest.mark.parametrize("expr, words", [
    ("* * * *", "five fields"), ("60 * * * *", "0-59"), ("* 24 * * *", "0-23"),
    ("* * 0 * *", "1-31"), ("* * * 13 *", "1-12"), ("* * * * 8", "0-7"),
    ("*/0 * * * *", "step"), ("5-1 * * * *", "backwards"), ("a * * * *", "not a number"),
    ("1,,2 * * * *", "empty"), ("0 0 30 2 *", "never fires"),
])
def test_bad_expressions_say_why(expr, words):
    with pytest.raises(cron.CronError, match=words):
        cron.parse(expr)


def test_fixed_offsets_and_utc():
    assert cron.zone("UTC") is UTC
    assert cron.zone("+02:00").utcoffset(None) == timedelta(hours=2)
    assert cron.zone("-0530").utcoffset(None) == -timedelta(hours=5, minutes=30)
    assert cron.zone("UTC+3").utcoffset(None) == timedelta(hours=3)
    assert occurrences("0 9 * * *", at(2026, 1, 1), 1, cron.zone("+02:00")) == [at(2026, 1, 1, 7)]


def test_unknown_zone_is_refused():
    with pytest.raises(cron.CronError):
        cron.zone("Nowhere/Atlantis")
    with pytest.raises(cron.CronError):
        cron.zone("+25:00")


@needs_zoneinfo
def test_wall_time_in_a_spring_forward_gap_fires_once_when_the_gap_ends():
    tz = cron.zone("America/New_York")  # 2026-03-08 02:00 EST -> 03:00 EDT
    found = occurrences("30 2 * * *", at(2026, 3, 7, 12), 3, tz)
    assert [f.astimezone(tz).strftime("%m-%d %H:%M") for f in found] == [
        "03-08 03:00", "03-09 02:30", "03-10 02:30"]


@needs_zoneinfo
def test_every_quarter_hour_in_a_gap_collapses_to_one_occurrence():
    tz = cron.zone("Europe/Prague")  # 2026-03-29 02:00 CET -> 03:00 CEST
    found = occurrences("*/15 * * * *", at(2026, 3, 29, 0, 40), 3, tz)  # 01:40 CET
    assert [f.astimezone(tz).strftime("%H:%M") for f in found] == ["01:45", "03:00", "03:15"]


@needs_zoneinfo
def test_wall_time_that_happens_twice_fires_the_first_time_only():
    tz = cron.zone("America/New_York")  # 2026-11-01 02:00 EDT -> 01:00 EST
    found = occurrences("30 1 * * *", at(2026, 11, 1, 4), 2, tz)
    assert found == [at(2026, 11, 1, 5, 30), at(2026, 11, 2, 6, 30)]  # 01:30 EDT, then 01:30 EST


@needs_zoneinfo
def test_daily_time_keeps_its_wall_clock_across_dst():
    tz = cron.zone("Europe/Prague")
    found = occurrences("0 9 * * *", at(2026, 3, 28, 0), 2, tz)
    assert found == [at(2026, 3, 28, 8), at(2026, 3, 29, 7)]  # 09:00 CET, 09:00 CEST


# -- Recurrence: what a due schedule makes ------------------------------------------
def test_every_seconds_latest_makes_one_occurrence_for_a_missed_day():
    rule = Recurrence(every_seconds=60)
    due = at(2026, 1, 1)
    found, following = rule.plan(due, due + timedelta(days=1, seconds=30), "latest", 100)
    assert found == [at(2026, 1, 2)] and following == at(2026, 1, 2, 0, 1)


def test_every_seconds_all_makes_the_oldest_occurrences_up_to_the_limit():
    rule = Recurrence(every_seconds=60)
    due = at(2026, 1, 1)
    found, following = rule.plan(due, due + timedelta(minutes=10, seconds=5), "all", 3)
    assert found == [due, at(2026, 1, 1, 0, 1), at(2026, 1, 1, 0, 2)]
    assert following == at(2026, 1, 1, 0, 11)


def test_cron_latest_finds_the_most_recent_missed_occurrence_far_back():
    rule = Recurrence(cron_text="0 3 1 * *")  # monthly
    found, following = rule.plan(at(2025, 1, 1, 3), at(2026, 5, 20), "latest", 100)
    assert found == [at(2026, 5, 1, 3)] and following == at(2026, 6, 1, 3)


def test_cron_all_keeps_every_occurrence_in_a_short_window():
    rule = Recurrence(cron_text="*/10 * * * *")
    found, following = rule.plan(at(2026, 1, 1, 0, 0), at(2026, 1, 1, 0, 35), "all", 100)
    assert found == [at(2026, 1, 1, 0, m) for m in (0, 10, 20, 30)]
    assert following == at(2026, 1, 1, 0, 40)

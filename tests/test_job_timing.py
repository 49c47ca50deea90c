"""Elapsed time and the estimate of what is left (jobs/timing.py), as the Jobs page and `vitpro jobs list`
show them."""
from datetime import datetime, timedelta, timezone

from jobs.timing import Timing, duration, timing

T0 = datetime(2026, 12, 6, 10, 0, tzinfo=timezone.utc)


def test_elapsed_and_eta_from_the_rate_so_far():
    now = T0 + timedelta(seconds=120)
    assert timing("queued", None, None, 0, 0, now) == Timing(None, None)  # not started: nothing to say
    assert timing("running", T0, None, 0, 10, now) == Timing(120.0, None)  # no unit done yet: no rate
    assert timing("running", T0, None, 4, 10, now) == Timing(120.0, 180.0)  # 4 units in 120 s: 6 more take 180 s
    assert timing("succeeded", T0, T0 + timedelta(seconds=75), 10, 10, now) == Timing(75.0, None)
    naive = T0.replace(tzinfo=None)  # SQLite hands timestamps back without a zone: they are UTC
    assert timing("running", naive, None, 5, 10, now) == Timing(120.0, 120.0)


def test_durations_read_as_people_say_them():
    assert [duration(s) for s in (None, 4.4, 59.6, 61, 3599, 3600 * 2 + 185)] == ["—", "4 s", "1 min 00 s", "1 min 01 s", "59 min 59 s", "2 h 03 min"]

"""Schedule expressions with an injected clock: rate() ticks from the anchor, AWS cron's six fields."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from events import schedules
from kambda.aws import errors

T0 = datetime(2024, 1, 1, 0, 0, 30, tzinfo=UTC)  # a Monday


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def ticks(expression: str, start: datetime, n: int) -> list[datetime]:
    schedule = schedules.parse(expression, start)
    out, t = [], start
    for _ in range(n):
        t = schedule.next_after(t)
        out.append(t)
    return out


@pytest.mark.parametrize(("expression", "period"), [
    ("rate(1 minute)", 60), ("rate(5 minutes)", 300), ("rate(1 hour)", 3600), ("rate(12 hours)", 43200),
    ("rate(1 day)", 86400), ("rate(7 days)", 604800),
])
def test_rate_ticks_every_period_from_the_anchor(expression, period) -> None:
    schedule = schedules.parse(expression, T0)
    assert ticks(expression, T0, 3) == [T0 + timedelta(seconds=period * k) for k in (1, 2, 3)]
    assert schedule.latest_due(T0 + timedelta(seconds=period - 1)) is None
    assert schedule.latest_due(T0 + timedelta(seconds=period)) == T0 + timedelta(seconds=period)
    assert schedule.latest_due(T0 + timedelta(seconds=period * 2.5)) == T0 + timedelta(seconds=period * 2)


@pytest.mark.parametrize("expression", ["rate(1 minutes)", "rate(5 minute)", "rate(0 minutes)", "rate(5 weeks)",
                                        "rate(x minutes)", "every 5 minutes"])
def test_bad_rates_are_refused(expression) -> None:
    with pytest.raises(errors.Validation, match="ScheduleExpression is not valid"):
        schedules.parse(expression, T0)


@pytest.mark.parametrize(("expression", "expected"), [
    # every 15 minutes, at 10:15 UTC every day
    ("cron(0/15 * * * ? *)", [at(2024, 1, 1, 0, 15), at(2024, 1, 1, 0, 30), at(2024, 1, 1, 0, 45)]),
    ("cron(15 10 * * ? *)", [at(2024, 1, 1, 10, 15), at(2024, 1, 2, 10, 15), at(2024, 1, 3, 10, 15)]),
    # day-of-week counts from SUN=1: 2-6 is MON-FRI; 1 is Sunday
    ("cron(0 18 ? * 2-6 *)", [at(2024, 1, 1, 18), at(2024, 1, 2, 18), at(2024, 1, 3, 18)]),
    ("cron(0 8 ? * 1 *)", [at(2024, 1, 7, 8), at(2024, 1, 14, 8), at(2024, 1, 21, 8)]),
    ("cron(0 8 ? * MON-FRI *)", [at(2024, 1, 1, 8), at(2024, 1, 2, 8), at(2024, 1, 3, 8)]),
    # L: the last day of the month; alone in day-of-week, Saturday; 6L the last Friday
    ("cron(0 12 L * ? *)", [at(2024, 1, 31, 12), at(2024, 2, 29, 12), at(2024, 3, 31, 12)]),
    ("cron(0 12 ? * L *)", [at(2024, 1, 6, 12), at(2024, 1, 13, 12), at(2024, 1, 20, 12)]),
    ("cron(0 12 ? * 6L *)", [at(2024, 1, 26, 12), at(2024, 2, 23, 12), at(2024, 3, 29, 12)]),
    # W: the weekday nearest the 3rd (2024-02-03 is a Saturday -> Friday the 2nd)
    ("cron(0 9 3W * ? *)", [at(2024, 1, 3, 9), at(2024, 2, 2, 9), at(2024, 3, 4, 9)]),
    # #: the second Tuesday (3 = TUE)
    ("cron(0 9 ? * 3#2 *)", [at(2024, 1, 9, 9), at(2024, 2, 13, 9), at(2024, 3, 12, 9)]),
    # lists, ranges and a year field
    ("cron(0 0 1 1,6 ? 2025-2026)", [at(2025, 1, 1), at(2025, 6, 1), at(2026, 1, 1)]),
    ("cron(30 6 1 JAN ? 2030/5)", [at(2030, 1, 1, 6, 30), at(2035, 1, 1, 6, 30), at(2040, 1, 1, 6, 30)]),
])
def test_aws_cron(expression, expected) -> None:
    assert ticks(expression, T0, 3) == expected


def test_cron_latest_due_and_an_ended_schedule() -> None:
    schedule = schedules.parse("cron(15 10 * * ? *)", T0)
    assert schedule.latest_due(at(2024, 1, 2, 10, 14, 59)) == at(2024, 1, 1, 10, 15)
    assert schedule.latest_due(at(2024, 1, 2, 10, 15)) == at(2024, 1, 2, 10, 15)
    ended = schedules.parse("cron(0 0 1 1 ? 2020)", T0)
    assert ended.next_after(T0) is None
    assert ended.latest_due(T0) == at(2020, 1, 1)


@pytest.mark.parametrize(("expression", "reason"), [
    ("cron(0 10 * * *)", "6 fields"),
    ("cron(0 10 * * * *)", "exactly one of day-of-month and day-of-week"),
    ("cron(0 10 ? * ? *)", "exactly one of day-of-month and day-of-week"),
    ("cron(61 10 * * ? *)", "out of range"),
    ("cron(0 10 ? * 8 *)", "day-of-week '8'"),
    ("cron(0 10 * * ? 1800)", "year"),
])
def test_bad_crons_say_why(expression, reason) -> None:
    with pytest.raises(errors.Validation, match=reason):
        schedules.parse(expression, T0)

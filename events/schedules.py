"""EventBridge schedule expressions: ``rate(...)`` and ``cron(...)``, in UTC, with an injected clock.

- ``rate(1 minute)``, ``rate(5 minutes)``, ``rate(1 hour)``, ``rate(2 hours)``, ``rate(1 day)``,
  ``rate(7 days)``: the singular unit for 1, the plural otherwise, as AWS requires. Ticks fall
  every period counted from the rule's creation (the anchor), as on AWS.
- ``cron(minutes hours day-of-month month day-of-week year)``: AWS's six fields. Exactly one of
  day-of-month and day-of-week is ``?``. Day-of-week counts 1-7 from Sunday (or SUN-SAT); ``L``
  (last day of the month; alone in day-of-week, Saturday; ``5L``, the last Thursday), ``W``
  (``15W``, the weekday nearest the 15th), ``#`` (``3#2``, the second Tuesday), ``*``, ``/``, ``,``
  and ``-`` as documented. The first five fields are evaluated by croniter (after translating the
  day-of-week numbering); the year field is ours, because croniter does not have one.

Nothing here reads the time: callers pass ``now``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from croniter import croniter

from kambda.aws import errors

_RATE = re.compile(r"rate\(\s*(\d+)\s+(minute|minutes|hour|hours|day|days)\s*\)")
_CRON = re.compile(r"cron\((.*)\)")
_UNITS = {"minute": 60, "hour": 3600, "day": 86400}
MIN_YEAR, MAX_YEAR = 1970, 2199
_DOW_NAMES = {"SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"}


def _invalid(reason: str) -> errors.Validation:
    return errors.Validation(f"Parameter ScheduleExpression is not valid: {reason}")


@dataclass(frozen=True)
class Rate:
    period_s: int
    anchor: datetime

    def latest_due(self, now: datetime) -> datetime | None:
        """The last tick at or before ``now`` (the anchor itself is not a tick), or None."""
        ticks = int((now - self.anchor).total_seconds() // self.period_s)
        return self.anchor + timedelta(seconds=ticks * self.period_s) if ticks >= 1 else None

    def next_after(self, t: datetime) -> datetime:
        ticks = max(0, int((t - self.anchor).total_seconds() // self.period_s)) + 1
        return self.anchor + timedelta(seconds=ticks * self.period_s)


@dataclass(frozen=True)
class Cron:
    expression: str  # croniter's five fields
    years: frozenset[int] | None  # None: every year

    def next_after(self, t: datetime) -> datetime | None:
        start = t.astimezone(UTC)
        while start.year <= MAX_YEAR:
            if self.years is not None and start.year not in self.years:
                later = [y for y in self.years if y > start.year]
                if not later:
                    return None
                start = datetime(min(later), 1, 1, tzinfo=UTC) - timedelta(microseconds=1)
            tick: datetime = croniter(self.expression, start).get_next(datetime)
            if self.years is None or tick.year in self.years:
                return tick
            start = tick  # in a year the field excludes: the loop jumps to the next allowed one
        return None

    def latest_due(self, now: datetime) -> datetime | None:
        """The last tick at or before ``now``, or None."""
        end = now.astimezone(UTC) + timedelta(microseconds=1)
        while end.year >= MIN_YEAR:
            if self.years is not None and end.year not in self.years:
                earlier = [y for y in self.years if y < end.year]
                if not earlier:
                    return None
                end = datetime(max(earlier) + 1, 1, 1, tzinfo=UTC)
            tick: datetime = croniter(self.expression, end).get_prev(datetime)
            if self.years is None or tick.year in self.years:
                return tick
            end = tick
        return None


Schedule = Rate | Cron


def parse(expression: str, anchor: datetime) -> Schedule:
    """Parse a ScheduleExpression; ``anchor`` (the rule's creation) is where a rate starts counting."""
    rate = _RATE.fullmatch(expression.strip())
    if rate:
        value, unit = int(rate.group(1)), rate.group(2)
        if value < 1:
            raise _invalid("the rate must be a positive integer")
        if (value == 1) != (not unit.endswith("s")):
            raise _invalid(f"use '{unit.rstrip('s')}' for a value of 1 and '{unit.rstrip('s')}s' otherwise")
        return Rate(value * _UNITS[unit.rstrip("s")], anchor.astimezone(UTC))
    cron = _CRON.fullmatch(expression.strip())
    if not cron:
        raise _invalid("expected rate(value unit) or cron(minutes hours day-of-month month day-of-week year)")
    fields = cron.group(1).split()
    if len(fields) != 6:
        raise _invalid(f"cron() takes 6 fields, not {len(fields)}")
    minutes, hours, dom, month, dow, year = fields
    if (dom == "?") == (dow == "?"):
        raise _invalid("exactly one of day-of-month and day-of-week must be '?'")
    five = " ".join((minutes, hours, "*" if dom == "?" else dom, month, "*" if dow == "?" else _dow(dow)))
    if not croniter.is_valid(five):
        raise _invalid(f"cron({cron.group(1)}) has a field out of range or an unsupported form")
    return Cron(five, _years(year))


def _dow(field: str) -> str:
    """AWS day-of-week (1=SUN .. 7=SAT) to croniter's (0=SUN .. 6=SAT)."""
    out = []
    for item in field.split(","):
        upper = item.upper()
        if upper == "L":
            out.append("6")  # alone, L is the last day of the week: Saturday
        elif re.fullmatch(r"[1-7]L", upper):
            out.append(f"L{int(upper[0]) - 1}")
        elif re.fullmatch(r"[A-Z]{3}L", upper) and upper[:3] in _DOW_NAMES:
            out.append(f"L{upper[:3]}")
        elif "#" in upper:
            day, nth = upper.split("#", 1)
            out.append(f"{_day(day)}#{nth}")
        else:
            step = ""
            if "/" in upper:
                upper, step = upper.split("/", 1)
                step = "/" + step
            out.append("-".join(_day(part) for part in upper.split("-")) + step)
    return ",".join(out)


def _day(part: str) -> str:
    if part == "*" or part in _DOW_NAMES:
        return part
    if not part.isdigit() or not 1 <= int(part) <= 7:
        raise _invalid(f"day-of-week '{part}' is not 1-7 or SUN-SAT")
    return str(int(part) - 1)


def _years(field: str) -> frozenset[int] | None:
    if field in ("*", "?"):
        return None
    years: set[int] = set()
    for item in field.split(","):
        span, _, step = item.partition("/")
        if span == "*":
            lo, hi = MIN_YEAR, MAX_YEAR
        elif re.fullmatch(r"\d{4}-\d{4}", span):
            lo, hi = (int(y) for y in span.split("-"))
        elif re.fullmatch(r"\d{4}", span):
            lo, hi = int(span), (MAX_YEAR if step else int(span))
        else:
            raise _invalid(f"year '{item}' is not a year, a range or a step")
        if not MIN_YEAR <= lo <= hi <= MAX_YEAR or (step and not step.isdigit()) or step == "0":
            raise _invalid(f"year '{item}' is out of range ({MIN_YEAR}-{MAX_YEAR})")
        years.update(range(lo, hi + 1, int(step) if step else 1))
    return frozenset(years)

"""When a step fires: APScheduler 3 trigger objects, shared by the engine, `preview` and `check`.

We use APScheduler for its calendar arithmetic (cron fields, time zones), not its scheduler: the
bot `Clock` runs the callbacks, so the virtual clock and the real one take the same path.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, tzinfo

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger

from bot.sop._schema import SopFile, Step, day_of_week, parse_bound, parse_duration, parse_start

_CRON_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun")
_TICK = timedelta(microseconds=1)


def anchor_of(sop: SopFile, tz: tzinfo) -> datetime | None:
    return parse_start(sop.start, tz).astimezone(tz) if sop.start is not None else None


def trigger_for(sop: SopFile, step: Step, tz: tzinfo) -> BaseTrigger | None:
    """The trigger of a recurring or sequence step (None for join-relative steps). ValueError if invalid."""
    if step.at is not None:
        hour, minute = step.at.strip().split(":")
        first, last = date_range(sop, step, tz)
        return CronTrigger(hour=int(hour), minute=int(minute), day_of_week=day_of_week(step.days), timezone=tz,
                           start_date=first, end_date=last)
    if step.cron is not None:
        return crontab(step.cron, tz, *date_range(sop, step, tz))
    if step.offset is not None:
        anchor = anchor_of(sop, tz)
        assert anchor is not None  # the schema requires start: with offsets
        return DateTrigger(anchor + parse_duration(step.offset, signed=True), timezone=tz)
    return None


def date_range(sop: SopFile, step: Step, tz: tzinfo) -> tuple[datetime | None, datetime | None]:
    """When a recurring step may post: its own `from`/`until`, else the file's, else, in a file with
    `start:`, the days its sequence spans (a daily post in a sale file must not outlive the sale).
    Both ends are inclusive; None is unbounded."""
    anchor = anchor_of(sop, tz)
    first, last = default_range(sop, tz) if anchor is not None else (None, None)
    for text, end in ((step.from_ or sop.from_, False), (step.until or sop.until, True)):
        if text is not None:
            value = parse_bound(text, tz, anchor, end=end)
            first, last = (first, value) if end else (value, last)
    return first, last


def default_range(sop: SopFile, tz: tzinfo) -> tuple[datetime, datetime]:
    """The whole days from the first to the last post of a file's sequence (its start included)."""
    anchor = anchor_of(sop, tz)
    assert anchor is not None
    moments = [anchor] + [anchor + parse_duration(s.offset, signed=True) for s in sop.steps if s.offset is not None]
    first = min(moments).astimezone(tz).replace(hour=0, minute=0, second=0, microsecond=0)
    last = max(moments).astimezone(tz).replace(hour=23, minute=59, second=59, microsecond=999999)
    return first, last


def crontab(expr: str, tz: tzinfo, first: datetime | None = None, last: datetime | None = None) -> CronTrigger:
    """A standard five-field crontab line. APScheduler 3's own `from_crontab` counts weekdays from
    Monday = 0; crontab counts from Sunday = 0, so numeric weekdays are translated to names first."""
    fields = expr.split()
    if len(fields) != 5:
        raise ValueError(f"cron {expr!r} 要写五段：分 时 日 月 星期（如 \"0 8 * * 1-5\"）")
    minute, hour, day, month, weekday = fields
    return CronTrigger(minute=minute, hour=hour, day=day, month=month, day_of_week=_cron_weekdays(weekday),
                       timezone=tz, start_date=first, end_date=last)


def _cron_weekdays(field: str) -> str:
    def name(token: str) -> str:
        return _CRON_DAYS[int(token)] if token.isdigit() and int(token) <= 7 else token

    parts = []
    for part in field.split(","):
        base, _, step = part.partition("/")
        if "-" in base:
            low, high = base.split("-", 1)
            base = f"{name(low)}-{name(high)}"
        else:
            base = name(base)
        parts.append(f"{base}/{step}" if step else base)
    return ",".join(parts)


def fire_times(trigger: BaseTrigger, after: datetime, until: datetime) -> Iterator[datetime]:
    """Fire times in [after, until), in order."""
    fire = trigger.get_next_fire_time(None, after)
    while fire is not None and fire < until:
        if fire >= after:
            yield fire
        fire = trigger.get_next_fire_time(fire, fire + _TICK)


def occurrence(step: Step, fire: datetime, tz: tzinfo) -> str:
    """The part of an idempotency key that names one firing: a daily `at` step posts once per local
    date (even if its time is edited that day), a cron step once per local minute, a sequence step
    once per anchor."""
    local = fire.astimezone(tz)
    if step.at is not None:
        return local.date().isoformat()
    return local.strftime("%Y-%m-%dT%H:%M")

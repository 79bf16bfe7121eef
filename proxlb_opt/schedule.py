"""Weekly maintenance windows (ProxLB 2.3.0's `proxmox_cluster.maintenance_nodes_schedule`).

The format is ProxLB's: per node a list of weekly start times written `"<Weekday>, <H>:<MM>"`
(`"Monday, 8:00"`, weekday names in English, any case), one `duration` in whole hours for every
window and one `pre-migration` lead time in whole minutes. A node is in maintenance from
`start − pre-migration` up to, not including, `start + duration`. Both default to 0 in ProxLB, so
a schedule without them describes empty windows that are never active; proxlb-opt warns about that.

Times are wall-clock times of the machine that runs proxlb-opt, as in ProxLB: `now` is a naive local
datetime (`datetime.now()`, i.e. the TZ environment variable or /etc/localtime), and windows are
compared on that clock without any time-zone or daylight-saving arithmetic. Windows that started
in the previous week and run past midnight on Sunday are found too (weeks −1, 0 and +1 are tried).

Unlike ProxLB, which logs a warning and skips an entry it cannot read, a malformed entry is a
configuration error here: a typo would otherwise silently leave the node out of maintenance.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Mapping

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


@dataclass(frozen=True)
class Window:
    """One weekly start time: weekday 0 (Monday) … 6 (Sunday), hour, minute; `text` as written."""

    weekday: int
    hour: int
    minute: int
    text: str


@dataclass(frozen=True)
class MaintenanceSchedule:
    """Weekly windows per node name, with one duration (hours) and one lead time (minutes) for all."""

    windows: tuple[tuple[str, tuple[Window, ...]], ...]  # (node name, its windows), in file order
    duration_h: int = 0
    pre_migration_min: int = 0

    @property
    def nodes(self) -> tuple[str, ...]:
        return tuple(node for node, _ in self.windows)

    @property
    def empty_windows(self) -> bool:
        """ProxLB's defaults (duration 0, pre-migration 0) give windows of no length: never active."""
        return self.duration_h == 0 and self.pre_migration_min == 0

    def active(self, now: datetime) -> tuple[tuple[str, Window], ...]:
        """(node, the window that is open) for every node in maintenance at the naive local time `now`."""
        out = []
        for node, windows in self.windows:
            for window in windows:
                if window_open(window, self.duration_h, self.pre_migration_min, now):
                    out.append((node, window))
                    break
        return tuple(out)


def window_open(window: Window, duration_h: int, pre_migration_min: int, now: datetime) -> bool:
    """True when `now` lies in [start − pre-migration, start + duration) of this week's, last week's or
    next week's occurrence of the window."""
    this_week = (now + timedelta(days=window.weekday - now.weekday())).replace(
        hour=window.hour, minute=window.minute, second=0, microsecond=0)
    for weeks in (-1, 0, 1):
        start = this_week + timedelta(weeks=weeks)
        if start - timedelta(minutes=pre_migration_min) <= now < start + timedelta(hours=duration_h):
            return True
    return False


def parse_window(text: Any, where: str) -> Window:
    """`"Monday, 8:00"` → Window; ValueError with the expected format otherwise."""
    expected = f"{where}: cannot read {text!r} (expected a weekday and a time, e.g. 'Monday, 8:00')"
    if not isinstance(text, str) or "," not in text:
        raise ValueError(expected)
    day, _, clock = (part.strip() for part in text.partition(","))
    hour, sep, minute = clock.partition(":")
    if day.lower() not in WEEKDAYS or not sep:
        raise ValueError(expected)
    try:
        h, m = int(hour), int(minute)
    except ValueError:
        raise ValueError(expected) from None
    if not (0 <= h <= 23 and 0 <= m <= 59):
        raise ValueError(f"{where}: {text!r}: the time must lie between 0:00 and 23:59")
    return Window(weekday=WEEKDAYS.index(day.lower()), hour=h, minute=m, text=text.strip())


def parse_schedule(value: Any, where: str) -> MaintenanceSchedule:
    """The `maintenance_nodes_schedule` mapping → MaintenanceSchedule; ValueError naming the field."""
    if not isinstance(value, Mapping):
        raise ValueError(f"{where}: expected a mapping with duration, pre-migration and schedules")
    unknown = sorted(set(map(str, value)) - {"duration", "pre-migration", "schedules"})
    if unknown:
        raise ValueError(f"{where}.{unknown[0]}: unknown key (known: duration, pre-migration, schedules)")
    duration = _whole(value.get("duration", 0), f"{where}.duration")
    lead = _whole(value.get("pre-migration", 0), f"{where}.pre-migration")
    schedules = value.get("schedules") or {}
    if not isinstance(schedules, Mapping):
        raise ValueError(f"{where}.schedules: expected a mapping of node name to a list of 'Weekday, H:MM'")
    windows = []
    for node, entries in schedules.items():
        if isinstance(entries, str):
            entries = [entries]
        if not isinstance(entries, list):
            raise ValueError(f"{where}.schedules.{node}: expected a list such as ['Monday, 8:00']")
        windows.append((str(node), tuple(parse_window(e, f"{where}.schedules.{node}") for e in entries)))
    return MaintenanceSchedule(windows=tuple(windows), duration_h=duration, pre_migration_min=lead)


def _whole(value: Any, where: str) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"{where}: expected a whole number, got {value!r}")
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{where}: expected a whole number, got {value!r}") from None
    if number != int(number) or number < 0:
        raise ValueError(f"{where}: expected a whole number of at least 0, got {value!r}")
    return int(number)

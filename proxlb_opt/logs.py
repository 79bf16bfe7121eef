"""Logging to stderr: one handler for the whole `proxlb_opt` logger tree, readable by people and journald.

On a terminal a line reads `warning: text`. Under systemd (`JOURNAL_STREAM` or `SYSTEMD_EXEC_PID` set) or
whenever stderr is not a terminal (cron, pipes, CI logs), each line starts with its syslog priority as
sd-daemon(3) describes (`<4>warning: text`): journald files the line under that priority, so
`journalctl -p warning` shows our warnings and errors, and nothing else is needed to read the file.

Every record passes `ScrubFilter` (errors.scrub) on its way out: no secret reaches stderr or the journal,
whatever a message was built from.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import TextIO

from proxlb_opt.errors import scrub

ROOT = "proxlb_opt"
#: syslog priorities (RFC 5424) of the logging levels; anything below INFO is debug.
PRIORITY = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4, logging.INFO: 6, logging.DEBUG: 7}


def under_systemd() -> bool:
    """True when systemd started us with stderr connected to the journal (or as a service at all)."""
    return bool(os.environ.get("JOURNAL_STREAM") or os.environ.get("SYSTEMD_EXEC_PID"))


def wants_priority_prefix(stream: TextIO | None = None) -> bool:
    """True under systemd or when `stream` (stderr) is not a terminal."""
    if under_systemd():
        return True
    stream = sys.stderr if stream is None else stream
    try:
        return not stream.isatty()
    except (AttributeError, ValueError):  # closed or replaced streams
        return True


def priority(levelno: int) -> int:
    for level in sorted(PRIORITY, reverse=True):
        if levelno >= level:
            return PRIORITY[level]
    return 7


class ScrubFilter(logging.Filter):
    """Removes secrets (errors.scrub) from a record's message and traceback text; attach it to every
    handler that shows or stores proxlb_opt's records."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string: let logging report it as it does
            return True
        record.msg, record.args = scrub(message), ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub(record.exc_text)
        return True


class _Formatter(logging.Formatter):
    def __init__(self, prefix: bool):
        super().__init__()
        self.prefix = prefix

    def format(self, record: logging.LogRecord) -> str:
        text = f"{record.levelname.lower()}: {record.getMessage()}"
        if record.exc_text or record.exc_info:
            text += "\n" + (record.exc_text or self.formatException(record.exc_info))
        if not self.prefix:
            return text
        # journald reads the prefix of each line: continuation lines get the same priority.
        mark = f"<{priority(record.levelno)}>"
        return "\n".join(mark + line for line in text.splitlines())


def setup(level: int | str = logging.INFO, stream: TextIO | None = None) -> logging.Logger:
    """Route every `proxlb_opt.*` logger to `stream` (stderr) at `level`; returns the root of the tree."""
    stream = sys.stderr if stream is None else stream
    handler = logging.StreamHandler(stream)
    handler.setFormatter(_Formatter(wants_priority_prefix(stream)))
    handler.addFilter(ScrubFilter())
    log = logging.getLogger(ROOT)
    log.handlers[:] = [handler]
    log.setLevel(level)
    log.propagate = False
    return log


def error_line(message: str) -> str:
    """The final `error: ...` line of a failed command; under systemd with the error priority.

    Only there: scripts that read our stderr through a pipe see the line as documented, `error: ...`.
    """
    return ("<3>" if under_systemd() else "") + f"error: {scrub(message)}"

"""logs.py: syslog priority prefixes for journald, plain lines on a terminal."""

import io
import logging

import pytest

from proxlb_opt import logs


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def no_systemd(monkeypatch):
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    monkeypatch.delenv("SYSTEMD_EXEC_PID", raising=False)


def _emit(stream) -> str:
    log = logs.setup(logging.DEBUG, stream)
    child = logging.getLogger("proxlb_opt.optimizer")
    child.debug("stage")
    log.info("collected")
    log.warning("careful\nsecond line")
    log.error("broken")
    return stream.getvalue()


def test_pipes_get_priorities_that_journald_reads():
    assert _emit(io.StringIO()).splitlines() == [
        "<7>debug: stage", "<6>info: collected", "<4>warning: careful", "<4>second line", "<3>error: broken"]


def test_terminals_get_plain_lines():
    assert _emit(Tty()).splitlines()[:3] == ["debug: stage", "info: collected", "warning: careful"]


def test_systemd_gets_priorities_even_on_a_terminal(monkeypatch):
    monkeypatch.setenv("JOURNAL_STREAM", "8:1234")
    assert _emit(Tty()).startswith("<7>debug: stage")
    assert logs.error_line("boom") == "<3>error: boom"


def test_the_error_line_is_plain_outside_systemd():
    assert logs.error_line("boom") == "error: boom"

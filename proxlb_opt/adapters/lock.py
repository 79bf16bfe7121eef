"""One run at a time: the advisory lock (flock) held by every run that may migrate.

Two runs that plan on the same cluster state and then both migrate can together overload a node or break
an anti-affinity rule that each plan kept on its own. So `apply` (when it may migrate) takes the lock
before it reads the cluster for its plan, and keeps it until it ends; each `service` round that may
migrate does the same, and a service also holds an instance lock for its whole life, so that a second
service refuses to start while `apply` can still run between rounds. A run that finds the lock held
refuses at once (LockHeldError, exit 75) with one line saying who holds it; it never waits, since the
holder may be an `apply` waiting for its confirmation.

The holder writes its pid, command, host and start time into the file. The kernel releases a flock
when the holding process ends in any way (SIGKILL included), so a file left behind never blocks, only
a live holder does. The file is never removed: removing it would let the next run lock a new file while
another run still holds the old one.

Where (`optimizer.lock_file`, or by default, `default_lock_path`):
  1. `$RUNTIME_DIRECTORY/proxlb-opt.lock`: systemd sets RUNTIME_DIRECTORY from the unit's
     `RuntimeDirectory=proxlb-opt`, i.e. /run/proxlb-opt;
  2. `/run/proxlb-opt/proxlb-opt.lock` when this user may create files there (root, the service user):
     the service's own file, so an administrator's `apply` and the service exclude each other;
  3. otherwise `$XDG_RUNTIME_DIR/proxlb-opt.lock`, else `<tmp>/proxlb-opt-<uid>.lock`: a lock of this
     user's own, which only keeps this user's runs apart (set `optimizer.lock_file` to share one).
The instance lock of a service is the file beside it with `.service` before the suffix
(`proxlb-opt.service.lock`). Locks keep runs on one machine apart; copies of the service on several
nodes are kept apart by `service.enable_ha` (only the HA manager master migrates).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Mapping

from proxlb_opt.adapters.files import open_shared
from proxlb_opt.errors import ConfigError, LockHeldError

LOCK_NAME = "proxlb-opt.lock"
SYSTEM_DIRECTORY = Path("/run/proxlb-opt")


def default_lock_path(env: Mapping[str, str] | None = None, system_directory: Path = SYSTEM_DIRECTORY) -> Path:
    """The lock file when `optimizer.lock_file` is not set (the order is in the module docstring)."""
    env = os.environ if env is None else env
    runtime = env.get("RUNTIME_DIRECTORY", "").split(":")[0]
    if runtime:
        return Path(runtime) / LOCK_NAME
    if _may_create_in(system_directory):
        return system_directory / LOCK_NAME
    if env.get("XDG_RUNTIME_DIR"):
        return Path(env["XDG_RUNTIME_DIR"]) / LOCK_NAME
    return Path(tempfile.gettempdir()) / f"proxlb-opt-{os.getuid()}.lock"


def _may_create_in(directory: Path) -> bool:
    if directory.is_dir():
        return os.access(directory, os.W_OK | os.X_OK)
    return directory.parent.is_dir() and os.access(directory.parent, os.W_OK | os.X_OK)


def lock_path(configured: str | None) -> Path:
    """`optimizer.lock_file` when set, else the default."""
    return Path(configured) if configured else default_lock_path()


def service_lock_path(path: Path) -> Path:
    """The service's instance lock beside the run lock: proxlb-opt.lock → proxlb-opt.service.lock."""
    return path.with_name(f"{path.stem}.service{path.suffix}")


@dataclass(frozen=True)
class Holder:
    """Who holds a lock, as its holder wrote it into the file."""

    pid: int
    command: str
    host: str
    since: float  # seconds since the epoch

    def to_line(self) -> str:
        since = datetime.fromtimestamp(self.since, timezone.utc).isoformat(timespec="seconds")
        return json.dumps({"pid": self.pid, "command": self.command, "host": self.host, "since": since}) + "\n"

    @classmethod
    def from_text(cls, text: str) -> "Holder | None":
        """None for an empty or unreadable file (a holder that has not written yet, or none)."""
        try:
            data = json.loads(text)
            since = datetime.fromisoformat(data["since"]).timestamp()
            return cls(int(data["pid"]), str(data["command"]), str(data["host"]), since)
        except (ValueError, KeyError, TypeError, AttributeError):
            return None

    def describe(self, now: float | None = None) -> str:
        """`pid 1234 (proxlb-opt service) on pve1 since 12:00:03` (local time; the date too when not today)."""
        now = time.time() if now is None else now
        started = time.localtime(self.since)
        shape = "%H:%M:%S" if started[:3] == time.localtime(now)[:3] else "%Y-%m-%d %H:%M:%S"
        return f"pid {self.pid} ({self.command}) on {self.host} since {time.strftime(shape, started)}"


class RunLock:
    """An exclusive flock on `path`; `acquire` raises LockHeldError naming the holder when another run
    has it. Usable as a context manager; `release` is safe to call twice."""

    def __init__(self, path: Path, command: str):
        self.path = Path(path)
        self.command = command
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> "RunLock":
        if self._fd is not None:
            return self
        fd, writable = self._open()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = Holder.from_text(_read(fd))
            os.close(fd)
            who = holder.describe() if holder else "a run that has not written its name yet"
            raise LockHeldError(f"another proxlb-opt run holds the lock {self.path}: {who}; "
                                f"try again when it has ended") from None
        except OSError as exc:  # e.g. ENOLCK on a file system without flock
            os.close(fd)
            raise ConfigError(f"optimizer.lock_file: cannot lock {self.path} ({exc.strerror or exc}); "
                              f"choose a file on a local file system") from None
        if writable:
            line = Holder(os.getpid(), self.command, socket.gethostname(), time.time()).to_line()
            os.ftruncate(fd, 0)  # only now: truncating before holding the lock would erase the holder's name
            os.pwrite(fd, line.encode(), 0)
        self._fd = fd
        return self

    def _open(self) -> tuple[int, bool]:
        try:
            return open_shared(self.path, os.O_RDWR, 0o644), True
        except PermissionError:
            pass
        except OSError as exc:  # a symbolic link (ELOOP), a parent that is a file, a read-only file system
            raise ConfigError(f"optimizer.lock_file: cannot open {self.path} ({exc.strerror or exc}); set it to a "
                              f"file this user may create") from None
        try:
            # A lock file another user created and did not share: flock works on a read-only descriptor,
            # only the holder's name cannot be written.
            return os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC), False
        except OSError as exc:
            raise ConfigError(f"optimizer.lock_file: cannot open {self.path} ({exc.strerror or exc}); set it to a "
                              f"file this user may create") from None

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)  # a later reader finds no name of a run that has ended
        except OSError:
            pass  # opened read-only
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _read(fd: int) -> str:
    try:
        return os.pread(fd, 4096, 0).decode("utf-8", "replace")
    except OSError:
        return ""

"""Opening the files that runs of different users share (the lock file, the audit log).

The service runs as the system user `proxlb-opt`; an administrator runs `apply` as root. Both use the
same lock file and the same audit log, so a file that root creates in a directory owned by the service
user is handed to that user: otherwise the service could no longer open it for writing. And an
existing file is opened without O_CREAT first, because the kernel's `fs.protected_regular` refuses
O_CREAT on another user's file in a world-writable sticky directory (/tmp, /run/lock), even when the
file exists.
"""

from __future__ import annotations

import os
from pathlib import Path


def open_shared(path: Path, flags: int, mode: int) -> int:
    """A descriptor of `path` opened with `flags` (O_RDWR, O_WRONLY | O_APPEND, ...), created with `mode`
    when missing, together with its parent directories. Symbolic links are not followed (a link planted
    in a shared directory must not make us truncate or append to another file). OSError as the OS says."""
    flags |= os.O_NOFOLLOW | os.O_CLOEXEC
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return os.open(path, flags)
    except FileNotFoundError:
        pass
    try:
        fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:  # another run created it in between
        return os.open(path, flags)
    _give_to_directory_owner(fd, path.parent)
    return fd


def _give_to_directory_owner(fd: int, directory: Path) -> None:
    """Root creating a file in another user's directory (the service's /run/proxlb-opt or
    /var/lib/proxlb-opt) gives the file to that user, as if the service had created it."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return
    try:
        owner = os.stat(directory)
        if owner.st_uid != 0:
            os.fchown(fd, owner.st_uid, owner.st_gid)
    except OSError:
        pass  # the file is usable by root either way; the service will say if it cannot open it

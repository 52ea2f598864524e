"""Files ingestd writes for itself (spool segments and cursor, dead letters, state): created
0600 whatever the umask, since they hold the payloads devices sent, and never opened through a
symlink (O_NOFOLLOW), so a link planted in a shared directory cannot redirect ingestd's writes.
The ones two processes must not share are locked (`lock_exclusive`).
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

_FLAGS = {
    "ab": os.O_WRONLY | os.O_CREAT | os.O_APPEND,
    "wb": os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
    "r+b": os.O_RDWR,
}


def open_private(path: Path, mode: str, buffering: int = -1) -> IO[bytes]:
    """`path` opened in `mode` ("ab", "wb" or "r+b"); OSError (ELOOP) if it is a symlink."""
    fd = os.open(path, _FLAGS[mode] | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        return os.fdopen(fd, mode, buffering=buffering)
    except BaseException:
        os.close(fd)
        raise


def lock_exclusive(file: IO[bytes]) -> bool:
    """An exclusive advisory lock, held while `file` is open: one ingestd per dead-letter file
    and per spool, and no replay of dead letters under a running ingestd. False if taken."""
    try:
        fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True

"""Atomic file writes: write to a temporary file in the same folder, fsync, then rename over the target.

A crash or Ctrl-C during a write leaves either the old file or the new one, never a truncated file.
A kill -9 cannot run the cleanup, so one that lands during a write leaves the temporary file (as large as the
checkpoint) behind; the temporary's name carries the host and the process id, and the next write to the same
target removes the temporaries of processes on this host that no longer exist.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import tempfile
from pathlib import Path
from typing import Callable, Iterator


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname())[:40] or "host"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(target: Path) -> list[Path]:
    """Delete ``.<name>.<host>-<pid>.*.tmp`` files next to ``target`` left by dead processes of this host."""
    prefix = f".{target.name}.{_host()}-"
    removed = []
    with contextlib.suppress(OSError):
        for f in target.parent.iterdir():
            n = f.name
            if not (n.startswith(prefix) and n.endswith(".tmp")):
                continue
            pid = n[len(prefix):].split(".", 1)[0]
            if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
                with contextlib.suppress(OSError):
                    f.unlink()
                    removed.append(f)
    return removed


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it replaces ``path`` atomically."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(target)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.{_host()}-{os.getpid()}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp creates 0600; give the file the usual permissions
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write(path: str | os.PathLike, writer: Callable[[Path], None]) -> Path:
    """Call ``writer(tmp_path)`` and move the result to ``path`` atomically. Returns ``path``."""
    with atomic_path(path) as tmp:
        writer(tmp)
    return Path(path)

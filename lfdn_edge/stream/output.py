"""Sinks: versioned JSON lines (lfdn_edge.stream.records) to stdout or a file, one whole line per write."""

from __future__ import annotations

import json
import os
import sys
import threading
from typing import Any, Optional, TextIO

from .records import to_dict


class JsonLinesSink:
    """Writes each record as one JSON line: to a file opened for appending (each line is a single write(2), so
    lines from several writers never interleave, and a reader never sees half a line once it is flushed), or to
    a text stream (stdout), flushed after every line. ``types`` keeps only those record types."""

    def __init__(self, path: Optional[str] = None, stream: Optional[TextIO] = None,
                 types: Optional[set[str]] = None):
        self.path = None if path in (None, "-") else str(path)
        self.stream = stream if stream is not None else (sys.stdout if self.path is None else None)
        self.types = types
        self._fd: Optional[int] = None
        self._lock = threading.Lock()
        if self.path is not None:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def write(self, record: Any) -> None:
        d = to_dict(record)
        if self.types is not None and d["type"] not in self.types:
            return
        line = json.dumps(d, separators=(",", ":"), allow_nan=False) + "\n"
        with self._lock:
            if self._fd is not None:
                data = line.encode("utf-8")
                n = os.write(self._fd, data)
                while n < len(data):   # a regular file takes it whole; finish any short write anyway
                    n += os.write(self._fd, data[n:])
            elif self.stream is not None:
                self.stream.write(line)
                self.stream.flush()

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def __enter__(self) -> JsonLinesSink:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

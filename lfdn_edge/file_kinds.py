"""What kind of lfdn-edge file a path holds, from its first bytes: the one place that sniffs files.

An engine artifact starts with ENGINE_MAGIC (see :mod:`lfdn_edge.artifact.file`); a checkpoint is a
``torch.save`` zip archive (TORCH_ZIP_MAGIC). Both loaders and the Scorer ask :func:`file_kind` before
parsing, so a file of one kind passed where the other is expected gets a message that says so.
"""

from __future__ import annotations

import os
from pathlib import Path

ENGINE_MAGIC = b"LFDNENG\0"
TORCH_ZIP_MAGIC = b"PK\x03\x04"  # torch.save writes zip archives
ENGINE, CHECKPOINT, UNKNOWN = "engine", "checkpoint", "unknown"


def file_kind(path: str | os.PathLike) -> str:
    """"engine", "checkpoint" (a torch zip archive: not yet validated) or "unknown"; FileNotFoundError if absent."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no such file: {p}")
    with open(p, "rb") as fh:
        head = fh.read(len(ENGINE_MAGIC))
    if head == ENGINE_MAGIC:
        return ENGINE
    if head[:len(TORCH_ZIP_MAGIC)] == TORCH_ZIP_MAGIC:
        return CHECKPOINT
    return UNKNOWN

"""The engine artifact file: one file holding a JSON header and a backend payload.

Layout (all integers little-endian):
    8 bytes   magic b"LFDNENG\\0"
    4 bytes   uint32 container version (ENGINE_FORMAT_VERSION)
    8 bytes   uint64 header length H
    H bytes   UTF-8 JSON header (a dict)
    8 bytes   uint64 payload length P
    P bytes   payload (TensorRT plan, native packed weights, ONNX model, ...)
    32 bytes  SHA-256 of every byte before it (magic, version, lengths, header and payload; version 2)

Version 1 files (written before the header was covered) carry the SHA-256 of the payload only; they are still
read, with the payload checked and the header not (a flipped bit in the JSON that kept it valid JSON changed
numbers such as the stage sizes or the threshold silently: tests/test_reliability_fuzz.py). Version 2 checks
the digest before parsing the header, so any corruption is reported as such.

The header always has: lfdn_edge_version, backend, precision, layout {stage_dims}, score {t, steps, eta, seed},
score_type, threshold(s), batch {min, opt, max}, includes_backbone, feature {backbone, input_size, ...} and
preprocessing; backends add their own entries (TensorRT/CUDA versions, compute capability, ...).
Writes are atomic; reads check magic, version, lengths (against the file size, before anything is allocated)
and the checksum, so a truncated, corrupted or foreign file gives an EngineError saying so instead of a crash
in a deserialiser.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

from .._atomic import atomic_write
from .._version import __version__
from ..file_kinds import ENGINE_MAGIC as MAGIC

ENGINE_FORMAT_VERSION = 2
LEGACY_ENGINE_FORMAT_VERSIONS = (1,)  # read: their checksum covers the payload only
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
REQUIRED_HEADER_KEYS = ("backend", "precision", "layout", "score", "score_type", "batch")


class EngineError(ValueError):
    """An engine file is missing, truncated, foreign, corrupted, or was built for something else."""


@dataclass
class EngineArtifact:
    """An engine in memory. ``checkpoint``: set (instead of a payload) on the in-memory "torch" artifacts that
    the Scorer makes from a Checkpoint, so the reference graph is built from it without a serialise round trip."""

    header: dict
    payload: bytes = field(repr=False)
    path: Path | None = None
    checkpoint: object | None = field(default=None, repr=False)


def write_engine(path: str | os.PathLike, header: dict, payload: bytes) -> Path:
    """Write header + payload atomically. Adds lfdn_edge_version and engine_format_version to the header."""
    missing = [k for k in REQUIRED_HEADER_KEYS if k not in header]
    if missing:
        raise ValueError(f"engine header lacks required keys {missing}")
    header = dict(header, lfdn_edge_version=__version__, engine_format_version=ENGINE_FORMAT_VERSION)
    head = json.dumps(header, sort_keys=True).encode("utf-8")
    payload = bytes(payload)

    def writer(tmp: Path) -> None:
        digest = hashlib.sha256()
        with open(tmp, "wb") as fh:
            for part in (MAGIC, _U32.pack(ENGINE_FORMAT_VERSION), _U64.pack(len(head)), head,
                         _U64.pack(len(payload)), payload):
                fh.write(part)
                digest.update(part)
            fh.write(digest.digest())

    return atomic_write(path, writer)


def read_engine(path: str | os.PathLike) -> EngineArtifact:
    """Read and validate an engine file (structure and checksum; not device compatibility)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"engine file not found: {p}")
    data = p.read_bytes()
    if len(data) < len(MAGIC) or data[: len(MAGIC)] != MAGIC:
        raise EngineError(f"{p} is not an lfdn-edge engine (bad magic); build one with tools/build_engine.py")
    off = len(MAGIC)
    try:
        (version,) = _U32.unpack_from(data, off)
        off += _U32.size
        if version != ENGINE_FORMAT_VERSION and version not in LEGACY_ENGINE_FORMAT_VERSIONS:
            raise EngineError(f"{p} has engine format version {version}, this lfdn-edge ({__version__}) reads "
                              f"versions {[*LEGACY_ENGINE_FORMAT_VERSIONS, ENGINE_FORMAT_VERSION]}; rebuild the "
                              "engine with this version")
        (hlen,) = _U64.unpack_from(data, off)
        off += _U64.size
        if hlen > len(data) - off:
            raise EngineError(f"{p} is truncated or corrupted (header length {hlen}, {len(data) - off} bytes left)")
        hstart = off
        off += hlen
        (plen,) = _U64.unpack_from(data, off)
        off += _U64.size
    except struct.error as exc:
        raise EngineError(f"{p} is truncated") from exc
    if plen > len(data) or off + plen + 32 != len(data):
        raise EngineError(f"{p} is truncated, corrupted or has trailing data (payload {plen} bytes expected, "
                          f"{len(data) - off - 32} present)")
    payload = data[off:off + plen]
    stored = data[off + plen:]
    if version == ENGINE_FORMAT_VERSION:
        if hashlib.sha256(memoryview(data)[:off + plen]).digest() != stored:
            raise EngineError(f"{p} is corrupted (checksum mismatch); copy or rebuild the engine")
    elif hashlib.sha256(payload).digest() != stored:
        raise EngineError(f"{p} is corrupted (payload checksum mismatch); copy or rebuild the engine")
    try:
        header = json.loads(data[hstart:hstart + hlen].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise EngineError(f"{p} has a corrupted header: {exc}") from exc
    if not isinstance(header, dict) or any(k not in header for k in REQUIRED_HEADER_KEYS):
        raise EngineError(f"{p} header lacks required keys {list(REQUIRED_HEADER_KEYS)}")
    return EngineArtifact(header, payload, p)

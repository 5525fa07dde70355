"""Reader for the IDX format of (Fashion-)MNIST, optionally gzip-compressed."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

# Third magic byte -> numpy dtype (IDX data is big-endian).
_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def parse_idx(data: bytes, source: str = "<bytes>") -> np.ndarray:
    """Decode an IDX buffer: magic ``00 00 <dtype> <ndim>``, ``ndim`` big-endian uint32 sizes, data."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _DTYPES:
        raise ValueError(f"{source}: not an IDX file (magic bytes {data[:4].hex()})")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{source}: truncated IDX header")
    shape = tuple(int(v) for v in np.frombuffer(data, ">u4", count=ndim, offset=4))
    dtype = np.dtype(_DTYPES[data[2]])
    count = int(np.prod(shape, dtype=np.int64))
    if len(data) - header != count * dtype.itemsize:
        raise ValueError(f"{source}: IDX header says shape {shape} ({count * dtype.itemsize} bytes) but "
                         f"{len(data) - header} data bytes follow")
    return np.frombuffer(data, dtype, count=count, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def read_idx(path: str | Path, expect_ndim: int | None = None) -> np.ndarray:
    """Read an IDX file (``.gz`` is decompressed) and optionally check its number of dimensions."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"IDX file not found: {path}")
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    arr = parse_idx(raw, str(path))
    if expect_ndim is not None and arr.ndim != expect_ndim:
        raise ValueError(f"{path}: expected a {expect_ndim}-D IDX array, got shape {arr.shape}")
    return arr

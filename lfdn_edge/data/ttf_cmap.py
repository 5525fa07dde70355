"""Minimal TrueType/OpenType ``cmap`` reader (formats 12 and 4): which code points a font maps.

Pillow can render a glyph but cannot list a font's characters, so this reads the table directly.
"""

from __future__ import annotations

import struct
from pathlib import Path

# (platform, encoding) subtables in order of preference: full Unicode first, then the BMP.
_PREFERRED = ((3, 10), (0, 6), (0, 4), (3, 1), (0, 3), (0, 2), (0, 1), (0, 0))


def _table(data: bytes, tag: bytes, source: str) -> int:
    if len(data) < 12 or data[:4] not in (b"\x00\x01\x00\x00", b"OTTO", b"true"):
        raise ValueError(f"{source}: not a TrueType/OpenType font (collections are not supported)")
    (num_tables,) = struct.unpack_from(">H", data, 4)
    for i in range(num_tables):
        rec_tag, _checksum, offset, _length = struct.unpack_from(">4sIII", data, 12 + 16 * i)
        if rec_tag == tag:
            return offset
    raise ValueError(f"{source}: font has no {tag.decode()!r} table")


def _format12(data: bytes, off: int) -> dict[int, int]:
    (n_groups,) = struct.unpack_from(">I", data, off + 12)
    out: dict[int, int] = {}
    for g in range(n_groups):
        start, end, glyph = struct.unpack_from(">III", data, off + 16 + 12 * g)
        for cp in range(start, end + 1):
            out[cp] = glyph + cp - start
    return out


def _format4(data: bytes, off: int) -> dict[int, int]:
    (seg_x2,) = struct.unpack_from(">H", data, off + 6)
    seg = seg_x2 // 2
    ends = struct.unpack_from(f">{seg}H", data, off + 14)
    starts = struct.unpack_from(f">{seg}H", data, off + 16 + seg_x2)
    deltas = struct.unpack_from(f">{seg}h", data, off + 16 + 2 * seg_x2)
    ro_pos = off + 16 + 3 * seg_x2
    range_offsets = struct.unpack_from(f">{seg}H", data, ro_pos)
    out: dict[int, int] = {}
    for i in range(seg):
        for cp in range(starts[i], ends[i] + 1):
            if cp == 0xFFFF:
                continue
            if range_offsets[i] == 0:
                glyph = (cp + deltas[i]) & 0xFFFF
            else:
                addr = ro_pos + 2 * i + range_offsets[i] + 2 * (cp - starts[i])
                (glyph,) = struct.unpack_from(">H", data, addr)
                if glyph:
                    glyph = (glyph + deltas[i]) & 0xFFFF
            if glyph:
                out[cp] = glyph
    return out


def font_codepoints(path: str | Path) -> dict[int, int]:
    """Map of Unicode code point -> glyph id from the font's best Unicode ``cmap`` subtable."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"font not found: {path}")
    data = path.read_bytes()
    cmap = _table(data, b"cmap", str(path))
    (n_sub,) = struct.unpack_from(">H", data, cmap + 2)
    subtables = {}
    for i in range(n_sub):
        platform, encoding, offset = struct.unpack_from(">HHI", data, cmap + 4 + 8 * i)
        subtables.setdefault((platform, encoding), cmap + offset)
    for key in _PREFERRED:
        if key in subtables:
            off = subtables[key]
            (fmt,) = struct.unpack_from(">H", data, off)
            if fmt == 12:
                return _format12(data, off)
            if fmt == 4:
                return _format4(data, off)
    raise ValueError(f"{path}: no Unicode cmap subtable of format 4 or 12 "
                     f"(found {sorted(subtables)})")

"""Which Unicode code points a font maps (Pillow renders glyphs but cannot list them): fontTools' cmap."""

from __future__ import annotations

from pathlib import Path


def font_codepoints(path: str | Path) -> dict[int, str]:
    """Map of Unicode code point -> glyph name from the font's best Unicode ``cmap`` subtable.

    ValueError for a file that is not a TrueType/OpenType font or has no Unicode cmap.
    """
    from fontTools.ttLib import TTFont, TTLibError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"font not found: {path}")
    try:
        with TTFont(str(path), lazy=True) as font:
            cmap = font.getBestCmap()
    except (TTLibError, AssertionError, KeyError, OSError) as exc:  # fontTools raises several for foreign files
        raise ValueError(f"{path}: not a readable TrueType/OpenType font ({exc})") from exc
    if not cmap:
        raise ValueError(f"{path}: the font has no Unicode cmap subtable")
    return dict(cmap)

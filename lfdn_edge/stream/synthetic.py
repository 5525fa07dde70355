"""test:// sources: synthetic cameras shipped with the package, so a setup can be tested without a camera.

    test://pattern?fps=15&size=640x480&anomaly=30-45,90-100&fault=black:50-60,frozen:70-80&seed=1&frames=200

The scene: a dark background with a slow gradient, a soft grey blob that moves on a circle, and sensor noise
(so consecutive frames are never identical). Frame ranges are inclusive frame numbers:

* ``anomaly=A-B,...``: frames A..B show a fine, drifting orange/cyan checkerboard (a texture nothing like the scene)
  instead of the scene: what the OOD score should flag.
* ``fault=KIND:A-B,...``: camera faults, which health checks should report and the OOD score must not see:
  ``black`` (the frames are black), ``frozen`` (frame A-1 is repeated unchanged), ``corrupt`` (the frames cannot
  be decoded), ``drop`` (the frames never arrive), ``stall`` (the source blocks for (B-A+1)/fps seconds; past the
  reader's read timeout this is a timeout and the reader reconnects), ``error`` (the connection fails at frame A;
  frames A..B are lost; the reader reconnects and the source goes on at B+1).
* ``frames=N``: the source ends after N frames (default: endless); ``seed``: the noise and the patch colours.
* ``live=1`` (default): frames come at ``fps`` in real time (a late reader loses them, as with a camera);
  ``live=0``: frames come as fast as they are read and nothing is dropped, stamped as if captured at ``fps``
  (a replay faster than real time).

Frame k is the same picture whenever it is generated (a function of seed and k), so reruns and reconnects
reproduce it; the capture time (clock "source") is the session start + k / fps.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Optional

import numpy as np

from .frames import RawFrame, SourceError, SourceTimeout
from .uri import SourceSpec, parse_fps, parse_size

FAULT_KINDS = ("black", "frozen", "corrupt", "drop", "stall", "error")
GENERATORS = ("pattern",)
KNOWN_OPTIONS = ("size", "anomaly", "fault", "seed", "frames")


def _ranges(text: str, what: str) -> list[tuple[int, int]]:
    out = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        a, _, b = part.partition("-")
        try:
            lo, hi = int(a), int(b) if b else int(a)
        except ValueError:
            raise ValueError(f"{what}: {part!r} is not a frame range A-B") from None
        if lo < 0 or hi < lo:
            raise ValueError(f"{what}: {part!r}: need 0 <= A <= B")
        out.append((lo, hi))
    return out


@dataclass(frozen=True)
class SyntheticConfig:
    generator: str = "pattern"
    fps: float = 15.0
    size: tuple[int, int] = (640, 480)        # width, height
    anomalies: tuple[tuple[int, int], ...] = ()
    faults: tuple[tuple[str, int, int], ...] = ()
    seed: int = 0
    frames: Optional[int] = None
    live: bool = True

    @classmethod
    def from_spec(cls, spec: SourceSpec) -> SyntheticConfig:
        if spec.target not in GENERATORS:
            raise ValueError(f"test://{spec.target}: unknown generator; known: {', '.join(GENERATORS)}")
        o = dict(spec.options)
        unknown = sorted(set(o) - set(KNOWN_OPTIONS))
        if unknown:
            raise ValueError(f"test://{spec.target}: unknown option(s) {unknown}; known: "
                             f"{', '.join(KNOWN_OPTIONS)}, name, fps, live, drop")
        faults = []
        for part in (p.strip() for p in o.get("fault", "").split(",")):
            if not part:
                continue
            kind, sep, rng = part.partition(":")
            if kind not in FAULT_KINDS or not sep:
                raise ValueError(f"fault {part!r}: expected KIND:A-B with KIND one of {', '.join(FAULT_KINDS)}")
            (lo, hi), = _ranges(rng, f"fault {kind}")
            faults.append((kind, lo, hi))
        try:
            seed = int(o.get("seed", "0"))
            frames = int(o["frames"]) if "frames" in o else None
        except ValueError:
            raise ValueError("test://: seed and frames must be integers") from None
        if frames is not None and frames < 1:
            raise ValueError("test://: frames must be >= 1")
        return cls(spec.target, parse_fps(spec.fps) if spec.fps else 15.0,
                   parse_size(o["size"]) if "size" in o else (640, 480),
                   tuple(_ranges(o.get("anomaly", ""), "anomaly")), tuple(faults), seed, frames, spec.live)

    def fault_at(self, index: int) -> Optional[tuple[str, int, int]]:
        for f in self.faults:
            if f[1] <= index <= f[2]:
                return f
        return None

    def is_anomalous(self, index: int) -> bool:
        return any(a <= index <= b for a, b in self.anomalies)


def render(cfg: SyntheticConfig, index: int) -> np.ndarray:
    """Frame ``index`` of the scene (uint8 RGB (H, W, 3)), with the anomaly patch where one is injected."""
    w, h = cfg.size
    rng = np.random.default_rng([cfg.seed, index])
    t = index / cfg.fps
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = 18.0 + 14.0 * (xx / w) + 6.0 * np.sin(0.2 * t)             # dark, slowly changing gradient
    cx = w * (0.5 + 0.22 * np.cos(0.35 * t))
    cy = h * (0.5 + 0.18 * np.sin(0.35 * t))
    r2 = ((xx - cx) / (0.22 * w)) ** 2 + ((yy - cy) / (0.3 * h)) ** 2
    img = base + 150.0 * np.exp(-1.5 * r2)                             # a soft grey blob
    img = img[..., None] + rng.normal(0.0, 3.0, (h, w, 1)).astype(np.float32)
    out = np.clip(np.repeat(img, 3, axis=2), 0, 255).astype(np.uint8)
    if cfg.is_anomalous(index):
        _paste_anomaly(out, cfg, index)
    return out


def _paste_anomaly(img: np.ndarray, cfg: SyntheticConfig, index: int) -> None:
    """A fine orange/cyan checkerboard over the whole frame. Measured with a Quick-start-configuration model
    (Lite2, fmnist-ood, 23 epochs): MFsim -0.72 on the scene, -0.20 on this; a patch over part of a dark frame
    looks like a centred object (Fashion-MNIST) and scored lower, so the texture covers the frame."""
    h, w = img.shape[:2]
    cell = max(1, h // 30)
    ys, xs = np.mgrid[0:h, 0:w]
    checker = (((ys + 2 * index) // cell + xs // cell) % 2).astype(np.intp)   # drifts: never a frozen frame
    colours = np.array([[245, 40, 10], [10, 210, 245]], dtype=np.float32)
    noise = np.random.default_rng([cfg.seed, index, 1]).normal(0.0, 3.0, (h, w, 1)).astype(np.float32)
    img[...] = np.clip(colours[checker] + noise, 0, 255).astype(np.uint8)


class SyntheticSource:
    """A test:// source as the readers use every source: open(), read() -> RawFrame or None at the end, close()."""

    def __init__(self, spec: SourceSpec, start: int = 0, t0: Optional[float] = None, read_timeout: float = 5.0,
                 stop: Optional[threading.Event] = None):
        self.cfg = SyntheticConfig.from_spec(spec)
        self.t0 = time.time() if t0 is None else t0
        self.read_timeout = read_timeout
        self.stop = stop or threading.Event()
        self.next = start
        self._last: Optional[np.ndarray] = None
        self._failed: set[int] = set()

    def open(self) -> None:
        if self.cfg.live:   # a camera does not wait: frames whose time has passed are gone
            self.next = max(self.next, int((time.time() - self.t0) * self.cfg.fps))

    def _due(self, index: int) -> float:
        return self.t0 + index / self.cfg.fps

    def _wait_until(self, when: float) -> None:
        delay = when - time.time()
        if delay > 0:
            self.stop.wait(delay)

    def read(self) -> Optional[RawFrame]:
        cfg = self.cfg
        while True:
            k = self.next
            if cfg.frames is not None and k >= cfg.frames:
                return None
            if self.stop.is_set():
                return None
            fault = cfg.fault_at(k)
            kind = fault[0] if fault else ""
            if kind in ("drop", "stall", "error"):
                hi = fault[2]
                self.next = hi + 1
                if kind == "error":
                    raise SourceError(f"test://{cfg.generator}: injected connection error at frame {k}")
                if kind == "stall":
                    span = (hi + 1 - k) / cfg.fps
                    if span > self.read_timeout:
                        self.stop.wait(self.read_timeout)
                        raise SourceTimeout(f"test://{cfg.generator}: no frame for {self.read_timeout:g} s "
                                            f"(injected stall at frame {k})")
                    if not cfg.live:
                        self.stop.wait(span)
                continue
            if cfg.live:
                self._wait_until(self._due(k))
                if self.stop.is_set():
                    return None
            self.next = k + 1
            cap = self._due(k)
            if kind == "corrupt":
                return RawFrame(k, None, k / cfg.fps, cap, "injected corrupt frame")
            if kind == "black":
                rng = np.random.default_rng([cfg.seed, k])
                w, h = cfg.size
                img = rng.integers(0, 3, (h, w, 3), dtype=np.uint8)
            elif kind == "frozen" and self._last is not None:
                img = self._last
            else:
                img = render(cfg, k)
            self._last = img
            return RawFrame(k, img, k / cfg.fps, cap)

    @property
    def resume_at(self) -> int:
        """The frame the source goes on at when the reader reopens it after an error or a stall (the lost
        frames are not generated again)."""
        return self.next

    def close(self) -> None:
        pass

    def describe(self) -> dict:
        w, h = self.cfg.size
        return {"decoder": "synthetic", "codec": "rawvideo", "width": w, "height": h, "fps": self.cfg.fps,
                "frames": self.cfg.frames, "live": self.cfg.live}

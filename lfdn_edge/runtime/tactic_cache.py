"""Tactic selection for native engines and its persistent cache (docs/NATIVE.md "Tactics").

When a native CPU engine is loaded, every (batch bucket, layer kind) it can run gets the fastest CPU tactic
that passes verification: ``CpuEngine.select_tactic`` (C++, lfdn/tactic_select.h) runs every applicable
candidate of the engine's ISA on the same inputs, checks it against a float64 reference with the project's
tolerance rule, times it (each sample one run after a cache flush, as in a pass whose weights stream from DRAM;
two rounds: a few samples each, then more for the fastest few and the default; medians) and returns the
fastest passing one; the previous fixed
blocking is itself a candidate and stays unless another is faster by more than ``TACTIC_BASELINE_MARGIN``.
Candidates that fail verification are logged (``logging`` warning) and never used.

The choices are stored with a device fingerprint (CPU model, ISA flags, the engine's ISA, thread count,
lfdn-edge version, machine) in a JSON cache beside the engine file (``<engine>.tactics.json``), written
atomically, and reused on the next load without timing anything. A cache whose fingerprint differs is
rebuilt; choices also live in a per-process memo keyed by fingerprint and layer problems (they depend on
shapes, not weights), so an in-memory artifact loaded twice in one process is not timed twice. A cache that
cannot be read, has the wrong structure or names tactics this engine does not accept
(unknown, another ISA, test-only, not applicable) is ignored with a warning and rebuilt, never trusted.

Environment: ``LFDN_EDGE_TACTIC=<name>`` forces one tactic for every layer (still verified; a ValueError when
it does not apply to a layer or fails verification; not cached); ``LFDN_EDGE_TACTICS=off`` (or
``tactics="off"``) keeps the fixed default blocking without selecting.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from .. import defaults
from .._atomic import atomic_write
from .._version import __version__
from ..progress import bar

log = logging.getLogger("lfdn_edge.tactics")

FORMAT = "lfdn-edge-tactic-cache"
FORMAT_VERSION = 1
TACTIC_ENV = "LFDN_EDGE_TACTIC"
TACTICS_ENV = "LFDN_EDGE_TACTICS"
LAYER_KINDS = ("inp", "block", "out")
MODES = ("auto", "off")


_MEMO: dict = {}


def clear_memo() -> None:
    """Forget the choices of this process (the next load without a cache file selects again)."""
    _MEMO.clear()


class TacticCacheWarning(UserWarning):
    """A tactic cache was ignored (unreadable, corrupt or untrusted) and is rebuilt."""


@dataclass
class TacticReport:
    """What happened at load: ``source`` is "selected", "cache", "memo", "forced" or "off"; ``choices`` maps slot
    ("b<bucket>.<kind>") to the tactic name; ``results`` the selection's per-candidate results (selected/forced
    only); ``rejected`` the candidates that failed verification; ``cache_path`` where the cache lives (or None)."""

    source: str
    choices: dict = field(default_factory=dict)
    results: dict = field(default_factory=dict)
    rejected: list = field(default_factory=list)
    cache_path: str | None = None
    seconds: float = 0.0
    fingerprint: dict = field(default_factory=dict)


def tactics_mode(mode: str | None = None) -> str:
    """The selection mode: ``mode`` if given, else $LFDN_EDGE_TACTICS, else defaults.TACTICS."""
    raw = mode if mode is not None else (os.environ.get(TACTICS_ENV, "").strip() or defaults.TACTICS)
    raw = str(raw).strip().lower()
    if raw not in MODES:
        raise ValueError(f"tactics mode must be one of {MODES} (argument or ${TACTICS_ENV}), got {raw!r}")
    return raw


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_fingerprint(engine) -> dict:
    """What a CPU tactic choice depends on: CPU model, usable/active ISA tables, the engine's ISA, threads,
    lfdn-edge version and machine. Any change rebuilds the cache."""
    from ..native_core import load_native

    info = load_native().build_info()
    return {
        "device": "cpu",
        "cpu_model": _cpu_model(),
        "machine": platform.machine(),
        "isa_usable": list(info.get("cpu_kernels_usable", [])),
        "engine_isa": engine.isa,
        "threads": int(engine.threads),
        "lfdn_edge_version": __version__,
    }


def gpu_fingerprint(device_name: str, compute_capability, driver_version, cuda_version, **extra) -> dict:
    """The fingerprint of a CUDA tactic choice (for the CUDA engine's use of load_cache / store_cache): device
    name, compute capability, driver and CUDA runtime versions, lfdn-edge version, plus ``extra`` fields."""
    return {"device": "cuda", "device_name": str(device_name), "compute_capability": str(compute_capability),
            "driver_version": str(driver_version), "cuda_version": str(cuda_version),
            "lfdn_edge_version": __version__, **{k: extra[k] for k in sorted(extra)}}


def cache_path_for(engine_path) -> Path | None:
    """``<engine>.tactics.json`` beside an engine file, None for an in-memory artifact."""
    if engine_path is None:
        return None
    p = Path(engine_path)
    return p.with_name(p.name + ".tactics.json")


def slot_name(bucket: int, kind: int) -> str:
    return f"b{bucket}.{LAYER_KINDS[kind]}"


def _slots(engine):
    """(bucket, kind, problem key) of every slot the engine runs."""
    out = []
    for b in range(engine.num_buckets):
        for k in range(len(LAYER_KINDS)):
            try:
                pr = engine.tactic_problem(b, k)
            except ValueError:  # no block layers
                continue
            key = f"{LAYER_KINDS[k]}:{pr['in_dim']}x{pr['out_dim']}:{pr['prologue']}:{pr['wtype']}:rows{pr['rows']}"
            out.append((b, k, key))
    return out


def _fingerprint_hash(fp: dict) -> str:
    return hashlib.sha256(json.dumps(fp, sort_keys=True).encode()).hexdigest()[:16]


def load_cache(path: Path, fingerprint: dict, slots) -> dict | None:
    """The cached choices {slot: name} when ``path`` holds a well-formed cache for this fingerprint and exactly
    these slots; None when absent or stale (fingerprint changed: rebuilt silently, logged); None with a
    TacticCacheWarning when unreadable or malformed."""
    if path is None or not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("version") != FORMAT_VERSION:
            raise ValueError("not a tactic cache of this format version")
        fp = data.get("fingerprint")
        choices = data.get("choices")
        if not isinstance(fp, dict) or not isinstance(choices, dict):
            raise ValueError("fingerprint or choices missing")
        if data.get("fingerprint_sha") != _fingerprint_hash(fp):
            raise ValueError("fingerprint checksum mismatch")
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        warnings.warn(f"tactic cache {path} ignored and rebuilt: {exc}", TacticCacheWarning, stacklevel=3)
        return None
    if fp != fingerprint:
        changed = sorted(k for k in set(fp) | set(fingerprint) if fp.get(k) != fingerprint.get(k))
        log.info("tactic cache %s is for another device/configuration (%s differ): rebuilding", path, changed)
        return None
    out = {}
    for b, k, key in slots:
        e = choices.get(slot_name(b, k))
        if not isinstance(e, dict) or not isinstance(e.get("tactic"), str) or e.get("key") != key:
            warnings.warn(f"tactic cache {path} ignored and rebuilt: no valid entry for {slot_name(b, k)} ({key})",
                          TacticCacheWarning, stacklevel=3)
            return None
        out[slot_name(b, k)] = e["tactic"]
    return out


def store_cache(path: Path, fingerprint: dict, slots, choices: dict, results: dict) -> None:
    data = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "fingerprint": fingerprint,
        "fingerprint_sha": _fingerprint_hash(fingerprint),
        "created_unix": time.time(),
        "choices": {
            slot_name(b, k): {
                "tactic": choices[slot_name(b, k)],
                "key": key,
                "candidates": [
                    {"name": r["name"], "passed": r["passed"], "median_us": r["median_s"] * 1e6 if r["median_s"] > 0 else None,
                     "max_err_ratio": r["max_err_ratio"], "note": r["note"]}
                    for r in results.get(slot_name(b, k), []) if r["applies"]
                ],
            }
            for b, k, key in slots
        },
    }
    text = json.dumps(data, indent=1, sort_keys=True, allow_nan=True)
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def select_cpu_tactics(engine, *, forced: str | None = None, test_only=(), fake_times=None,
                       warmup: int | None = None, samples: int | None = None, inner: int = 0,
                       progress: bool = True):
    """Run the selection for every slot of ``engine``; returns ({slot: name}, {slot: results}, rejected).
    Does not apply the choices. Raises ValueError when the forced tactic is unusable or fails verification,
    RuntimeError when no candidate of a slot passes (a broken build: never silently the wrong numbers)."""
    slots = _slots(engine)
    choices, results, rejected = {}, {}, []
    # the bar only on a terminal: captured output (subprocesses, logs) gets no progress characters
    it = bar(slots, desc="tactics", unit="layer", min_items=2) if progress and sys.stderr.isatty() else slots
    for b, k, key in it:
        r = engine.select_tactic(b, k, forced=forced or "", test_only=list(test_only),
                                 fake_times=dict(fake_times or {}),
                                 warmup=defaults.TACTIC_WARMUP if warmup is None else warmup,
                                 samples=defaults.TACTIC_SAMPLES if samples is None else samples, inner=inner,
                                 baseline_margin=defaults.TACTIC_BASELINE_MARGIN,
                                 first_samples=defaults.TACTIC_FIRST_SAMPLES, finalists=defaults.TACTIC_FINALISTS,
                                 cold_cache=defaults.TACTIC_COLD_CACHE)
        name = slot_name(b, k)
        results[name] = r["results"]
        for c in r["results"]:
            if c["applies"] and not c["passed"]:
                rejected.append({"slot": name, "key": key, "name": c["name"], "note": c["note"],
                                 "max_err_ratio": c["max_err_ratio"]})
                log.warning("tactic %s rejected for %s (%s): %s", c["name"], name, key, c["note"])
        if r["chosen"] is None:
            if forced:
                raise ValueError(f"{TACTIC_ENV}={forced}: {r['error']} for {name} ({key})")
            raise RuntimeError(f"no CPU tactic passed verification for {name} ({key}): {r['error']}")
        choices[name] = r["chosen"]
    return choices, results, rejected


def apply_choices(engine, choices: dict) -> None:
    """Set every slot's tactic (ValueError from the engine when a name is not acceptable for it)."""
    for b, k, _ in _slots(engine):
        engine.set_tactic(b, k, choices[slot_name(b, k)])


def configure_cpu_engine(engine, engine_path=None, *, mode: str | None = None, progress: bool = True,
                         cache: bool = True) -> TacticReport:
    """Give a native CPU engine its tactics: forced ($LFDN_EDGE_TACTIC), off, from the cache beside
    ``engine_path``, or selected now (and cached). Returns what happened."""
    t0 = time.perf_counter()
    m = tactics_mode(mode)
    forced = os.environ.get(TACTIC_ENV, "").strip()
    path = cache_path_for(engine_path) if cache else None
    fp = cpu_fingerprint(engine)
    if forced:
        choices, results, rejected = select_cpu_tactics(engine, forced=forced, progress=progress)
        apply_choices(engine, choices)
        log.info("tactics forced by %s=%s", TACTIC_ENV, forced)
        return TacticReport("forced", choices, results, rejected, None, time.perf_counter() - t0, fp)
    if m == "off":
        return TacticReport("off", {slot_name(b, k): None for b, k, _ in _slots(engine)}, cache_path=None,
                            seconds=time.perf_counter() - t0, fingerprint=fp)
    slots = _slots(engine)
    cached = load_cache(path, fp, slots) if path is not None else None
    if cached is not None:
        try:
            apply_choices(engine, cached)
            return TacticReport("cache", cached, cache_path=str(path), seconds=time.perf_counter() - t0,
                                fingerprint=fp)
        except ValueError as exc:  # names a tactic this engine does not accept: never trusted
            warnings.warn(f"tactic cache {path} ignored and rebuilt: {exc}", TacticCacheWarning, stacklevel=2)
            for b, k, _ in slots:
                engine.set_tactic(b, k, None)
    memo_key = (_fingerprint_hash(fp), tuple(key for _, _, key in slots))
    memo = _MEMO.get(memo_key)
    if memo is not None:
        choices, results, rejected, source = dict(memo[0]), memo[1], [], "memo"
    else:
        choices, results, rejected = select_cpu_tactics(engine, progress=progress)
        source = "selected"
        _MEMO[memo_key] = (dict(choices), results)
    apply_choices(engine, choices)
    if path is not None:
        try:
            store_cache(path, fp, slots, choices, results)
        except OSError as exc:  # a read-only folder: the choice still applies to this load
            log.warning("tactic cache %s not written: %s", path, exc)
    return TacticReport(source, choices, results, rejected, str(path) if path else None,
                        time.perf_counter() - t0, fp)

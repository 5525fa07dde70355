"""Tactic selection of the native CUDA engine and its cache (docs/NATIVE.md "CUDA tactics").

NEVER RUN ON A GPU YET: the development machine has no GPU; the logic is tested against a stand-in engine
(tests/test_cuda_tactics.py) and tools/gpu_check.sh runs it on a lent GPU.

The CUDA engine (``_C.CudaEngine``) chooses a tactic per (layer key, batch bucket) on its device: every
candidate runs on the engine's weights at the bucket's upper bound rows, is checked against the reference
kernel with the FP16 tolerance rule and timed with cudaEvents; the fastest passing one is kept, failing ones
are logged (``lfdn_edge.tactics``) and never used. This module does that at load for every bucket and keeps
the choices in ``<engine>.cuda-tactics.json`` beside the engine file with a fingerprint (GPU name, compute
capability, SM count, driver and runtime versions, the module's CUDA version and architectures, whether and
which cuBLASLt loaded, lfdn-edge version); the next load reuses them (each one re-verified on the device by
``set_tactic``, which is cheap) and any fingerprint change rebuilds the cache. A cache that is unreadable,
malformed, or names a tactic the engine refuses is ignored with a TacticCacheWarning and rebuilt.

``LFDN_EDGE_TACTIC=cuda.<name>`` (comma-separated, beside at most one CPU name; parsed by
tactic_cache.forced_tactics) forces that tactic where it applies (still verified: a ValueError when it
fails; not cached). ``tactics="off"`` / LFDN_EDGE_TACTICS=off: cuda.legacy_tile (the first kernel) everywhere.
"""

from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path

from .._version import __version__
from ..progress import bar
from .tactic_cache import TacticCacheWarning, TacticReport, forced_tactics, read_cache, tactics_mode, write_cache

log = logging.getLogger("lfdn_edge.tactics")

FORMAT = "lfdn-edge-cuda-tactic-cache"
FORMAT_VERSION = 1
LEGACY = "cuda.legacy_tile"


def cuda_cache_path_for(engine_path) -> Path | None:
    """``<engine>.cuda-tactics.json`` beside an engine file (the CPU cache is separate), None in memory."""
    if engine_path is None:
        return None
    p = Path(engine_path)
    return p.with_name(p.name + ".cuda-tactics.json")


def cuda_fingerprint(engine) -> dict:
    """What a CUDA tactic choice depends on; any change rebuilds the cache."""
    from ..native_core import load_native

    C = load_native()
    info = C.build_info()
    dev = dict(engine.device_info())
    return {"device": "cuda", "gpu": dev["name"], "compute_capability": dev["compute_capability"],
            "sms": int(dev["sms"]), "driver": int(dev["driver"]), "runtime": int(dev["runtime"]),
            "module_cuda": info.get("cuda_version"), "module_archs": list(info.get("cuda_archs", [])),
            "cublaslt": C.cublaslt_info() if getattr(C, "cublaslt_available", lambda: False)() else None,
            "lfdn_edge_version": __version__}


def slot(key: str, bucket: int) -> str:
    return f"b{bucket}.{key}"


def _slots(engine):
    return [(k, int(b)) for b in engine.buckets for k in engine.layer_keys]


def load_cuda_cache(path: Path | None, fingerprint: dict, slots) -> dict | None:
    """{slot: name} when ``path`` holds a well-formed cache for this fingerprint and exactly these slots."""
    choices = read_cache(path, FORMAT, FORMAT_VERSION, fingerprint, "CUDA tactic cache")
    if choices is None:
        return None
    out = {}
    for key, b in slots:
        e = choices.get(slot(key, b))
        if not isinstance(e, dict) or not isinstance(e.get("tactic"), str) or not e["tactic"].startswith("cuda."):
            warnings.warn(f"CUDA tactic cache {path} ignored and rebuilt: no valid entry for {slot(key, b)}",
                          TacticCacheWarning, stacklevel=2)
            return None
        out[slot(key, b)] = e["tactic"]
    return out


def store_cuda_cache(path: Path, fingerprint: dict, slots, choices: dict, records: dict) -> None:
    entries = {slot(k, b): {"tactic": choices[slot(k, b)],
                            "candidates": [{x: r[x] for x in ("name", "passed", "median_us", "max_abs_err",
                                                              "tolerance", "worst_ratio", "error")}
                                           for r in records.get(slot(k, b), []) if r["applies"]]}
               for k, b in slots}
    write_cache(path, FORMAT, FORMAT_VERSION, fingerprint, entries)


def select_cuda_tactics(engine, *, test_only=(), iters: int = 20, progress: bool = True):
    """Select every bucket now; returns ({slot: name}, {slot: records}, rejected). Raises ValueError (from
    the engine) when a forced tactic fails or no candidate passes."""
    choices, records, rejected = {}, {}, []
    buckets = list(engine.buckets)
    for b in (bar(buckets, desc="CUDA tactics", unit="bucket", min_items=2) if progress else buckets):
        for r in engine.select_tactics(int(b), list(test_only), int(iters)):
            s = slot(r["key"], int(r["bucket"]))
            records.setdefault(s, []).append(dict(r))
            if r["applies"] and not r["passed"]:
                rejected.append({"slot": s, "name": r["name"], "error": r["error"], "worst_ratio": r["worst_ratio"]})
                log.warning("CUDA tactic %s rejected for %s: %s", r["name"], s, r["error"])
            if r["chosen"]:
                choices[s] = r["name"]
    return choices, records, rejected


def configure_cuda_engine(engine, engine_path=None, *, mode: str | None = None, progress: bool = True,
                          cache: bool = True) -> TacticReport:
    """Give a ``_C.CudaEngine`` its tactics: forced, off (legacy kernel), from the cache, or selected now."""
    t0 = time.perf_counter()
    m = tactics_mode(mode)
    forced = forced_tactics("cuda")
    slots = _slots(engine)
    fp = cuda_fingerprint(engine)
    if forced:  # the engine restricts its candidates to these ($LFDN_EDGE_TACTIC is read in C++)
        choices, records, rejected = select_cuda_tactics(engine, progress=progress)
        return TacticReport("forced", choices, records, rejected, None, time.perf_counter() - t0, fp)
    if m == "off":
        for key, b in slots:
            engine.set_tactic(key, b, LEGACY)
        return TacticReport("off", {slot(k, b): LEGACY for k, b in slots}, seconds=time.perf_counter() - t0,
                            fingerprint=fp)
    path = cuda_cache_path_for(engine_path) if cache else None
    cached = load_cuda_cache(path, fp, slots)
    if cached is not None:
        try:
            for key, b in slots:
                engine.set_tactic(key, b, cached[slot(key, b)])  # re-verified on the device
            return TacticReport("cache", cached, cache_path=str(path), seconds=time.perf_counter() - t0,
                                fingerprint=fp)
        except ValueError as exc:
            warnings.warn(f"CUDA tactic cache {path} ignored and rebuilt: {exc}", TacticCacheWarning, stacklevel=2)
    choices, records, rejected = select_cuda_tactics(engine, progress=progress)
    if path is not None:
        try:
            store_cuda_cache(path, fp, slots, choices, records)
        except OSError as exc:
            log.warning("CUDA tactic cache %s not written: %s", path, exc)
    return TacticReport("selected", choices, records, rejected, str(path) if path else None,
                        time.perf_counter() - t0, fp)

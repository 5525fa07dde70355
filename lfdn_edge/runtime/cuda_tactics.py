"""Tactic selection of the native CUDA engine and its cache (docs/NATIVE.md "CUDA tactics").

NEVER RUN ON A GPU YET: the development machine has no GPU; the logic is tested against a stand-in engine
(tests/test_cuda_tactics.py), the isolation on the CPU engine (tests/test_tactic_isolation.py), and
tools/gpu_check.sh runs it on a lent GPU. The first selection of an engine that has a file runs in a child
process (runtime/tactic_isolation.py): a faulting candidate is rejected there and never runs in the caller.

The CUDA engine (``_C.CudaEngine``) chooses a tactic per (layer key, batch bucket) on its device: every
candidate runs on the engine's weights at the bucket's upper bound rows, is checked against the reference
kernel with the FP16 tolerance rule and timed with cudaEvents; the fastest passing one is kept, failing ones
are logged (``lfdn_edge.tactics``) and never used. An 'int8' engine (packed CUDA INT8 blobs, lfdn/cuda_tactics.h)
has the INT8 weight-streaming tactics cuda.i8_stream_r8 / cuda.i8_stream_r16 as candidates up to 16 rows besides
the FP16 ones (on the blobs' FP16 copies), all verified against the reference on the INT8 weights q * scale
(the INT8 rule); nothing here depends on the precision (the cache file belongs to its engine file). This module does that at load for every bucket and keeps
the choices in ``<engine>.cuda-tactics.json`` beside the engine file with a fingerprint (GPU name, compute
capability, SM count, driver and runtime versions, the module's CUDA version and architectures, whether and
which cuBLASLt loaded, lfdn-edge version); the next load reuses them (each one re-verified on the device by
``set_tactic``, which is cheap) and any fingerprint change rebuilds the cache. A cache that is unreadable,
malformed, or names a tactic the engine refuses is ignored with a TacticCacheWarning and rebuilt.

Whole-pass check against cuBLASLt (:func:`confirm_against_cublaslt`, never run on a GPU yet): per-layer event
timings need not add up to the pass (the same lesson as on the CPU, measured there), and the project's goal is
"never slower than the cuBLASLt tactic at any batch". So when cuBLASLt loaded, every bucket's per-layer choices
are timed on whole passes (the engine's graph for that bucket, ABBA rounds, ``tactic_cache.pass_ab``) against
the same bucket with cuda.cublaslt in every layer where it applies; the faster set stays (ties: the per-layer
choices). The measurements are in the report and the cache (``pass_checks``).

``LFDN_EDGE_TACTIC=cuda.<name>`` (comma-separated, beside at most one CPU name; parsed by
tactic_cache.forced_tactics) forces that tactic where it applies (still verified: a ValueError when it
fails; not cached). ``tactics="off"`` / LFDN_EDGE_TACTICS=off: cuda.legacy_tile (the first kernel) everywhere.
"""

from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path

import numpy as np

from .._version import __version__
from ..progress import bar
from .. import defaults
from .tactic_cache import (TacticCacheWarning, TacticReport, forced_tactics, pass_ab, read_cache, sample_timer,
                           tactics_mode, write_cache)

log = logging.getLogger("lfdn_edge.tactics")

FORMAT = "lfdn-edge-cuda-tactic-cache"
FORMAT_VERSION = 1
LEGACY = "cuda.legacy_tile"
CUBLASLT = "cuda.cublaslt"


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


def store_cuda_cache(path: Path, fingerprint: dict, slots, choices: dict, records: dict,
                     pass_checks: dict | None = None) -> None:
    entries = {slot(k, b): {"tactic": choices[slot(k, b)],
                            "candidates": [{x: r[x] for x in ("name", "passed", "median_us", "max_abs_err",
                                                              "tolerance", "worst_ratio", "error")}
                                           for r in records.get(slot(k, b), []) if r["applies"]]}
               for k, b in slots}
    write_cache(path, FORMAT, FORMAT_VERSION, fingerprint, entries, pass_checks=dict(pass_checks or {}))


def select_cuda_tactics(engine, *, test_only=(), iters: int = 20, progress: bool = True, exclude=(),
                        journal: str = ""):
    """Select every bucket now, in this process; returns ({slot: name}, {slot: records}, rejected). Raises
    ValueError (from the engine) when a forced tactic fails or no candidate passes, RuntimeError naming the
    candidate whose CUDA error ended the selection. exclude / journal: see runtime/tactic_isolation.py."""
    choices, records, rejected = {}, {}, []
    buckets = list(engine.buckets)
    extra = {"exclude": list(exclude), "journal": journal} if (exclude or journal) else {}
    for b in (bar(buckets, desc="CUDA tactics", unit="bucket", min_items=2) if progress else buckets):
        for r in engine.select_tactics(int(b), list(test_only), int(iters), **extra):
            s = slot(r["key"], int(r["bucket"]))
            records.setdefault(s, []).append(dict(r))
            if r["applies"] and not r["passed"]:
                rejected.append({"slot": s, "name": r["name"], "error": r["error"], "worst_ratio": r["worst_ratio"]})
                log.warning("CUDA tactic %s rejected for %s: %s", r["name"], s, r["error"])
            if r["chosen"]:
                choices[s] = r["name"]
    return choices, records, rejected


def _cuda_pass_timer(scorer, rows: int, min_sample_s: float):
    """Seconds per scoring pass of ``rows`` random vectors on ``scorer`` (lfdn_edge.native_core.NativeCudaEngine:
    its bucket graph), synchronised; one untimed pass before each sample (set_tactic drops the bucket's graph,
    the next pass captures it again)."""
    import torch

    z = torch.randn(rows, scorer.in_dim, device=scorer.device)

    def once():
        scorer.score(z)
        torch.cuda.synchronize(scorer.device)

    torch.cuda.synchronize(scorer.device)
    return sample_timer(once, min_sample_s, warm_calls=1)


def confirm_against_cublaslt(engine, choices: dict, *, pass_timer=None, scorer=None, rounds: int | None = None,
                             available: bool | None = None) -> tuple[dict, dict]:
    """Per bucket: whole passes with the per-layer ``choices`` against cuda.cublaslt in every layer where it
    applies (``set_tactic`` refuses it elsewhere; those layers keep their choice); the faster set stays.
    Returns (final choices, pass checks {"b<bucket>": {rows, selected_s, cublaslt_s, kept}}); nothing is timed
    when cuBLASLt is not available or already chosen everywhere. ``pass_timer(bucket, rows)`` -> a function
    variant -> seconds per pass (tests); default: a real timer on ``scorer`` (skipped without one)."""
    if available is None:
        from ..native_core import load_native

        C = load_native()
        available = bool(getattr(C, "cublaslt_available", lambda: False)())
    if not available or (pass_timer is None and scorer is None):
        return dict(choices), {}
    rounds = defaults.TACTIC_PASS_ROUNDS if rounds is None else rounds
    final, checks = dict(choices), {}
    for b in [int(x) for x in engine.buckets]:
        keys = list(engine.layer_keys)
        base = {}
        for k in keys:  # cuda.cublaslt where it applies and verifies, else the per-layer choice
            try:
                engine.set_tactic(k, b, CUBLASLT)
                base[k] = CUBLASLT
            except ValueError:
                base[k] = choices[slot(k, b)]
        sel = {k: choices[slot(k, b)] for k in keys}
        if base == sel:
            continue
        rows = min(b, int(getattr(engine, "max_batch", b)))
        timer = (pass_timer(b, rows) if pass_timer is not None
                 else _cuda_pass_timer(scorer, rows, defaults.TACTIC_PASS_MIN_SAMPLE_S))

        def run(variant):
            for k in keys:
                engine.set_tactic(k, b, (sel if variant == "selected" else base)[k])
            return timer(variant)

        samples = pass_ab(run, ("selected", "cublaslt"), rounds)
        med = {v: float(np.median(x)) for v, x in samples.items()}
        kept = med["selected"] <= med["cublaslt"]
        checks[f"b{b}"] = {"rows": rows, "selected_s": med["selected"], "cublaslt_s": med["cublaslt"],
                           "samples": samples, "kept": bool(kept)}
        use = sel if kept else base
        for k in keys:
            engine.set_tactic(k, b, use[k])
            final[slot(k, b)] = use[k]
        if not kept:
            log.info("CUDA bucket %d: cuBLASLt passes were faster (%.1f vs %.1f us): using cuda.cublaslt", b,
                     1e6 * med["cublaslt"], 1e6 * med["selected"])
    return final, checks


def select_cuda_tactics_isolated(engine, engine_path, *, progress: bool = True):
    """The first selection in a child process (runtime/tactic_isolation.py): a candidate that faults there is
    rejected and never runs here; the child's choices are applied with ``set_tactic`` (verified again on this
    device). Returns ({slot: name}, {slot: records}, rejected) like :func:`select_cuda_tactics`."""
    from .tactic_isolation import select_isolated

    dev = int(getattr(engine, "device", 0))
    if progress:
        log.info("CUDA tactics: selecting in a child process (cuda:%d)", dev)
    sel = select_isolated(engine_path, device=f"cuda:{dev}", max_batch=int(engine.max_batch))
    for s_, name in sel.choices.items():
        bucket, key = s_[1:].split(".", 1)
        engine.set_tactic(key, int(bucket), name)
    rejected = [{"slot": r["slot"], "name": r["name"], "error": r["why"], "worst_ratio": None} for r in sel.rejected]
    for s_, recs in sel.records.items():
        for r in recs:
            if r["applies"] and not r["passed"]:
                rejected.append({"slot": s_, "name": r["name"], "error": r["error"], "worst_ratio": r["worst_ratio"]})
    return dict(sel.choices), dict(sel.records), rejected


def configure_cuda_engine(engine, engine_path=None, *, mode: str | None = None, progress: bool = True,
                          cache: bool = True, scorer=None, pass_timer=None,
                          cublaslt: bool | None = None, isolate: bool | None = None) -> TacticReport:
    """Give a ``_C.CudaEngine`` its tactics: forced, off (legacy kernel), from the cache, or selected now (then
    checked on whole passes against cuBLASLt, :func:`confirm_against_cublaslt`, when ``scorer`` (the
    NativeCudaEngine wrapping ``engine``) or ``pass_timer`` is given and cuBLASLt loaded; ``cublaslt``
    overrides that availability, for tests). ``isolate`` (default: whenever ``engine_path`` is the engine's file): the first
    selection runs in a child process, so a candidate that faults cannot take this process down
    (runtime/tactic_isolation.py); an engine without a file selects in this process."""
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
    if isolate is None:  # the child builds its engine from the file: only an engine that has one is isolated
        isolate = engine_path is not None and Path(engine_path).is_file()
    if isolate:
        choices, records, rejected = select_cuda_tactics_isolated(engine, engine_path, progress=progress)
    else:
        choices, records, rejected = select_cuda_tactics(engine, progress=progress)
    choices, checks = confirm_against_cublaslt(engine, choices, pass_timer=pass_timer, scorer=scorer,
                                               available=cublaslt)
    if path is not None:
        try:
            store_cuda_cache(path, fp, slots, choices, records, checks)
        except OSError as exc:
            log.warning("CUDA tactic cache %s not written: %s", path, exc)
    return TacticReport("selected", choices, records, rejected, str(path) if path else None,
                        time.perf_counter() - t0, fp, checks)

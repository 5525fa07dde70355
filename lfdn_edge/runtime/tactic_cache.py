"""Tactic selection for native engines and its persistent cache (docs/NATIVE.md "Tactics").

When a native CPU engine is loaded, every (batch bucket, layer kind) it can run gets the fastest CPU tactic
that passes verification: ``CpuEngine.select_tactic`` (C++, lfdn/tactic_select.h) runs every applicable
candidate of the engine's ISA on the same inputs, checks it against a float64 reference with the project's
tolerance rule, times it (each sample one run after a cache flush, as in a pass whose weights stream from DRAM;
two rounds: a few samples each, then more for the fastest few and the default; medians) and returns the
fastest passing one; the previous fixed
blocking is itself a candidate and stays unless another is faster by more than ``TACTIC_BASELINE_MARGIN``.
Candidates that fail verification are logged (``logging`` warning) and never used.

Per-layer timings do not predict a whole pass (measured 2026-12-01: per-layer choices made the paper-size pass
0.92-1.02x of the default blocking; a layer timed alone runs with other caches and prefetch state than inside a
pass). So every bucket whose per-layer choice differs anywhere from the default blocking is then confirmed on
WHOLE PASSES (:func:`confirm_by_pass`): the engine scores the bucket's upper-bound batch with the bucket's
choices and with the default blocking, alternately (ABBA order, after a warm-up of each), and the choices stay
only when their median pass is faster by more than ``TACTIC_PASS_MARGIN``; otherwise the bucket reverts to the
default blocking. The measurements are in the report and the cache (``pass_checks``).

The choices are stored with a device fingerprint (CPU model, ISA flags, the engine's ISA, thread count,
lfdn-edge version, machine) in a JSON cache beside the engine file (``<engine>.tactics.json``), written
atomically, and reused on the next load without timing anything. A cache whose fingerprint differs is
rebuilt; choices also live in a per-process memo keyed by fingerprint and layer problems (they depend on
shapes, not weights), so an in-memory artifact loaded twice in one process is not timed twice. A cache that
cannot be read, has the wrong structure or names tactics this engine does not accept
(unknown, another ISA, test-only, not applicable) is ignored with a warning and rebuilt, never trusted.

Environment: ``LFDN_EDGE_TACTIC=<name>[,<name>...]`` forces tactics (:func:`forced_tactics` is the one parser:
CPU engines take the entries without the ``cuda.`` prefix, at most one, for every layer; CUDA engines the
``cuda.`` entries; still verified; a ValueError when it does not apply to a layer or fails verification; not
cached); ``LFDN_EDGE_TACTICS=off`` (or
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

import numpy as np

from .. import defaults
from .._atomic import atomic_write
from .._version import __version__
from ..progress import bar

log = logging.getLogger("lfdn_edge.tactics")

FORMAT = "lfdn-edge-tactic-cache"
FORMAT_VERSION = 2  # 2: choices confirmed on whole passes (pass_checks); version-1 caches are rebuilt
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


def forced_tactics(device: str) -> list[str]:
    """The tactics $LFDN_EDGE_TACTIC forces for ``device`` ("cpu" or "cuda"): a comma-separated list whose
    ``cuda.`` entries are for CUDA engines and the others for CPU engines (so one setting can force both).
    A CPU engine takes one name for all its layers: more than one CPU entry is a ValueError."""
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
    names = [n.strip() for n in os.environ.get(TACTIC_ENV, "").split(",") if n.strip()]
    mine = [n for n in names if n.startswith("cuda.") == (device == "cuda")]
    if device == "cpu" and len(mine) > 1:
        raise ValueError(f"{TACTIC_ENV} names {len(mine)} CPU tactics ({', '.join(mine)}); a CPU engine runs one "
                         "tactic for every layer: name at most one (plus any cuda.* tactics)")
    return mine


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
    pass_checks: dict = field(default_factory=dict)


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


def read_cache(path: Path | None, fmt: str, version: int, fingerprint: dict, what: str = "tactic cache"):
    """The ``choices`` mapping of a cache file of format ``fmt``/``version`` written for ``fingerprint``, or None:
    absent; another format version or another fingerprint (stale: logged, rebuilt silently); unreadable or
    malformed (a TacticCacheWarning). Shared by the CPU and the CUDA caches; each validates its own entries."""
    if path is None or not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or data.get("format") != fmt:
            raise ValueError(f"not a {what}")
        if data.get("version") != version:
            log.info("%s %s has format version %r (this lfdn-edge writes %d): rebuilding", what, path,
                     data.get("version"), version)
            return None
        fp = data.get("fingerprint")
        choices = data.get("choices")
        if not isinstance(fp, dict) or not isinstance(choices, dict):
            raise ValueError("fingerprint or choices missing")
        if data.get("fingerprint_sha") != _fingerprint_hash(fp):
            raise ValueError("fingerprint checksum mismatch")
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        warnings.warn(f"{what} {path} ignored and rebuilt: {exc}", TacticCacheWarning, stacklevel=3)
        return None
    if fp != fingerprint:
        changed = sorted(k for k in set(fp) | set(fingerprint) if fp.get(k) != fingerprint.get(k))
        log.info("%s %s is for another device/configuration (%s differ): rebuilding", what, path, changed)
        return None
    return choices


def write_cache(path: Path, fmt: str, version: int, fingerprint: dict, choices: dict, **extra) -> None:
    """Write a cache file atomically (the format :func:`read_cache` reads)."""
    data = {"format": fmt, "version": version, "fingerprint": fingerprint,
            "fingerprint_sha": _fingerprint_hash(fingerprint), "created_unix": time.time(), "choices": choices,
            **extra}
    text = json.dumps(data, indent=1, sort_keys=True, allow_nan=True)
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def load_cache(path: Path, fingerprint: dict, slots) -> dict | None:
    """The cached choices {slot: name} when ``path`` holds a well-formed cache for this fingerprint and exactly
    these slots; None when absent or stale (fingerprint changed: rebuilt silently, logged); None with a
    TacticCacheWarning when unreadable or malformed."""
    choices = read_cache(path, FORMAT, FORMAT_VERSION, fingerprint)
    if choices is None:
        return None
    out = {}
    for b, k, key in slots:
        e = choices.get(slot_name(b, k))
        if not isinstance(e, dict) or not isinstance(e.get("tactic"), str) or e.get("key") != key:
            warnings.warn(f"tactic cache {path} ignored and rebuilt: no valid entry for {slot_name(b, k)} ({key})",
                          TacticCacheWarning, stacklevel=2)
            return None
        out[slot_name(b, k)] = e["tactic"]
    return out


def store_cache(path: Path, fingerprint: dict, slots, choices: dict, results: dict,
                pass_checks: dict | None = None) -> None:
    entries = {
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
    }
    write_cache(path, FORMAT, FORMAT_VERSION, fingerprint, entries, pass_checks=dict(pass_checks or {}))


def select_cpu_tactics(engine, *, forced: str | None = None, test_only=(), fake_times=None,
                       warmup: int | None = None, samples: int | None = None, inner: int = 0,
                       progress: bool = True, exclude=(), journal: str = ""):
    """Run the selection for every slot of ``engine``; returns ({slot: name}, {slot: results}, rejected).
    Does not apply the choices. Raises ValueError when the forced tactic is unusable or fails verification,
    RuntimeError when no candidate of a slot passes (a broken build: never silently the wrong numbers).
    exclude / journal: candidates never offered, and the crash journal (runtime/tactic_isolation.py)."""
    extra = {"exclude": list(exclude), "journal": journal} if (exclude or journal) else {}
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
                                 cold_cache=defaults.TACTIC_COLD_CACHE, **extra)
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


def default_tactic_name(engine) -> str | None:
    """The CPU tactic that reproduces the fixed default blocking of ``engine``'s ISA (None: not in the table)."""
    from ..native_core import load_native

    return next((t["name"] for t in load_native().cpu_linear_tactics()
                 if t["default"] and t["isa"] == engine.isa and not t["test_only"]), None)


def _set_bucket(engine, bucket: int, kinds, choices: dict | None, default: str | None) -> None:
    """Bucket ``bucket``'s layer kinds to ``choices`` (None: the default blocking)."""
    for k in kinds:
        set_slot(engine, bucket, k, None if choices is None else choices[slot_name(bucket, k)], default)


def sample_timer(run_once, min_sample_s: float, warm_calls: int = 0, max_inner: int = 200):
    """A timer for :func:`pass_ab`, device-agnostic: ``run_once()`` runs one whole pass to completion (CUDA:
    synchronised). Each call returns seconds per pass over a sample of enough passes to last >= min_sample_s
    (sized on the first call), after ``warm_calls`` untimed passes (CUDA: the bucket's graph is captured again
    after every tactic switch, and that must not be timed)."""
    inner = [0]

    def timer(_variant: str) -> float:
        for _ in range(warm_calls):
            run_once()
        if inner[0] == 0:
            t0 = time.perf_counter()
            run_once()
            one = max(time.perf_counter() - t0, 1e-9)
            inner[0] = max(1, min(max_inner, int(np.ceil(min_sample_s / one))))
        t0 = time.perf_counter()
        for _ in range(inner[0]):
            run_once()
        return (time.perf_counter() - t0) / inner[0]

    return timer


def _pass_timer(engine, rows: int, min_sample_s: float):
    """The real CPU timer for :func:`confirm_by_pass`: passes of ``rows`` standardised random vectors (the
    engine's time does not depend on the values)."""
    z = np.random.default_rng(0).standard_normal((rows, engine.in_dim)).astype(np.float32)
    return sample_timer(lambda: engine.score(z), min_sample_s)


def pass_ab(run, variants=("selected", "default"), rounds: int = 4) -> dict:
    """Whole-pass A/B of two variants, device-agnostic: ``run(variant)`` sets the engine to that variant, runs
    and returns seconds per pass. One warm-up each (it also sizes the samples), then ``rounds`` rounds in ABBA
    order so that a slow drift of the machine falls on both alike. Returns {variant: [seconds, ...]}."""
    a, b = variants
    run(a), run(b)
    samples = {a: [], b: []}
    for r in range(rounds):
        for v in ((a, b) if r % 2 == 0 else (b, a)):
            samples[v].append(run(v))
    return samples


def confirm_by_pass(engine, choices: dict, *, margin: float | None = None, rounds: int | None = None,
                    min_sample_s: float | None = None, pass_timer=None) -> tuple[dict, dict]:
    """Confirm per-layer choices on whole passes, bucket by bucket; returns (final choices, pass checks).

    For every bucket where ``choices`` differ from the default blocking in some layer kind, whole passes at the
    bucket's upper-bound rows run with the bucket's choices ("selected") and with the default blocking
    ("default"): one warm-up each, then ``rounds`` rounds in ABBA order (drift cancels); the choices stay when
    the median selected pass is faster than the median default pass by more than ``margin`` (relative), else
    the bucket's slots become the default blocking. Leaves the engine set to the returned choices.
    ``pass_timer(bucket, rows)`` (tests) returns a function variant -> seconds per pass; the default is a real
    timer on this engine (:func:`_pass_timer`). Pass checks: {"b<bucket>": {rows, selected_s, default_s (medians),
    samples, speedup (default / selected), kept}}."""
    margin = defaults.TACTIC_PASS_MARGIN if margin is None else margin
    rounds = defaults.TACTIC_PASS_ROUNDS if rounds is None else rounds
    min_sample_s = defaults.TACTIC_PASS_MIN_SAMPLE_S if min_sample_s is None else min_sample_s
    if rounds < 1 or margin < 0:
        raise ValueError(f"rounds >= 1 and margin >= 0 required, got {rounds}, {margin}")
    default = default_tactic_name(engine)
    final, checks = dict(choices), {}
    buckets: dict[int, list[int]] = {}
    for b, k, _ in _slots(engine):
        buckets.setdefault(b, []).append(k)
    for b, kinds in buckets.items():
        if default is None or all(choices[slot_name(b, k)] == default for k in kinds):
            continue  # nothing to confirm: already the default blocking
        rows = int(engine.tactic_problem(b, kinds[0])["rows"])
        timer = pass_timer(b, rows) if pass_timer is not None else _pass_timer(engine, rows, min_sample_s)

        def run(variant):
            _set_bucket(engine, b, kinds, choices if variant == "selected" else None, default)
            return timer(variant)

        samples = pass_ab(run, ("selected", "default"), rounds)
        med = {v: float(np.median(x)) for v, x in samples.items()}
        kept = med["selected"] < med["default"] * (1.0 - margin)
        checks[f"b{b}"] = {"rows": rows, "selected_s": med["selected"], "default_s": med["default"],
                           "speedup": med["default"] / med["selected"] if med["selected"] > 0 else None,
                           "samples": samples, "kept": bool(kept)}
        if kept:
            _set_bucket(engine, b, kinds, choices, default)
        else:
            _set_bucket(engine, b, kinds, None, default)
            for k in kinds:
                final[slot_name(b, k)] = default
            log.info("tactics of bucket %d reverted to the default blocking: the whole pass was %.3fx of it "
                     "(needs > %.0f%% faster)", b, med["default"] / med["selected"], 100 * margin)
    return final, checks


def set_slot(engine, bucket: int, kind: int, name: str | None, default: str | None = None) -> None:
    """Set one slot; the default blocking's tactic name sets None (the engine's own fixed path: literally the
    engine before tactics, not the same blocking through the tactic table). ``default``: that name, if known."""
    if name is not None and name == (default if default is not None else default_tactic_name(engine)):
        name = None
    engine.set_tactic(bucket, kind, name)


def apply_choices(engine, choices: dict) -> None:
    """Set every slot's tactic (ValueError from the engine when a name is not acceptable for it)."""
    default = default_tactic_name(engine)
    for b, k, _ in _slots(engine):
        set_slot(engine, b, k, choices[slot_name(b, k)], default)


def configure_cpu_engine(engine, engine_path=None, *, mode: str | None = None, progress: bool = True,
                         cache: bool = True, pass_timer=None) -> TacticReport:
    """Give a native CPU engine its tactics: forced ($LFDN_EDGE_TACTIC), off, from the cache beside
    ``engine_path``, or selected now (per layer, then confirmed on whole passes: :func:`confirm_by_pass`; and
    cached). Returns what happened. ``pass_timer``: see :func:`confirm_by_pass` (tests)."""
    t0 = time.perf_counter()
    m = tactics_mode(mode)
    forced_list = forced_tactics("cpu")
    forced = forced_list[0] if forced_list else ""
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
        choices, results, checks, rejected, source = dict(memo[0]), memo[1], memo[2], [], "memo"
    else:
        choices, results, rejected = select_cpu_tactics(engine, progress=progress)
        choices, checks = confirm_by_pass(engine, choices, pass_timer=pass_timer)
        source = "selected"
        _MEMO[memo_key] = (dict(choices), results, checks)
    apply_choices(engine, choices)
    if path is not None:
        try:
            store_cache(path, fp, slots, choices, results, checks)
        except OSError as exc:  # a read-only folder: the choice still applies to this load
            log.warning("tactic cache %s not written: %s", path, exc)
    return TacticReport(source, choices, results, rejected, str(path) if path else None,
                        time.perf_counter() - t0, fp, checks)

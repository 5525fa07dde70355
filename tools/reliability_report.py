#!/usr/bin/env python3
"""Reliability harness and report: soak, concurrency, fuzzing (engine files, checkpoints, inputs, native
bindings), crash safety (kill -9 of train / build) and integrity cost. Used by tests/test_reliability_*.py
(fast sizes) and run directly for the figures of docs/RELIABILITY.md (long sizes):

    python tools/reliability_report.py                     # fast sizes (as CI), prints the figures
    python tools/reliability_report.py --long              # 10,000 soak calls, 1,000 mutations, 20 kill trials
    python tools/reliability_report.py --long --json benchmarks/results/reliability-DATE.json
    python tools/reliability_report.py --only soak,fuzz    # some parts only

Fuzzing never loads a mutated file in this process: a worker subprocess (``_worker``) imports lfdn-edge once,
caps its address space (RLIMIT_AS), reads one case per line on stdin and answers one JSON line per case. A
worker that dies is counted as a crash of the case it was on and restarted; one that does not answer within
the per-case timeout is counted as a hang, killed and restarted.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import gc
import json
import os
import platform
import random
import select
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
STAGE_DIMS = (16, 24, 40, 112, 320)
DIM = sum(STAGE_DIMS)
CASE_TIMEOUT_S = 30.0
PROTO_MARK = "@@lfdn-fuzz@@ "
WORKER_HEADROOM = 2 << 30  # RLIMIT_AS = the worker's address space after its imports + 2 GiB

FAST = {"soak_calls": 500, "mutations": 150, "crash_trials": 3, "input_rounds": 1, "binding_cases": 150}
LONG = {"soak_calls": 10_000, "mutations": 1000, "crash_trials": 20, "input_rounds": 3, "binding_cases": 1000}
SOAK_BATCHES = (1, 8, 32, 64, 100)  # cycled; 100 > the fixture engines' max batch 64: split into 64 + 36
RSS_BOUND_MIB = 8.0  # resident memory after warm-up may grow at most this much over a soak run


# ================================================================================================ fixtures
def standardised(n: int, seed: int) -> np.ndarray:
    """Random vectors standardised per stage, like real z0 (the bench's generator, at this harness's layout)."""
    from lfdn_edge.benchmark import standardised_inputs

    return standardised_inputs(n, STAGE_DIMS, seed)


def make_checkpoint(path, width: int = 32, depth: int = 1, emb_dim: int = 32, seed: int = 0):
    """A small trained, calibrated checkpoint (2 epochs on standardised random vectors; a few seconds)."""
    import warnings

    from lfdn_edge.features import FeatureConfig, FeatureLayout
    from lfdn_edge.model import LFDNConfig
    from lfdn_edge.train import TrainConfig, train_lfdn

    z = standardised(320, seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return train_lfdn(z[:256], FeatureLayout(STAGE_DIMS), FeatureConfig(backbone="efficientnet-lite0", input_size=64),
                          path,
                          LFDNConfig(in_dim=DIM, width=width, depth=depth, emb_dim=emb_dim),
                          TrainConfig(epochs=2, batch_size=64, early_epoch=1, seed=seed), cal_features=z[256:],
                          progress=False)


def make_engines(ckpt_path, out_dir, backends=("onnx", "native", "torch"), batch=(1, 16, 64)) -> dict:
    """{runtime backend name: engine path} for the backends that can build here."""
    from lfdn_edge.builder.dispatch import build_engine
    from lfdn_edge.probes import native_usable

    out = {}
    for b in backends:
        if b == "native" and not native_usable()[0]:
            continue
        p = Path(out_dir) / f"{Path(ckpt_path).stem}.{b}.engine"
        with contextlib.redirect_stdout(open(os.devnull, "w")), contextlib.redirect_stderr(open(os.devnull, "w")):
            build_engine(ckpt_path, backend=b, batch=batch, out=p)
        out[{"onnx": "onnxruntime"}.get(b, b)] = p
    return out


def rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def percentiles_ms(xs) -> dict:
    a = np.asarray(xs) * 1e3
    return {"p50_ms": round(float(np.percentile(a, 50)), 4), "p99_ms": round(float(np.percentile(a, 99)), 4)}


# ================================================================================================ soak
def soak(scorer, calls: int, seed: int = 0, sample_every: int = 50) -> dict:
    """``calls`` score calls with batch sizes cycling through SOAK_BATCHES. Resident memory is sampled every
    ``sample_every`` calls; warm-up = the first tenth of the calls (at least 50). Latency windows: the first
    and the last 1000 calls (a tenth of the run when shorter), with the same batch mix in both."""
    xs = {b: standardised(b, seed + b) for b in SOAK_BATCHES}
    expect = {b: scorer.score(xs[b]) for b in SOAK_BATCHES}
    warm = max(50, calls // 10)
    times, samples, mismatches = [], [], 0
    gc.collect()
    for i in range(calls):
        b = SOAK_BATCHES[i % len(SOAK_BATCHES)]
        t0 = time.perf_counter()
        s = scorer.score(xs[b])
        times.append(time.perf_counter() - t0)
        if not np.array_equal(s, expect[b]):
            mismatches += 1
        if i + 1 >= warm and (i + 1 - warm) % sample_every == 0:
            samples.append(rss_bytes())
    samples.append(rss_bytes())
    win = min(1000, max(len(SOAK_BATCHES), calls // 10))
    win -= win % len(SOAK_BATCHES)
    growth = (samples[-1] - samples[0]) / 2 ** 20
    slope = float(np.polyfit(np.arange(len(samples)) * sample_every, samples, 1)[0]) if len(samples) > 2 else 0.0
    return {"backend": scorer.backend_name, "calls": calls, "batch_cycle": list(SOAK_BATCHES), "warmup_calls": warm,
            "rss_after_warmup_mib": round(samples[0] / 2 ** 20, 2), "rss_end_mib": round(samples[-1] / 2 ** 20, 2),
            "rss_growth_mib": round(growth, 3), "rss_max_minus_min_mib": round((max(samples) - min(samples)) / 2 ** 20, 3),
            "rss_slope_bytes_per_call": round(slope, 2), "rss_bound_mib": RSS_BOUND_MIB,
            "window_calls": win, "first": percentiles_ms(times[:win]), "last": percentiles_ms(times[-win:]),
            "score_mismatches": mismatches}


# ================================================================================================ concurrency
def concurrency(scorer, threads: int = 8, batches_per_thread: int = 12, seed: int = 0) -> dict:
    """Every thread scores its own batches (sizes 1..64, some above max); compared exactly with the scores
    of the same batches scored one at a time on one thread."""
    rng = np.random.default_rng(seed)
    work = [[standardised(int(rng.integers(1, 80)), seed * 1000 + t * 100 + j) for j in range(batches_per_thread)]
            for t in range(threads)]
    single = [[scorer.score(x) for x in ws] for ws in work]
    results = [[None] * batches_per_thread for _ in range(threads)]
    errors = []
    barrier = threading.Barrier(threads)

    def body(t):
        try:
            barrier.wait()
            for j, x in enumerate(work[t]):
                results[t][j] = scorer.score(x)
        except Exception as exc:  # noqa: BLE001 - reported
            errors.append(f"{type(exc).__name__}: {exc}")

    ths = [threading.Thread(target=body, args=(t,)) for t in range(threads)]
    for th in ths:
        th.start()
    for th in ths:
        th.join()
    exact = sum(1 for t in range(threads) for j in range(batches_per_thread)
                if results[t][j] is not None and np.array_equal(results[t][j], single[t][j]))
    maxdiff = max((float(np.max(np.abs(results[t][j] - single[t][j]))) for t in range(threads)
                   for j in range(batches_per_thread) if results[t][j] is not None), default=float("nan"))
    return {"backend": scorer.backend_name, "threads": threads, "batches": threads * batches_per_thread,
            "exact": exact, "max_abs_diff": maxdiff, "errors": errors}


def two_scorers(a, b, threads: int = 4, rounds: int = 10, seed: int = 1) -> dict:
    """Two Scorers (different checkpoints/backends) used at the same time from interleaved threads."""
    x = standardised(24, seed)
    ref = {id(a): a.score(x), id(b): b.score(x)}
    bad, errors = [0], []

    def body(s):
        try:
            for _ in range(rounds):
                if not np.array_equal(s.score(x), ref[id(s)]):
                    bad[0] += 1
        except Exception as exc:  # noqa: BLE001
            errors.append(repr(exc))

    ths = [threading.Thread(target=body, args=((a, b)[t % 2],)) for t in range(threads)]
    for th in ths:
        th.start()
    for th in ths:
        th.join()
    return {"scorers": [a.backend_name, b.backend_name], "threads": threads, "calls": threads * rounds,
            "mismatches": bad[0], "errors": errors, "differ_from_each_other": not np.allclose(ref[id(a)], ref[id(b)])}


def throughput(scorer, callers: int, seconds: float = 2.0, batch: int = 64) -> float:
    """Items per second with ``callers`` threads calling score(batch) in a loop for ``seconds``."""
    x = standardised(batch, 7)
    scorer.score(x)
    stop = time.perf_counter() + seconds
    counts = [0] * callers

    def body(t):
        while time.perf_counter() < stop:
            scorer.score(x)
            counts[t] += batch

    t0 = time.perf_counter()
    ths = [threading.Thread(target=body, args=(t,)) for t in range(callers)]
    for th in ths:
        th.start()
    for th in ths:
        th.join()
    return sum(counts) / (time.perf_counter() - t0)


# ================================================================================================ fuzzing
# ---- engine file mutations (layout in lfdn_edge/artifact/file.py)
def engine_sections(data: bytes) -> dict:
    hlen = struct.unpack_from("<Q", data, 12)[0]
    plen_off = 20 + hlen
    plen = struct.unpack_from("<Q", data, plen_off)[0]
    return {"magic": 0, "version": 8, "hlen": 12, "header": 20, "plen": plen_off, "payload": plen_off + 8,
            "checksum": plen_off + 8 + plen, "end": len(data), "hlen_value": hlen, "plen_value": plen}


def _flip(data: bytearray, lo: int, hi: int, rng: random.Random, bits: int = 1) -> str:
    where = []
    for _ in range(bits):
        i = rng.randrange(lo, hi)
        bit = rng.randrange(8)
        data[i] ^= 1 << bit
        where.append(f"{i}.{bit}")
    return ",".join(where)


def _reseal(data: bytearray) -> bytearray:
    import hashlib

    s = engine_sections(bytes(data))
    version = struct.unpack_from("<I", data, 8)[0]
    covered = data[:s["checksum"]] if version >= 2 else data[s["payload"]:s["checksum"]]
    data[s["checksum"]:] = hashlib.sha256(bytes(covered)).digest()
    return data


FOREIGN_ENGINE_CLASS = "foreign_same_suffix"


def foreign_files(rng: random.Random, suffix: str) -> list[tuple[str, bytes]]:
    """Files of other projects (or none) that carry the same suffix."""
    import io

    out = [("empty", b""), ("text", b"this is not an engine\n"), ("random-4k", rng.randbytes(4096)),
           ("tensorrt-plan-like", b"ftrt" + rng.randbytes(2000)), ("gzip", b"\x1f\x8b\x08\x00" + rng.randbytes(500)),
           ("elf", b"\x7fELF\x02\x01\x01" + rng.randbytes(1000)), ("npy", b"\x93NUMPY\x01\x00v\x00" + b" " * 118),
           ("json", json.dumps({"backend": "onnx", "precision": "fp32"}).encode()),
           ("onnx-protobuf-like", b"\x08\x07\x12\x07pytorch" + rng.randbytes(300)),
           ("lfdn-magic-only", b"LFDNENG\0"), ("lfdn-magic-version-2", b"LFDNENG\0\x02\x00\x00\x00" + b"\0" * 30)]
    zbuf = io.BytesIO()
    with zipfile.ZipFile(zbuf, "w") as z:
        z.writestr("model/weights.bin", rng.randbytes(200))
    out.append(("zip-archive", zbuf.getvalue()))
    try:
        import torch

        tbuf = io.BytesIO()
        torch.save({"state_dict": {"w": torch.zeros(3)}, "epoch": 3}, tbuf)
        out.append(("torch-save-other-project", tbuf.getvalue()))
        tbuf = io.BytesIO()
        torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), tbuf)
        out.append(("torchscript", tbuf.getvalue()))
    except Exception:  # noqa: BLE001 - torch is optional for this list
        pass
    return out


def engine_mutations(data: bytes, n: int, seed: int) -> list[tuple[str, str, bytes]]:
    """(class, description, bytes): truncation at every section boundary (and +-1) then at random points,
    bit flips in the fixed header / JSON / payload / checksum, payload flips with the checksum recomputed,
    wrong and huge length fields, JSON values changed (still valid JSON), and foreign files."""
    rng = random.Random(seed)
    s = engine_sections(data)
    cases: list[tuple[str, str, bytes]] = []
    for name in ("version", "hlen", "header", "plen", "payload", "checksum"):
        for d in (-1, 0, 1):
            cut = s[name] + d
            if 0 <= cut < len(data):
                cases.append(("truncate_boundary", f"{name}{d:+d} -> {cut} bytes", data[:cut]))
    cases.append(("truncate_boundary", "end-1", data[:-1]))
    for fname, fb in foreign_files(rng, ".engine"):
        cases.append((FOREIGN_ENGINE_CLASS, fname, fb))
    fixed = len(cases)
    hlen, plen = s["hlen_value"], s["plen_value"]
    header_json = json.loads(data[20:20 + hlen])

    def json_variant() -> tuple[str, bytes]:
        h = json.loads(json.dumps(header_json))
        paths = []

        def walk(o, p):
            if isinstance(o, dict):
                for k, v in o.items():
                    paths.append(p + [k])
                    walk(v, p + [k])
            elif isinstance(o, list):
                for i, v in enumerate(o):
                    paths.append(p + [i])
                    walk(v, p + [i])

        walk(h, [])
        path = rng.choice(paths)
        parent = h
        for k in path[:-1]:
            parent = parent[k]
        old = parent[path[-1]]
        new = rng.choice([None, -1, 0, 1, 2 ** 31, 2 ** 63, 10 ** 30, 1e308, -0.5, "x", [], {}, True,
                          (old * 2 if isinstance(old, (int, float)) and not isinstance(old, bool) else "bogus"),
                          (old + 1 if isinstance(old, int) and not isinstance(old, bool) else None)])
        if rng.random() < 0.15 and isinstance(parent, dict):
            del parent[path[-1]]
            desc = f"del {path}"
        else:
            parent[path[-1]] = new
            desc = f"{path} = {new!r}"[:160]
        head = json.dumps(h, sort_keys=True).encode()
        body = data[:12] + struct.pack("<Q", len(head)) + head + data[20 + hlen:]
        return desc, body

    classes = ["truncate_random", "bitflip_fixed_header", "bitflip_json", "bitflip_payload", "bitflip_checksum",
               "payload_resealed", "wrong_length", "huge_length", "json_values", "json_values_resealed"]
    i = 0
    while len(cases) < max(n, fixed + len(classes)):
        cls = classes[i % len(classes)]
        i += 1
        b = bytearray(data)
        if cls == "truncate_random":
            cut = rng.randrange(0, len(data))
            cases.append((cls, f"{cut} bytes", data[:cut]))
            continue
        if cls == "bitflip_fixed_header":
            desc = _flip(b, 0, 20, rng)
        elif cls == "bitflip_json":
            desc = _flip(b, 20, 20 + hlen, rng, bits=rng.choice((1, 1, 2)))
        elif cls == "bitflip_payload":
            desc = _flip(b, s["payload"], s["checksum"], rng, bits=rng.choice((1, 4)))
        elif cls == "bitflip_checksum":
            desc = _flip(b, s["checksum"], len(b), rng)
        elif cls == "payload_resealed":
            desc = _flip(b, s["payload"], s["checksum"], rng, bits=rng.choice((1, 8, 64))) + " (checksum recomputed)"
            _reseal(b)
        elif cls == "wrong_length":
            field = rng.choice(("hlen", "plen"))
            val = (hlen if field == "hlen" else plen) + rng.choice((-1, 1, -8, 8, -rng.randrange(1, 1000),
                                                                     rng.randrange(1, 1000)))
            struct.pack_into("<Q", b, s[field], max(val, 0))
            desc = f"{field} = {val}"
        elif cls == "huge_length":
            field = rng.choice(("hlen", "plen"))
            val = rng.choice((2 ** 63, 2 ** 64 - 1, 2 ** 40, 2 ** 32 + (hlen if field == "hlen" else plen),
                              len(data) * 1000))
            struct.pack_into("<Q", b, s[field], val)
            desc = f"{field} = {val}"
        else:  # json_values[_resealed]: valid JSON with a value changed (a forged checksum in the second)
            desc, body = json_variant()
            if cls == "json_values_resealed":
                body = bytes(_reseal(bytearray(body)))
                desc += " (checksum recomputed)"
            cases.append((cls, desc, body))
            continue
        cases.append((cls, desc, bytes(b)))
    return cases[:max(n, fixed)]


# ---- checkpoint mutations (a torch.save zip archive)
def zip_entries(data: bytes) -> list[dict]:
    import io

    z = zipfile.ZipFile(io.BytesIO(data))
    out = []
    for info in z.infolist():
        off = info.header_offset
        name_len, extra_len = struct.unpack_from("<HH", data, off + 26)
        start = off + 30 + name_len + extra_len
        out.append({"name": info.filename, "header": off, "data": start, "end": start + info.compress_size})
    eocd = data.rfind(b"PK\x05\x06")
    cd_off = struct.unpack_from("<I", data, eocd + 16)[0] if eocd >= 0 else None
    if cd_off == 0xFFFFFFFF:  # zip64
        cd_off = None
    return out, cd_off, eocd


def checkpoint_mutations(data: bytes, n: int, seed: int) -> list[tuple[str, str, bytes]]:
    """Truncation at every zip entry boundary and at random points, bit flips in data.pkl (the pickled
    dict), in tensor storages, in zip headers, wrong / huge zip size fields, foreign .pt files."""
    rng = random.Random(seed)
    entries, cd_off, eocd = zip_entries(data)
    cases: list[tuple[str, str, bytes]] = []
    cuts = sorted({e["header"] for e in entries} | {e["data"] for e in entries} | {e["end"] for e in entries}
                  | ({cd_off} if cd_off else set()) | ({eocd} if eocd >= 0 else set()))
    cuts = [c for c in cuts if 0 < c < len(data)]
    if len(cuts) > n // 3:  # keep a third of the budget for them: evenly spaced, always the last ones
        keep = set(np.linspace(0, len(cuts) - 1, n // 3).round().astype(int).tolist()) | {len(cuts) - 1, len(cuts) - 2}
        cuts = [c for i, c in enumerate(cuts) if i in keep]
    for c in cuts:
        for d in ((-1, 0, 1) if rng.random() < 0.3 else (0,)):
            if 0 <= c + d < len(data):
                cases.append(("truncate_boundary", f"{c + d} bytes", data[:c + d]))
    for fname, fb in foreign_files(rng, ".pt"):
        cases.append((FOREIGN_ENGINE_CLASS, fname, fb))
    pkl = next(e for e in entries if e["name"].endswith("data.pkl"))
    storages = [e for e in entries if "/data/" in e["name"] and e["end"] > e["data"]]
    fixed = len(cases)
    classes = ["truncate_random", "bitflip_pickle", "bitflip_tensor", "bitflip_zip_headers", "wrong_length",
               "huge_length"]
    i = 0
    while len(cases) < max(n, fixed + len(classes)):
        cls = classes[i % len(classes)]
        i += 1
        b = bytearray(data)
        if cls == "truncate_random":
            cut = rng.randrange(0, len(data))
            cases.append((cls, f"{cut} bytes", data[:cut]))
            continue
        if cls == "bitflip_pickle":
            desc = _flip(b, pkl["data"], pkl["end"], rng, bits=rng.choice((1, 1, 2)))
        elif cls == "bitflip_tensor":
            e = rng.choice(storages)
            desc = e["name"] + " " + _flip(b, e["data"], e["end"], rng, bits=rng.choice((1, 4)))
        elif cls == "bitflip_zip_headers":
            e = rng.choice(entries)
            if rng.random() < 0.5 or cd_off is None:
                desc = "local header " + _flip(b, e["header"], e["data"], rng)
            else:
                desc = "central directory " + _flip(b, cd_off, len(b), rng)
        else:
            e = rng.choice(entries)
            field = rng.choice((18, 22))  # compressed / uncompressed size in the local header
            old = struct.unpack_from("<I", b, e["header"] + field)[0]
            if cls == "wrong_length":
                val = max(0, old + rng.choice((-1, 1, -64, 64, rng.randrange(1, 5000))))
            else:
                val = rng.choice((0xFFFFFFFE, 0x7FFFFFFF, 2 ** 31 + old, old * 1000 % 2 ** 32))
            struct.pack_into("<I", b, e["header"] + field, val)
            if cd_off is not None and rng.random() < 0.5:  # the central directory too, so readers trust it
                k = cd_off
                while k >= 0 and k < eocd:
                    nl, el, cl = struct.unpack_from("<HHH", b, k + 28)
                    if data[k + 46:k + 46 + nl].decode("utf-8", "replace") == e["name"]:
                        struct.pack_into("<I", b, k + (20 if field == 18 else 24), val)
                        break
                    k += 46 + nl + el + cl
            desc = f"{e['name']} {'csize' if field == 18 else 'usize'} = {val}"
        cases.append((cls, desc, bytes(b)))
    return cases[:max(n, fixed)]


# ---- the worker
class Worker:
    """A ``_worker`` subprocess: send(case) -> outcome dict; crashes and hangs become outcomes."""

    def __init__(self, timeout_s: float = CASE_TIMEOUT_S):
        self.timeout_s = timeout_s
        self.proc = None
        self.restarts = 0

    def start(self):
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "_worker"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True, bufsize=1)
        line = self._read(120.0)
        if line is None or json.loads(line).get("ready") is not True:
            raise RuntimeError(f"fuzz worker did not start: {line!r}")

    def _read(self, timeout):
        end = time.monotonic() + timeout
        while True:
            r, _, _ = select.select([self.proc.stdout], [], [], max(0.0, end - time.monotonic()))
            if not r:
                return None
            line = self.proc.stdout.readline()
            if not line:
                return ""
            if line.startswith(PROTO_MARK):  # anything else was printed by a library: skipped
                return line[len(PROTO_MARK):]

    def send(self, case: dict) -> dict:
        if self.proc is None or self.proc.poll() is not None:
            self.start()
        t0 = time.perf_counter()
        try:
            self.proc.stdin.write(json.dumps(case) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass
        line = self._read(self.timeout_s)
        dt = time.perf_counter() - t0
        if line is None:
            self.kill()
            return {"outcome": "hang", "seconds": round(dt, 2)}
        if line == "":
            rc = self.proc.wait()
            self.proc = None
            self.restarts += 1
            return {"outcome": "crash", "returncode": rc, "signal": signal.Signals(-rc).name if rc < 0 else None}
        out = json.loads(line)
        out["seconds"] = round(dt, 4)
        return out

    def kill(self):
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None
            self.restarts += 1

    def close(self):
        if self.proc is not None:
            self.proc.stdin.close()
            self.proc.wait(timeout=30)
            self.proc = None


GOOD = {"clear_error", "loads_same"}  # outcomes that satisfy the issue; anything else is a finding


def fuzz_files(kind: str, pristine: Path, cases, workdir: Path, worker: Worker, extra: dict | None = None) -> dict:
    """Run file mutation cases through the worker; {class: {outcome: count}} plus the findings."""
    per_class: dict = {}
    findings = []
    path = workdir / ("mutated" + pristine.suffix)
    for cls, desc, body in cases:
        path.write_bytes(body)
        out = worker.send({"op": kind, "path": str(path), "ref": str(pristine), **(extra or {})})
        oc = out["outcome"]
        if cls.endswith("_resealed") and oc in ("loads_different", "other_user_error"):
            oc += "_resealed"  # the checksum was forged: different numbers are what the file holds
        per_class.setdefault(cls, {}).setdefault(oc, 0)
        per_class[cls][oc] += 1
        if oc not in GOOD and not oc.endswith("_resealed"):
            findings.append({"class": cls, "case": desc, **out})
    return {"kind": kind, "cases": len(cases), "per_class": per_class, "findings": findings}


# ---- input fuzzing (run in the worker: a segfault in a backend must not kill the caller)
def input_cases(rounds: int, seed: int) -> list[dict]:
    """Feature and frame inputs: every case is (name, how to build the batch); the worker builds it."""
    names = ["float16", "float32", "float64", "int32", "int64", "uint8", "bool", "complex64", "object", "str",
             "fortran", "column_slice", "row_step2", "negative_stride_rows", "negative_stride_cols", "0d", "1d",
             "3d", "empty", "too_wide", "too_narrow", "list", "nested_list_ragged", "torch_f32",
             "torch_noncontig", "torch_f64", "torch_requires_grad", "torch_int", "huge_batch", "none", "scalar_float",
             "bytes", "readonly", "unaligned", "big_values", "large_values", "tiny_values", "float64_overflow"]
    cases = [{"input": n} for n in names]
    rng = random.Random(seed)
    for r in range(rounds):
        for bad in ("nan", "inf", "-inf"):
            for _ in range(4):
                cases.append({"input": "single_" + bad, "row": rng.randrange(0, 40), "col": rng.randrange(0, DIM)})
    return cases


FRAME_CASES = ["frames_uint8", "frames_float32", "frames_int64", "frames_wrong_size", "frames_noncontig",
               "frames_negative_stride", "frames_0d", "frames_empty", "frames_nchw", "frames_torch_uint8",
               "frames_bool"]


def build_input(name: str, case: dict):
    """The batch named by an input case (numpy unless the name says torch), and the features it should score
    like (None: it must be refused)."""
    import torch

    base = standardised(40, 11)
    d = {
        "float16": (base.astype(np.float16), base.astype(np.float16).astype(np.float32)),
        "float32": (base, base), "float64": (base.astype(np.float64), base),
        "int32": (base.astype(np.int32), None), "int64": (base.astype(np.int64), None),
        "uint8": (base.astype(np.uint8), None), "bool": (base > 0, None),
        "complex64": (base.astype(np.complex64), None), "object": (base.astype(object), None),
        "str": (base.astype(str), None), "fortran": (np.asfortranarray(base), base),
        "row_step2": (np.concatenate([base, base])[::2], np.concatenate([base, base])[::2].copy()),
        "negative_stride_rows": (base[::-1], base[::-1].copy()),
        "negative_stride_cols": (base[:, ::-1], base[:, ::-1].copy()),
        "0d": (np.float32(1.0) * np.ones(()), None), "1d": (base[0], None), "3d": (base[None], None),
        "empty": (base[:0], None), "too_wide": (np.pad(base, ((0, 0), (0, 1))), None),
        "too_narrow": (base[:, :-1], None), "list": (base.tolist(), base),
        "nested_list_ragged": ([[1.0, 2.0], [3.0]], None),
        "torch_f32": (torch.from_numpy(base.copy()), base),
        "torch_noncontig": (torch.from_numpy(np.ascontiguousarray(base.T)).t(), base),
        "torch_f64": (torch.from_numpy(base.astype(np.float64)), base),
        "torch_requires_grad": (torch.from_numpy(base.copy()).requires_grad_(True), base),
        "torch_int": (torch.from_numpy(base.astype(np.int64)), None),
        "none": (None, None), "scalar_float": (1.5, None), "bytes": (base.tobytes(), None),
        "big_values": (base * 1e30, None), "tiny_values": (base * 1e-30, base * 1e-30),
        "large_values": (base * 1e5, base * 1e5),
        "float64_overflow": (base.astype(np.float64) * 1e300, None),
    }
    if name == "column_slice":
        wide = np.concatenate([base, base], axis=1)
        return wide[:, 3:3 + DIM], wide[:, 3:3 + DIM].copy()
    if name == "readonly":
        a = base.copy()
        a.setflags(write=False)
        return a, base
    if name == "unaligned":
        raw = np.zeros(base.nbytes + 1, np.uint8)
        a = np.frombuffer(raw.data, dtype=np.float32, count=base.size, offset=1).reshape(base.shape)
        return a, a.copy()
    if name == "huge_batch":
        big = np.tile(base, (250, 1))  # 10,000 rows
        return big, big
    if name.startswith("single_"):
        a = base.copy()
        a[case["row"], case["col"]] = {"single_nan": np.nan, "single_inf": np.inf, "single_-inf": -np.inf}[name]
        return a, None
    return d[name]


def build_frames(name: str, size: int):
    import torch

    rng = np.random.default_rng(5)
    f = rng.integers(0, 256, (6, size, size, 3), dtype=np.uint8)
    return {
        "frames_uint8": (f, f), "frames_float32": (f.astype(np.float32), None), "frames_int64": (f.astype(np.int64), None),
        "frames_wrong_size": (f[:, :-1], None), "frames_noncontig": (np.concatenate([f, f], 2)[:, :, ::2],
                                                                     np.concatenate([f, f], 2)[:, :, ::2].copy()),
        "frames_negative_stride": (f[:, ::-1], f[:, ::-1].copy()), "frames_0d": (np.uint8(3) * np.ones((), np.uint8), None),
        "frames_empty": (f[:0], None), "frames_nchw": (np.ascontiguousarray(f.transpose(0, 3, 1, 2)), None),
        "frames_torch_uint8": (torch.from_numpy(f.copy()), f), "frames_bool": (f > 100, None),
    }[name]


def binding_cases(n: int, seed: int) -> list[dict]:
    """Native binding calls: each argument of each binding replaced by every value class (the others valid),
    then random combinations of value classes for all arguments."""
    sigs = BINDING_ARGS
    cases = []
    for fn, args in sigs.items():
        for a in args:
            for v in VALUE_POOL:
                cases.append({"fn": fn, "replace": {a: v}})
    rng = random.Random(seed)
    for _ in range(n):  # plus n random combinations
        fn = rng.choice(list(sigs))
        cases.append({"fn": fn, "replace": {a: rng.choice(VALUE_POOL) for a in sigs[fn] if rng.random() < 0.6}})
    return cases


VALUE_POOL = ["none", "true", "zero", "minus1", "int_huge", "int_2p31", "int_2p63", "float_nan", "float_inf", "float_half",
              "str", "bytes", "list", "dict", "arr_empty", "arr_0d", "arr_1d", "arr_3d", "arr_f64", "arr_i32",
              "arr_f16", "arr_noncontig", "arr_negstride", "arr_wrong_cols", "arr_huge_rows_view", "arr_nan"]
BINDING_ARGS = {
    "noise_inject": ["z0", "seed", "stream", "a", "b", "dim", "image_keys"],
    "fused_linear": ["x", "weight", "bias", "prologue", "gamma", "beta", "residual", "gn_eps", "threads"],
    "ddim_score": ["x0_hat", "x", "coef", "noise", "z0", "stage_offsets", "cos_eps"],
    "fp16_row_scale": ["max_abs"],
    "CpuEngine": ["spec", "max_batch", "threads"],
    "CpuEngine.score": ["z0", "return_recon"],
    "spec": ["in_dim", "width", "depth", "steps", "precision", "seed", "q_a", "q_b", "gn_eps", "cos_eps",
             "stage_offsets", "inp_w", "fc1_w", "fc2_w", "fc1_b", "gn1_g", "out_w", "coef"],
}


def pool_value(name: str, like=None):
    if name == "none":
        return None
    scalars = {"true": True, "zero": 0, "minus1": -1, "int_huge": 10 ** 30, "int_2p31": 2 ** 31, "int_2p63": 2 ** 63,
               "float_nan": float("nan"), "float_inf": float("inf"), "float_half": 0.5, "str": "x", "bytes": b"\0" * 8,
               "list": [1, 2, 3], "dict": {"a": 1}}
    if name in scalars:
        return scalars[name]
    shape = like.shape if isinstance(like, np.ndarray) and like.ndim >= 1 else (4, 8)
    a = np.ones(shape, np.float32)
    return {"arr_empty": np.zeros((0,) + tuple(shape[1:]), np.float32), "arr_0d": np.float32(1) * np.ones((), np.float32),
            "arr_1d": a.reshape(-1), "arr_3d": a[None], "arr_f64": a.astype(np.float64), "arr_i32": a.astype(np.int32),
            "arr_f16": a.astype(np.float16), "arr_noncontig": np.repeat(a, 2, axis=-1)[..., ::2],
            "arr_negstride": a[::-1], "arr_wrong_cols": np.ones(tuple(shape[:-1]) + (shape[-1] + 3,), np.float32),
            "arr_huge_rows_view": np.broadcast_to(a.reshape(-1)[:1], (2 ** 28, 1)),
            "arr_nan": np.full(shape, np.nan, np.float32)}[name]


# ---- the worker's side
def _worker_main() -> int:
    import resource
    import warnings

    warnings.simplefilter("ignore")
    import torch  # noqa: F401 - imported before the address space is capped

    import lfdn_edge
    from lfdn_edge.artifact.file import EngineError
    from lfdn_edge.checkpoint import Checkpoint, CheckpointError
    from lfdn_edge.errors import USER_ERRORS

    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        pass
    with open("/proc/self/status") as fh:
        vm = next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmSize:"))
    limit = vm + WORKER_HEADROOM
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    refs: dict = {}
    probe = standardised(24, 3)

    def result(scorer):
        e = scorer.explain(probe)
        return {"mse": np.asarray(e["mse"]), "mfsim": np.asarray(e["mfsim"]), "threshold": scorer.threshold,
                "score_type": scorer.score_type}

    def same(a, b):
        return (a["score_type"] == b["score_type"] and a["threshold"] == b["threshold"]
                and np.allclose(a["mse"], b["mse"], rtol=1e-5, atol=1e-7)
                and np.allclose(a["mfsim"], b["mfsim"], rtol=1e-5, atol=1e-7))

    def load(op, path):
        if op == "checkpoint":
            return lfdn_edge.Scorer(Checkpoint.load(path))
        return lfdn_edge.Scorer(path)

    def classify(exc) -> dict:
        chain, e = [], exc
        while e is not None:
            chain.append(e)
            e = e.__cause__ or e.__context__
        msg = (str(exc).splitlines() or [""])[0][:300]
        if any(isinstance(e, MemoryError) or "bad_alloc" in str(e) or "out of memory" in str(e).lower()
               or "Cannot allocate" in str(e) for e in chain):
            oc = "huge_allocation"
        elif isinstance(exc, (EngineError, CheckpointError)):
            oc = "clear_error"
        elif isinstance(exc, USER_ERRORS):
            oc = "other_user_error"
        else:
            oc = "unexpected_exception"
        return {"outcome": oc, "type": type(exc).__name__, "message": msg}

    # the protocol gets its own descriptor: native libraries (onnxruntime) print to fd 1 themselves
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    print(PROTO_MARK + json.dumps({"ready": True, "rlimit_as": limit}), file=proto, flush=True)
    for line in sys.stdin:
        case = json.loads(line)
        try:
            out = _worker_case(case, refs, load, result, same)
        except BaseException as exc:  # noqa: BLE001 - classified
            out = classify(exc)
            if out["outcome"] == "unexpected_exception":
                out["traceback"] = traceback.format_exc()[-1500:]
        print(PROTO_MARK + json.dumps(out, default=str), file=proto, flush=True)
    return 0


def _worker_case(case, refs, load, result, same) -> dict:
    op = case["op"]
    if op in ("engine", "checkpoint"):
        if case["ref"] not in refs:
            refs[case["ref"]] = result(load(op, case["ref"]))
        got = result(load(op, case["path"]))
        return {"outcome": "loads_same" if same(got, refs[case["ref"]]) else "loads_different"}
    if op == "input":
        return _input_case(case, refs)
    if op == "binding":
        return _binding_case(case)
    if op == "_selftest":
        raise ValueError("self test: a clear error")
    raise ValueError(f"unknown op {op}")


def _input_case(case, refs) -> dict:
    import lfdn_edge

    key = ("scorer", case["engine"], bool(case.get("frames")))
    if key not in refs:
        if case.get("frames"):
            refs[key] = lfdn_edge.Scorer.from_checkpoint(case["engine"], include_backbone=True)
        else:
            refs[key] = lfdn_edge.Scorer(case["engine"])
    scorer = refs[key]
    if case.get("frames"):
        x, like = build_frames(case["input"], scorer.input_shape[1])
    else:
        x, like = build_input(case["input"], case)
    try:
        s = scorer.score(x)
    except (TypeError, ValueError) as exc:
        if like is None:
            return {"outcome": "clear_error", "type": type(exc).__name__, "message": str(exc)[:200]}
        return {"outcome": "refused_valid_input", "type": type(exc).__name__, "message": str(exc)[:200]}
    if like is None:
        return {"outcome": "accepted_invalid_input"}
    import torch

    s = s.detach().numpy() if isinstance(s, torch.Tensor) else np.asarray(s)
    ref = scorer.score(np.ascontiguousarray(like))
    ref = ref.detach().numpy() if isinstance(ref, torch.Tensor) else ref
    if s.shape != ref.shape or not np.allclose(s, ref, rtol=1e-5, atol=1e-6, equal_nan=False):
        return {"outcome": "wrong_scores", "max_abs_diff": float(np.nanmax(np.abs(s - ref))) if s.shape == ref.shape else None}
    return {"outcome": "scores_correctly"}


_SPEC_CACHE: dict = {}


def _native_spec():
    """A fresh copy (lists copied, arrays shared read-only) of the fixture native engine's spec."""
    from lfdn_edge.artifact.file import read_engine
    from lfdn_edge.artifact.native_layout import unpack_spec

    path = os.environ["LFDN_FUZZ_NATIVE_ENGINE"]
    if path not in _SPEC_CACHE:
        a = read_engine(path)
        _SPEC_CACHE[path] = unpack_spec(a.header["native"], a.payload)
    return {k: list(v) if isinstance(v, list) else v for k, v in _SPEC_CACHE[path].items()}


def _binding_case(case) -> dict:
    from lfdn_edge.native_core import load_native

    _C = load_native()
    fn, rep = case["fn"], case["replace"]
    x = standardised(4, 1)[:, :16].copy()
    if fn == "noise_inject":
        args = {"z0": x, "seed": 1, "stream": 0, "a": 0.5, "b": 0.5, "dim": -1, "image_keys": None}
        call = lambda a: _C.noise_inject(a["z0"], a["seed"], a["stream"], a["a"], a["b"], a["dim"], a["image_keys"])  # noqa: E731
    elif fn == "fused_linear":
        args = {"x": x, "weight": np.ones((8, 16), np.float32), "bias": np.zeros(8, np.float32), "prologue": "none",
                "gamma": np.ones(16, np.float32), "beta": np.zeros(16, np.float32), "residual": np.zeros((4, 8), np.float32),
                "gn_eps": 1e-5, "threads": 1}
        call = lambda a: _C.fused_linear(a["x"], a["weight"], a["bias"], prologue=a["prologue"], gamma=a["gamma"],  # noqa: E731
                                         beta=a["beta"], residual=a["residual"], gn_eps=a["gn_eps"], threads=a["threads"])
    elif fn == "ddim_score":
        args = {"x0_hat": x, "x": x.copy(), "coef": np.ones(5, np.float32), "noise": np.zeros(16, np.float32),
                "z0": x.copy(), "stage_offsets": [0, 8, 16], "cos_eps": 1e-8}
        call = lambda a: _C.ddim_score(a["x0_hat"], x=a["x"], coef=a["coef"], noise=a["noise"], z0=a["z0"],  # noqa: E731
                                       stage_offsets=a["stage_offsets"], cos_eps=a["cos_eps"])
    elif fn == "fp16_row_scale":
        args = {"max_abs": 3.0}
        call = lambda a: _C.fp16_row_scale(a["max_abs"])  # noqa: E731
    elif fn in ("CpuEngine", "spec"):
        spec = _native_spec()
        args = {"spec": spec, "max_batch": 8, "threads": 1}
        if fn == "spec":
            for k, v in rep.items():
                like = spec.get(k)
                like = like[0] if isinstance(like, list) and like else like
                spec[k] = [pool_value(v, like)] * spec["depth"] if isinstance(spec.get(k), list) and k != "stage_offsets" \
                    else pool_value(v, like)
            rep = {}
        call = lambda a: _C.CpuEngine(a["spec"], a["max_batch"], a["threads"])  # noqa: E731
    elif fn == "CpuEngine.score":
        eng = _C.CpuEngine(_native_spec(), 8, 1)
        args = {"z0": standardised(4, 2), "return_recon": False}
        call = lambda a: eng.score(a["z0"], a["return_recon"])  # noqa: E731
    else:
        raise ValueError(fn)
    for k, v in rep.items():
        args[k] = pool_value(v, args.get(k))
    try:
        call(args)
    except (TypeError, ValueError, OverflowError, IndexError) as exc:
        return {"outcome": "clear_error", "type": type(exc).__name__, "message": str(exc)[:200]}
    except (MemoryError, RuntimeError) as exc:
        bad = isinstance(exc, MemoryError) or "bad_alloc" in str(exc)
        return {"outcome": "huge_allocation" if bad else "other_error", "type": type(exc).__name__,
                "message": str(exc)[:200]}
    return {"outcome": "returned"}


def fuzz_calls(kind: str, cases, worker: Worker, extra: dict) -> dict:
    per: dict = {}
    findings = []
    for c in cases:
        out = worker.send({"op": kind, **c, **extra})
        name = c.get("input") or c.get("fn")
        per.setdefault(name, {}).setdefault(out["outcome"], 0)
        per[name][out["outcome"]] += 1
        bad = {"input": ("scores_correctly", "clear_error"), "binding": ("clear_error", "returned")}[kind]
        if out["outcome"] not in bad:
            findings.append({"case": c, **out})
    return {"kind": kind, "cases": len(cases), "per_case": per, "findings": findings}


# ================================================================================================ crash safety
def make_image_folder(root: Path, n: int = 48, size: int = 32, seed: int = 0) -> Path:
    from PIL import Image

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        img = np.zeros((size, size, 3), np.uint8) + rng.integers(0, 256, 3, dtype=np.uint8)
        r0, c0 = rng.integers(0, size // 2, 2)
        img[r0:r0 + size // 3, c0:c0 + size // 3] = rng.integers(0, 256, 3, dtype=np.uint8)
        Image.fromarray(img).save(root / f"img{i:03d}.png")
    return root


def _run_and_kill(cmd, env, delay: float | None, timeout: float = 600.0) -> dict:
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=ROOT)
    if delay is None:
        _, err = p.communicate(timeout=timeout)
        return {"rc": p.returncode, "killed": False, "stderr": err.decode(errors="replace")[-800:]}
    try:
        p.wait(timeout=delay)
        killed = False
    except subprocess.TimeoutExpired:
        p.send_signal(signal.SIGKILL)
        p.wait()
        killed = True
    p.stderr.close()
    return {"rc": p.returncode, "killed": killed}


def _check_ckpt(path: Path) -> str:
    from lfdn_edge.checkpoint import Checkpoint, CheckpointError

    if not path.exists():
        return "absent"
    try:
        Checkpoint.load(path)
        return "intact"
    except (CheckpointError, OSError, ValueError) as exc:
        return f"corrupt: {exc}"


def _check_engine(path: Path) -> str:
    from lfdn_edge.artifact.file import EngineError, read_engine

    if not path.exists():
        return "absent"
    try:
        read_engine(path)
        return "intact"
    except (EngineError, OSError) as exc:
        return f"corrupt: {exc}"


def _temp_litter(folder: Path, name: str) -> list[str]:
    return sorted(p.name for p in folder.glob(f".{name}.*.tmp"))


def crash_trials(workdir: Path, trials: int, seed: int = 0) -> dict:
    """kill -9 of tools/train.py and tools/build_engine.py at random moments; checks the output afterwards
    (intact or absent, never half-written; an earlier good output never lost) and that rerunning the same
    command finishes and gives what an uninterrupted run gives."""
    import torch

    from lfdn_edge.checkpoint import Checkpoint

    rng = random.Random(seed)
    workdir.mkdir(parents=True, exist_ok=True)
    data = make_image_folder(workdir / "images")
    env = dict(os.environ, LFDN_EDGE_CACHE=str(workdir / "cache"), PYTHONUNBUFFERED="1")
    train = [sys.executable, str(ROOT / "tools" / "train.py"), "--data", str(data), "--width", "32", "--depth", "1",
             "--emb-dim", "16", "--epochs", "3", "--batch-size", "8", "--n-train", "24", "--n-cal", "12",
             "--n-test", "8", "--input-size", "32", "--backbone", "efficientnet-lite0", "--quiet"]  # STAGE_DIMS
    res = {"train": [], "build": []}
    # reference: an uninterrupted run (also fills the feature cache), timed for the kill window
    ref_path = workdir / "ref.pt"
    t0 = time.perf_counter()
    r = _run_and_kill(train + ["--out", str(ref_path)], env, None)
    t_train = time.perf_counter() - t0
    if r["rc"] != 0:
        raise RuntimeError(f"reference training failed: {r['stderr']}")
    ref = Checkpoint.load(ref_path)
    for i in range(trials):
        out = workdir / f"train{i}" / "ckpt.pt"
        delay = rng.uniform(0.2, t_train * 1.05)
        k = _run_and_kill(train + ["--out", str(out)], env, delay)
        after = _check_ckpt(out)
        litter = _temp_litter(out.parent, out.name) if out.parent.exists() else []
        rerun = _run_and_kill(train + ["--out", str(out)], env, None)
        final = _check_ckpt(out)
        litter_after = _temp_litter(out.parent, out.name)
        same = False
        if final == "intact":
            got = Checkpoint.load(out)
            same = all(torch.equal(got.data["ema"][n], ref.data["ema"][n]) for n in ref.data["ema"]) and \
                got.calibration["thresholds"] == ref.calibration["thresholds"]
        res["train"].append({"delay_s": round(delay, 2), "killed": k["killed"], "after_kill": after,
                             "temp_files_left": len(litter), "temp_files_left_after_rerun": len(litter_after),
                             "rerun_rc": rerun["rc"], "rerun": final,
                             "rerun_equals_uninterrupted": same,
                             **({"rerun_stderr": rerun["stderr"]} if rerun["rc"] else {})})
    # build: kill while replacing an existing good engine, then rebuild
    build = [sys.executable, str(ROOT / "tools" / "build_engine.py"), str(ref_path), "--backend", "onnx",
             "--batch", "1,8,32"]
    eng = workdir / "ref.onnx.fp32.engine"
    t0 = time.perf_counter()
    r = _run_and_kill(build + ["-o", str(eng)], env, None)
    t_build = time.perf_counter() - t0
    if r["rc"] != 0:
        raise RuntimeError(f"reference build failed: {r['stderr']}")
    good = eng.read_bytes()
    x = standardised(16, 4)
    import lfdn_edge

    ref_scores = lfdn_edge.Scorer(eng).score(x)
    for i in range(trials):
        out = workdir / f"build{i}" / "ckpt.onnx.engine"
        out.parent.mkdir(parents=True, exist_ok=True)
        prior = i % 2 == 0  # every other trial replaces an existing good engine
        if prior:
            out.write_bytes(good)
        delay = rng.uniform(0.2, t_build * 1.05)
        k = _run_and_kill(build + ["-o", str(out)], env, delay)
        after = _check_engine(out)
        if prior and after == "absent":
            after = "previous output lost"
        litter = _temp_litter(out.parent, out.name)
        rerun = _run_and_kill(build + ["-o", str(out)], env, None)
        final = _check_engine(out)
        litter_after = _temp_litter(out.parent, out.name)
        same = final == "intact" and np.array_equal(lfdn_edge.Scorer(out).score(x), ref_scores)
        res["build"].append({"delay_s": round(delay, 2), "killed": k["killed"], "had_previous": prior,
                             "after_kill": after, "temp_files_left": len(litter),
                             "temp_files_left_after_rerun": len(litter_after), "rerun_rc": rerun["rc"],
                             "rerun": final, "rerun_scores_equal": same,
                             **({"rerun_stderr": rerun["stderr"]} if rerun["rc"] else {})})
    summary = {}
    for what, rows in res.items():
        summary[what] = {"trials": len(rows), "killed": sum(r["killed"] for r in rows),
                         "after_kill": {s: sum(1 for r in rows if r["after_kill"].split(":")[0] == s)
                                        for s in sorted({r["after_kill"].split(":")[0] for r in rows})},
                         "temp_files_left": sum(r["temp_files_left"] for r in rows),
                         "temp_files_left_after_rerun": sum(r["temp_files_left_after_rerun"] for r in rows),
                         "rerun_ok": sum(1 for r in rows if r["rerun_rc"] == 0 and r["rerun"] == "intact"),
                         "rerun_equal": sum(1 for r in rows if r.get("rerun_equals_uninterrupted", r.get("rerun_scores_equal")))}
    return {"uninterrupted_train_s": round(t_train, 2), "uninterrupted_build_s": round(t_build, 2),
            "summary": summary, "trials": res}


# ================================================================================================ integrity cost
def integrity_cost(workdir: Path, repeats: int = 3) -> dict:
    """Load time of a paper-size checkpoint (C=720, W=1440, N=16, E=720; EMA + early snapshot) with and
    without the digest, and of the paper-size native and ONNX engines' read (SHA-256 of the payload included)."""
    import hashlib

    import torch

    from lfdn_edge.artifact.file import read_engine
    from lfdn_edge.builder.dispatch import build_engine
    from lfdn_edge.checkpoint import load_checkpoint_dict, payload_digest, save_checkpoint
    from lfdn_edge.diffusion import DiffusionConfig
    from lfdn_edge.features import FeatureConfig
    from lfdn_edge.model import LFDN, LFDNConfig
    from lfdn_edge.reference import ScoreConfig

    workdir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    cfg = LFDNConfig(in_dim=720, width=1440, depth=16, emb_dim=720)
    model = LFDN(cfg)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    params = sum(v.numel() for v in model.parameters())
    data = {"feature": FeatureConfig(backbone="efficientnet-b4", input_size=380).to_dict(),
            "layout": {"stage_dims": [24, 32, 56, 160, 448]}, "model": cfg.to_dict(),
            "diffusion": DiffusionConfig().to_dict(), "score": ScoreConfig().to_dict(), "ema": state,
            "early_ema": {k: v.clone() for k, v in state.items()}, "calibration": None}
    path = workdir / "paper.pt"
    save_checkpoint(data, path)

    def best(f):
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            f()
            ts.append(time.perf_counter() - t0)
        return min(ts)

    t_torch = best(lambda: torch.load(path, map_location="cpu", weights_only=True))
    t_load = best(lambda: load_checkpoint_dict(path))
    loaded = torch.load(path, map_location="cpu", weights_only=True)
    t_digest = best(lambda: payload_digest(loaded))
    out = {"model": cfg.to_dict(), "parameters": params, "checkpoint_bytes": path.stat().st_size,
           "checkpoint": {"torch_load_s": round(t_torch, 3), "load_checkpoint_dict_s": round(t_load, 3),
                          "digest_s": round(t_digest, 3)}}
    for backend in ("native", "onnx"):
        try:
            with contextlib.redirect_stdout(open(os.devnull, "w")), contextlib.redirect_stderr(open(os.devnull, "w")):
                eng = build_engine(path, backend=backend, out=workdir / f"paper.{backend}.engine")
        except Exception as exc:  # noqa: BLE001 - reported
            out[backend] = {"error": str(exc)[:200]}
            continue
        payload = read_engine(eng).payload
        t_read = best(lambda: read_engine(eng))
        t_sha = best(lambda: hashlib.sha256(payload).digest())
        out[backend] = {"engine_bytes": eng.stat().st_size, "read_engine_s": round(t_read, 3),
                        "sha256_s": round(t_sha, 3)}
        eng.unlink()
    path.unlink()
    return out


# ================================================================================================ report
def machine() -> dict:
    try:
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short=10", "HEAD"], capture_output=True,
                                text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain"], capture_output=True,
                               text=True).stdout.strip()
    except OSError:
        commit, dirty = "", ""
    cpu = platform.processor()
    with contextlib.suppress(OSError):
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    return {"commit": commit, "uncommitted_changes": bool(dirty), "date": _dt.date.today().isoformat(), "cpu": cpu,
            "logical_cpus": os.cpu_count(), "python": platform.python_version()}


def run_report(parts, sizes: dict, workdir: Path, log=print) -> dict:
    import lfdn_edge

    rep = {"machine": machine(), "sizes": sizes}
    ckpt_path = workdir / "ckpt.pt"
    need_fixture = bool(set(parts) & {"soak", "concurrency", "fuzz", "inputs", "bindings"})
    if need_fixture:
        ck = make_checkpoint(ckpt_path, width=128, depth=2, emb_dim=64)
        ck2 = make_checkpoint(workdir / "ckpt2.pt", width=64, depth=1, emb_dim=32, seed=5)
        engines = make_engines(ck.path, workdir)
        engines2 = make_engines(ck2.path, workdir, backends=("native", "onnx"))
    if "soak" in parts:
        rep["soak"] = []
        for name, p in engines.items():
            r = soak(lfdn_edge.Scorer(p), sizes["soak_calls"])
            log(f"soak {name}: {r['calls']} calls, RSS growth after warm-up {r['rss_growth_mib']} MiB "
                f"(bound {RSS_BOUND_MIB}), latency p50/p99 first {r['first']} last {r['last']} "
                f"(windows of {r['window_calls']}), score mismatches {r['score_mismatches']}")
            rep["soak"].append(r)
    if "concurrency" in parts:
        rep["concurrency"] = {"same_scores": [], "two_scorers": [], "throughput_items_per_s": {}}
        for name, p in engines.items():
            s = lfdn_edge.Scorer(p)
            r = concurrency(s)
            log(f"concurrency {name}: 8 threads, {r['exact']}/{r['batches']} batches identical to one thread, "
                f"errors {len(r['errors'])}")
            rep["concurrency"]["same_scores"].append(r)
            tp = {str(c): round(throughput(s, c, seconds=1.5), 1) for c in (1, 2, 8)}
            rep["concurrency"]["throughput_items_per_s"][name] = tp
            log(f"throughput {name} (batch 64): items/s with 1/2/8 caller threads: {tp}")
        names = list(engines)
        pairs = [(engines[n], engines2.get(n, engines2.get("native"))) for n in names if n in engines2] + \
            [(engines[names[0]], engines2[list(engines2)[-1]])]
        for a, b in pairs:
            r = two_scorers(lfdn_edge.Scorer(a), lfdn_edge.Scorer(b))
            log(f"two scorers {r['scorers']}: {r['calls']} calls, mismatches {r['mismatches']}, errors {len(r['errors'])}")
            rep["concurrency"]["two_scorers"].append(r)
    if {"fuzz", "inputs", "bindings"} & set(parts):
        os.environ["LFDN_FUZZ_NATIVE_ENGINE"] = str(engines.get("native", ""))
        worker = Worker()
        fz = rep.setdefault("fuzz", {})
        if "fuzz" in parts:
            fdir = workdir / "fuzz"
            fdir.mkdir(exist_ok=True)
            for name, p in engines.items():
                if name == "torch":
                    continue
                cases = engine_mutations(p.read_bytes(), sizes["mutations"], seed=1)
                r = fuzz_files("engine", p, cases, fdir, worker)
                fz[f"engine_{name}"] = r
                log(f"fuzz engine ({name}): {r['cases']} cases, findings {len(r['findings'])}: {r['per_class']}")
            cases = checkpoint_mutations(ckpt_path.read_bytes(), sizes["mutations"], seed=2)
            r = fuzz_files("checkpoint", ckpt_path, cases, fdir, worker)
            fz["checkpoint"] = r
            log(f"fuzz checkpoint: {r['cases']} cases, findings {len(r['findings'])}: {r['per_class']}")
        if "inputs" in parts:
            for name, p in engines.items():
                r = fuzz_calls("input", input_cases(sizes["input_rounds"], 3), worker, {"engine": str(p)})
                fz[f"inputs_{name}"] = r
                log(f"fuzz inputs ({name}): {r['cases']} cases, findings {len(r['findings'])}")
            r = fuzz_calls("input", [{"input": n} for n in FRAME_CASES], worker,
                           {"engine": str(ckpt_path), "frames": True})
            fz["inputs_frames_torch"] = r
            log(f"fuzz frame inputs (torch graph with the backbone): {r['cases']} cases, findings {len(r['findings'])}")
        if "bindings" in parts and "native" in engines:
            r = fuzz_calls("binding", binding_cases(sizes["binding_cases"], 4), worker, {})
            fz["bindings"] = r
            outcomes: dict = {}
            for v in r["per_case"].values():
                for k, c in v.items():
                    outcomes[k] = outcomes.get(k, 0) + c
            log(f"fuzz native bindings: {r['cases']} calls, outcomes {outcomes}, findings {len(r['findings'])}")
        fz["worker_restarts"] = worker.restarts
        worker.close()
    if "crash" in parts:
        r = crash_trials(workdir / "crash", sizes["crash_trials"])
        rep["crash"] = r
        log(f"crash safety (uninterrupted: train {r['uninterrupted_train_s']} s, build {r['uninterrupted_build_s']} s): "
            f"{json.dumps(r['summary'])}")
    if "integrity" in parts:
        r = integrity_cost(workdir / "integrity")
        rep["integrity"] = r
        log(f"integrity cost, paper-size model ({r['parameters']:,} parameters): {json.dumps(r)}")
    return rep


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_worker"]:
        return _worker_main()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--long", action="store_true", help="the long sizes (10,000 soak calls, 1,000 mutations, 20 kills)")
    ap.add_argument("--only", default="soak,concurrency,fuzz,inputs,bindings,crash,integrity")
    ap.add_argument("--json", default=None, help="write the report here (default: "
                                                 "benchmarks/results/reliability-{fast,long}-DATE.json)")
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args(argv)
    sizes = LONG if args.long else FAST
    parts = [p.strip() for p in args.only.split(",") if p.strip()]
    out = Path(args.json) if args.json else ROOT / "benchmarks" / "results" / \
        f"reliability-{'long' if args.long else 'fast'}-{_dt.date.today().isoformat()}.json"
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="lfdn-rel-") as tmp:
        rep = run_report(parts, sizes, Path(args.workdir or tmp))
    rep["seconds"] = round(time.time() - t0, 1)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rep, indent=1, default=str) + "\n")
    print(f"wrote {out} ({rep['seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

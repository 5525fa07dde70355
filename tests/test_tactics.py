"""Tactic selection end to end with the CPU tactics (docs/NATIVE.md "Tactics"): every candidate is verified
against the float64 reference (FP32/FP16: |got - ref| <= 1e-4 + 1e-4 |ref|), timed, the fastest passing one is
stored in the tactic cache beside the engine and reused after a reload without timing, rebuilt when the
fingerprint changes; the test-only wrong tactic is rejected even when a fake timer makes it the fastest;
LFDN_EDGE_TACTIC forces one (refused when it does not apply); a corrupt cache is ignored with a warning; and
rows stay bit-identical across batch sizes with a different tactic chosen per bucket.
"""

from __future__ import annotations

import json
import logging
import warnings

import numpy as np
import pytest

_C = pytest.importorskip("lfdn_edge._C", reason="native module not built")

from lfdn_edge.artifact.file import read_engine, write_engine  # noqa: E402
from lfdn_edge.artifact.header import common_header  # noqa: E402
from lfdn_edge.builder.native_payload import build_native_artifact  # noqa: E402
from lfdn_edge import benchmark as bench  # noqa: E402
from lfdn_edge.reference import ScoreConfig  # noqa: E402
from lfdn_edge.runtime import tactic_cache  # noqa: E402
from lfdn_edge.runtime.backends.native_backend import NativeBackend  # noqa: E402

LAYOUT = (16, 24, 40, 112, 320)  # in_dim 512
WRONG = "cpu.test.drop_last_kblock"
CRASH = "cpu.test.crash"  # aborts its process: only an isolated selection may run it (tests/test_tactic_isolation.py)
FAST = dict(warmup=0, samples=2)  # selection options that keep the tests quick


@pytest.fixture(scope="module")
def ckpt():
    ck = bench.paper_checkpoint(seed=3, stage_dims=LAYOUT, width=160, depth=2, emb_dim=64)
    ck.data["score"] = ScoreConfig(t=5, steps=2, eta=1.0, seed=7).to_dict()
    return ck


@pytest.fixture(scope="module")
def z0():
    return bench.standardised_inputs(40, LAYOUT, seed=5)


@pytest.fixture(autouse=True)
def _fresh(monkeypatch):
    tactic_cache.clear_memo()
    monkeypatch.delenv(tactic_cache.TACTIC_ENV, raising=False)
    monkeypatch.delenv(tactic_cache.TACTICS_ENV, raising=False)
    # quicker selection (the structure is what is tested; fewer samples do not change which checks run)
    monkeypatch.setattr(tactic_cache.defaults, "TACTIC_SAMPLES", 3)
    monkeypatch.setattr(tactic_cache.defaults, "TACTIC_WARMUP", 0)
    monkeypatch.setattr(tactic_cache.defaults, "TACTIC_COLD_CACHE", False)  # (the cache test keeps it on)
    yield
    tactic_cache.clear_memo()


def _engine_file(ck, tmp_path, precision="fp32", max_batch=64):
    batch = (1, max_batch, max_batch)
    extras, payload = build_native_artifact(ck, precision, batch, False)
    header = {**common_header(ck, "native", precision, batch, False), **extras}
    return write_engine(tmp_path / f"m.{precision}.native.engine", header, payload)


def _isa_tactics(isa):
    return [t["name"] for t in _C.cpu_linear_tactics() if t["isa"] == isa and not t["test_only"]]


# ------------------------------------------------------------------------------------------------- the table
def test_tactic_table_has_a_default_per_usable_isa_and_one_test_only_wrong_tactic():
    table = _C.cpu_linear_tactics()
    names = [t["name"] for t in table]
    assert len(names) == len(set(names))
    for isa in _C.build_info()["cpu_kernels_usable"]:
        defaults_ = [t for t in table if t["isa"] == isa and t["default"]]
        assert len(defaults_) == 1, isa
        assert len(_isa_tactics(isa)) >= 3, isa  # blocking variants beside the default
    assert [t["name"] for t in table if t["test_only"]] == [WRONG, CRASH]


@pytest.mark.parametrize("wdtype", [np.float32, np.float16])
@pytest.mark.parametrize("rows", [1, 5, 13, 64, 130])
def test_blocking_variants_of_one_isa_are_bit_identical(rows, wdtype):
    """Row stability across tactics: all blocking variants of one ISA give bit-identical outputs, for every
    batch size, so choosing a different tactic per batch bucket cannot change a row's scores."""
    rng = np.random.default_rng(rows)
    K, N = 300, 72  # K > every k-block: several blocks; N: 5 panels (an odd count: a short two-panel unit)
    x = rng.standard_normal((rows, K)).astype(np.float32)
    w = (rng.standard_normal((N, K)) * 0.05).astype(wdtype)
    b = rng.standard_normal(N).astype(np.float32)
    g, be = rng.standard_normal(K).astype(np.float32), rng.standard_normal(K).astype(np.float32)
    res = rng.standard_normal((rows, N)).astype(np.float32)
    for isa in _C.build_info()["cpu_kernels_usable"]:
        outs = {}
        for name in _isa_tactics(isa):
            for pro in ("none", "gn_silu"):
                try:
                    outs[name, pro] = _C.fused_linear(x, w, b, prologue=pro, gamma=g, beta=be, residual=res,
                                                      tactic=name, threads=2)
                except ValueError as exc:  # two-panel variants do not apply to FP16 weights, tile ones only to INT8
                    assert "does not apply" in str(exc), exc
                    assert (".np2" in name and wdtype == np.float16) or ".amx." in name, name
        base = {pro: v for (n, pro), v in outs.items() if n == _isa_tactics(isa)[0]}
        assert len(outs) >= 2 * 3
        for (name, pro), v in outs.items():
            assert np.array_equal(v, base[pro]), (isa, name, pro, rows, float(np.abs(v - base[pro]).max()))


def test_test_only_tactic_is_wrong_and_cannot_be_set_on_an_engine(ckpt):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 300)).astype(np.float32)
    w = (rng.standard_normal((40, 300)) * 0.05).astype(np.float32)
    good = _C.fused_linear(x, w)
    bad = _C.fused_linear(x, w, tactic=WRONG)
    assert np.abs(bad - good).max() > 1e-2  # it really is wrong (skips a k-block)
    eng = NativeBackend(_artifact_in_memory(ckpt), "cpu", tactics="off").engine
    with pytest.raises(ValueError, match="test-only"):
        eng.set_tactic(0, 0, WRONG)
    with pytest.raises(ValueError, match="unknown CPU tactic"):
        eng.set_tactic(0, 0, "cpu.avx9000.mr99")
    other = [t["name"] for t in _C.cpu_linear_tactics() if not t["test_only"] and t["isa"] != eng.isa
             and t["isa"] in _C.build_info()["cpu_kernels_usable"]]
    if other:  # one numerics class (ISA) per engine
        with pytest.raises(ValueError, match="numerics class"):
            eng.set_tactic(0, 0, other[0])


def _artifact_in_memory(ck, precision="fp32", max_batch=64):
    from lfdn_edge.artifact.file import EngineArtifact

    batch = (1, max_batch, max_batch)
    extras, payload = build_native_artifact(ck, precision, batch, False)
    return EngineArtifact({**common_header(ck, "native", precision, batch, False), **extras}, payload)


# ------------------------------------------------------------------------------------------------- selection
def test_selection_verifies_times_and_picks_the_fastest_passing(ckpt):
    eng = NativeBackend(_artifact_in_memory(ckpt), "cpu", tactics="off").engine
    names = _isa_tactics(eng.isa)
    # fake timer: the candidates report decreasing times in table order except the wrong one, which is fastest
    fake = {n: 1e-3 * (len(names) - i) for i, n in enumerate(names)}
    fake[WRONG] = 1e-9
    r = eng.select_tactic(2, 1, test_only=[WRONG], fake_times=fake, **FAST)
    by = {c["name"]: c for c in r["results"]}
    assert set(by) == set(names) | {WRONG}  # every candidate of the engine's ISA, plus the test-only one asked for
    wrong = by[WRONG]
    assert wrong["applies"] and not wrong["passed"] and wrong["max_err_ratio"] > 1 and wrong["median_s"] == -1
    applicable = [n for n in names if by[n]["applies"]]
    for n in applicable:
        assert by[n]["passed"] and 0 <= by[n]["max_err_ratio"] <= 1, n
        assert by[n]["median_s"] == pytest.approx(fake[n]), n
    expect = min(applicable, key=lambda n: fake[n])
    assert r["chosen"] == expect != WRONG
    # without being asked for, the test-only tactic is not even a candidate
    r2 = eng.select_tactic(2, 1, fake_times=fake, **FAST)
    assert WRONG not in {c["name"] for c in r2["results"]} and r2["chosen"] == expect


def test_baseline_stays_unless_another_is_clearly_faster(ckpt):
    eng = NativeBackend(_artifact_in_memory(ckpt), "cpu", tactics="off").engine
    base = [t["name"] for t in _C.cpu_linear_tactics() if t["isa"] == eng.isa and t["default"]][0]
    others = [n for n in _isa_tactics(eng.isa) if n != base]
    fake = {n: 1.0e-3 for n in others}
    fake[base] = 1.0e-3 * 1.01  # 1% slower than the others: within the 2% margin, the default stays
    assert eng.select_tactic(1, 0, fake_times=fake, baseline_margin=0.02, **FAST)["chosen"] == base
    fake[base] = 1.0e-3 * 1.05  # 5% slower: replaced
    assert eng.select_tactic(1, 0, fake_times=fake, baseline_margin=0.02, **FAST)["chosen"] != base


def test_wrong_tactic_rejected_and_logged_in_the_engine_load(ckpt, monkeypatch, caplog):
    names_fast = {WRONG: 1e-9}
    real = tactic_cache.select_cpu_tactics

    def with_wrong(engine, **kw):
        return real(engine, **{**kw, "test_only": [WRONG], "fake_times": names_fast})

    monkeypatch.setattr(tactic_cache, "select_cpu_tactics", with_wrong)
    with caplog.at_level(logging.WARNING, logger="lfdn_edge.tactics"):
        be = NativeBackend(_artifact_in_memory(ckpt), "cpu")
    rep = be.tactics
    assert rep.source == "selected"
    assert WRONG not in rep.choices.values()
    assert {r["name"] for r in rep.rejected} == {WRONG}
    assert len(rep.rejected) == len(rep.choices)  # rejected in every slot
    assert sum(WRONG in m for m in caplog.messages) == len(rep.choices)


def test_forced_tactic_is_honoured_and_refused_when_unusable(ckpt, z0, monkeypatch):
    art = _artifact_in_memory(ckpt)
    isa = NativeBackend(art, "cpu", tactics="off").engine.isa
    pick = [n for n in _isa_tactics(isa) if ".np2" not in n][1]
    monkeypatch.setenv(tactic_cache.TACTIC_ENV, pick)
    be = NativeBackend(art, "cpu")
    assert be.tactics.source == "forced"
    assert set(be.tactics.choices.values()) == {pick}
    assert all(be.engine.get_tactic(b, k) == pick for b in range(be.engine.num_buckets) for k in range(3))
    for bad, msg in ((WRONG, "failed verification"), ("cpu.nope", "not in the tactic table")):
        monkeypatch.setenv(tactic_cache.TACTIC_ENV, bad)
        with pytest.raises(ValueError, match=msg):
            NativeBackend(art, "cpu")
    other = [t["name"] for t in _C.cpu_linear_tactics() if t["isa"] != isa and not t["test_only"]]
    monkeypatch.setenv(tactic_cache.TACTIC_ENV, other[0])
    with pytest.raises(ValueError, match="not offered for this engine"):
        NativeBackend(art, "cpu")
    if isa == "avx512":  # two-panel tactics read FP32 weights only
        monkeypatch.setenv(tactic_cache.TACTIC_ENV, "cpu.avx512.mr12.kc128.mc96.np2")
        with pytest.raises(ValueError, match="does not apply"):
            NativeBackend(_artifact_in_memory(ckpt, "fp16"), "cpu")


def test_tactics_off_keeps_the_default_blocking(ckpt, monkeypatch):
    monkeypatch.setenv(tactic_cache.TACTICS_ENV, "off")
    be = NativeBackend(_artifact_in_memory(ckpt), "cpu")
    assert be.tactics.source == "off"
    assert all(be.engine.get_tactic(b, k) is None for b in range(be.engine.num_buckets) for k in range(3))
    monkeypatch.setenv(tactic_cache.TACTICS_ENV, "fastest")
    with pytest.raises(ValueError, match="tactics mode"):
        NativeBackend(_artifact_in_memory(ckpt), "cpu")


def _non_default_choices(eng):
    """Every slot set to an applicable tactic of the engine's ISA other than the default blocking."""
    default = tactic_cache.default_tactic_name(eng)
    out = {}
    for b, k, _ in tactic_cache._slots(eng):
        for n in _isa_tactics(eng.isa):
            if n == default:
                continue
            try:
                eng.set_tactic(b, k, n)
            except ValueError:  # does not apply to this layer
                continue
            out[tactic_cache.slot_name(b, k)] = n
            break
    for b, k, _ in tactic_cache._slots(eng):
        eng.set_tactic(b, k, None)
    return default, out


def test_whole_pass_check_keeps_only_buckets_whose_pass_is_clearly_faster(ckpt):
    eng = NativeBackend(_artifact_in_memory(ckpt), "cpu", tactics="off").engine
    default, choices = _non_default_choices(eng)
    assert eng.num_buckets == 3 and len(choices) == 9 and default not in choices.values()
    # fake pass times per bucket: 0 -> 10 % faster (kept), 1 -> 1 % faster (inside the 2 % margin: reverted),
    # 2 -> 5 % slower (reverted); the order of the calls is recorded
    speed = {0: 0.90, 1: 0.99, 2: 1.05}
    calls = []

    def fake_timer(bucket, rows):
        assert rows == eng.tactic_problem(bucket, 0)["rows"]

        def t(variant):
            calls.append((bucket, variant))
            # the engine really is set to the variant being timed
            now = [eng.get_tactic(bucket, k) for k in range(3)]
            assert now == ([choices[tactic_cache.slot_name(bucket, k)] for k in range(3)]
                           if variant == "selected" else [None] * 3)
            return speed[bucket] if variant == "selected" else 1.0
        return t

    final, checks = tactic_cache.confirm_by_pass(eng, choices, margin=0.02, rounds=4, pass_timer=fake_timer)
    assert [checks[f"b{b}"]["kept"] for b in range(3)] == [True, False, False]
    assert checks["b0"]["speedup"] == pytest.approx(1 / 0.9)
    for b in range(3):
        for k in range(3):
            s = tactic_cache.slot_name(b, k)
            assert final[s] == (choices[s] if b == 0 else default)
            assert eng.get_tactic(b, k) == (choices[s] if b == 0 else None)  # the engine runs the final choice
    # per bucket: warm-up S, D, then ABBA rounds
    seq = [v for b, v in calls if b == 1]
    assert seq == ["selected", "default"] + ["selected", "default", "default", "selected"] * 2
    assert all(len(checks[f"b{b}"]["samples"][v]) == 4 for b in range(3) for v in ("selected", "default"))
    # a bucket already at the default blocking is not timed
    calls.clear()
    same = dict(choices, **{tactic_cache.slot_name(2, k): default for k in range(3)})
    _, checks2 = tactic_cache.confirm_by_pass(eng, same, pass_timer=fake_timer)
    assert "b2" not in checks2 and all(b != 2 for b, _ in calls)


def test_engine_load_confirms_on_whole_passes_and_caches_the_checks(ckpt, tmp_path, monkeypatch):
    real = tactic_cache.select_cpu_tactics

    def per_layer_prefers_others(engine, **kw):  # per-layer selection picks non-default tactics everywhere
        ch, res, rej = real(engine, **kw)
        return _non_default_choices(engine)[1], res, rej

    monkeypatch.setattr(tactic_cache, "select_cpu_tactics", per_layer_prefers_others)
    path = _engine_file(ckpt, tmp_path)
    be = NativeBackend(read_engine(path), "cpu")  # the real whole-pass timer
    rep = be.tactics
    assert rep.source == "selected" and set(rep.pass_checks) == {"b0", "b1", "b2"}
    default = tactic_cache.default_tactic_name(be.engine)
    for b in range(3):
        c = rep.pass_checks[f"b{b}"]
        assert c["rows"] == be.engine.tactic_problem(b, 0)["rows"] and c["selected_s"] > 0 and c["default_s"] > 0
        assert c["kept"] == (c["selected_s"] < (1 - tactic_cache.defaults.TACTIC_PASS_MARGIN) * c["default_s"])
        for k in range(3):
            got = rep.choices[tactic_cache.slot_name(b, k)]
            assert (got != default) == c["kept"]
            assert be.engine.get_tactic(b, k) == (None if got == default else got)  # default: the fixed path
    data = json.loads(tactic_cache.cache_path_for(path).read_text())
    assert data["pass_checks"].keys() == rep.pass_checks.keys()
    assert {k: v["tactic"] for k, v in data["choices"].items()} == rep.choices


def test_tactic_env_is_one_list_for_cpu_and_cuda_engines(ckpt, monkeypatch):
    monkeypatch.setenv(tactic_cache.TACTIC_ENV, " cpu.avx2.mr6 , cuda.stream_r8,cuda.mma_m64 ")
    assert tactic_cache.forced_tactics("cpu") == ["cpu.avx2.mr6"]
    assert tactic_cache.forced_tactics("cuda") == ["cuda.stream_r8", "cuda.mma_m64"]
    # only CUDA tactics forced: a CPU engine loads with its own selection (it used to fail on the cuda. name)
    monkeypatch.setenv(tactic_cache.TACTIC_ENV, "cuda.stream_r8")
    assert tactic_cache.forced_tactics("cpu") == []
    assert NativeBackend(_artifact_in_memory(ckpt), "cpu").tactics.source == "selected"
    monkeypatch.setenv(tactic_cache.TACTIC_ENV, "cpu.avx2.mr6,cpu.avx2.mr4")
    with pytest.raises(ValueError, match="names 2 CPU tactics"):
        NativeBackend(_artifact_in_memory(ckpt), "cpu")


def test_cache_of_an_older_format_version_is_rebuilt_without_a_warning(ckpt, tmp_path):
    path = _engine_file(ckpt, tmp_path)
    NativeBackend(read_engine(path), "cpu")
    cache = tactic_cache.cache_path_for(path)
    data = json.loads(cache.read_text())
    data["version"] = 1
    cache.write_text(json.dumps(data))
    tactic_cache.clear_memo()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert NativeBackend(read_engine(path), "cpu").tactics.source == "selected"
    assert json.loads(cache.read_text())["version"] == tactic_cache.FORMAT_VERSION


# ------------------------------------------------------------------------------------------------- the cache
def test_cache_stored_reused_without_timing_and_rebuilt_on_fingerprint_change(ckpt, tmp_path, monkeypatch):
    monkeypatch.setattr(tactic_cache.defaults, "TACTIC_COLD_CACHE", True)  # the default timing, end to end
    path = _engine_file(ckpt, tmp_path)
    be = NativeBackend(read_engine(path), "cpu")
    rep = be.tactics
    cache = tactic_cache.cache_path_for(path)
    assert rep.source == "selected" and rep.cache_path == str(cache) and cache.is_file()
    data = json.loads(cache.read_text())
    assert data["fingerprint"]["engine_isa"] == be.engine.isa and data["fingerprint"]["threads"] == be.engine.threads
    assert {k: v["tactic"] for k, v in data["choices"].items()} == rep.choices
    # the stored choice is the fastest passing candidate (within the baseline margin of the default), or the
    # default blocking where the whole-pass check of its bucket did not confirm the per-layer choices
    default = tactic_cache.default_tactic_name(be.engine)
    for slot, entry in data["choices"].items():
        check = data["pass_checks"].get(slot.split(".")[0])
        if check is not None and not check["kept"]:
            assert entry["tactic"] == default, slot
            continue
        passed = [c for c in entry["candidates"] if c["passed"] and c["note"] == "finalist"]
        best = min(c["median_us"] for c in passed)
        chosen = [c for c in passed if c["name"] == entry["tactic"]][0]
        assert chosen["median_us"] <= best * (1 + 0.021), slot

    # reload: from the cache, nothing is selected or timed
    tactic_cache.clear_memo()

    def no_selection(*a, **k):
        raise AssertionError("selection ran although the cache is valid")

    monkeypatch.setattr(tactic_cache, "select_cpu_tactics", no_selection)
    monkeypatch.setattr(_C.CpuEngine, "select_tactic", no_selection)
    be2 = NativeBackend(read_engine(path), "cpu")
    assert be2.tactics.source == "cache" and be2.tactics.choices == rep.choices
    for b in range(be2.engine.num_buckets):
        for k in range(3):
            got = rep.choices[tactic_cache.slot_name(b, k)]
            assert be2.engine.get_tactic(b, k) == (None if got == tactic_cache.default_tactic_name(be2.engine) else got)
    monkeypatch.undo()

    # another thread count (part of the fingerprint): rebuilt
    tactic_cache.clear_memo()
    be3 = NativeBackend(read_engine(path), "cpu", threads=be.engine.threads + 1)
    assert be3.tactics.source == "selected"
    assert json.loads(cache.read_text())["fingerprint"]["threads"] == be.engine.threads + 1
    # another lfdn-edge version: rebuilt
    tactic_cache.clear_memo()
    monkeypatch.setattr(tactic_cache, "__version__", "999.0")
    assert NativeBackend(read_engine(path), "cpu", threads=be.engine.threads + 1).tactics.source == "selected"
    assert json.loads(cache.read_text())["fingerprint"]["lfdn_edge_version"] == "999.0"


@pytest.mark.parametrize("corruption", ["truncated", "not_json", "bad_checksum", "test_only_tactic",
                                        "other_isa", "unknown_tactic", "wrong_key"])
def test_corrupt_cache_is_ignored_with_a_warning_and_rebuilt(ckpt, tmp_path, corruption):
    path = _engine_file(ckpt, tmp_path, max_batch=8)
    NativeBackend(read_engine(path), "cpu")
    cache = tactic_cache.cache_path_for(path)
    text = cache.read_text()
    data = json.loads(text)
    slot = sorted(data["choices"])[0]
    isa = data["fingerprint"]["engine_isa"]
    if corruption == "truncated":
        cache.write_text(text[: len(text) // 2])
    elif corruption == "not_json":
        cache.write_bytes(b"\xff\xfe garbage")
    elif corruption == "bad_checksum":
        data["fingerprint"]["threads"] += 0  # unchanged fingerprint, forged checksum
        data["fingerprint_sha"] = "0" * 16
        cache.write_text(json.dumps(data))
    else:
        if corruption == "test_only_tactic":
            data["choices"][slot]["tactic"] = WRONG
        elif corruption == "other_isa":
            others = [t["name"] for t in _C.cpu_linear_tactics() if t["isa"] != isa and not t["test_only"]]
            data["choices"][slot]["tactic"] = others[0]
        elif corruption == "unknown_tactic":
            data["choices"][slot]["tactic"] = "cpu.avx9000.mr99"
        else:
            data["choices"][slot]["key"] = "inp:1x1:none:fp32:rows1"
        cache.write_text(json.dumps(data))
    tactic_cache.clear_memo()
    with pytest.warns(tactic_cache.TacticCacheWarning, match="ignored and rebuilt"):
        be = NativeBackend(read_engine(path), "cpu")
    assert be.tactics.source == "selected"
    assert WRONG not in be.tactics.choices.values()
    fresh = json.loads(cache.read_text())  # rewritten whole
    assert {k: v["tactic"] for k, v in fresh["choices"].items()} == be.tactics.choices
    tactic_cache.clear_memo()
    with warnings.catch_warnings():
        warnings.simplefilter("error", tactic_cache.TacticCacheWarning)
        assert NativeBackend(read_engine(path), "cpu").tactics.source == "cache"


# ------------------------------------------------------------------------------------------------- row stability
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_rows_bit_identical_across_batch_sizes_with_tactics_per_bucket(ckpt, z0, precision):
    """A different tactic in every bucket (forced per slot, the least default-like ones first): a row's scores do
    not depend on which bucket (batch size) it is scored in, and equal those of the fixed default blocking."""
    be = NativeBackend(_artifact_in_memory(ckpt, precision), "cpu", tactics="off")
    eng = be.engine
    ref = eng.score(z0)  # default blocking, batch 40 (bucket 2)
    # (two-panel tactics read FP32 weights only)
    # (tile tactics, ".amx.", run INT8 weights only: tests/test_native_int8.py)
    names = [n for n in _isa_tactics(eng.isa) if (precision == "fp32" or ".np2" not in n) and ".amx." not in n][::-1]
    used = set()
    for b in range(eng.num_buckets):
        for k in range(3):
            for j in range(len(names)):
                n = names[(3 * b + k + j) % len(names)]
                try:
                    eng.set_tactic(b, k, n)
                    used.add(n)
                    break
                except ValueError:
                    continue
    assert len(used) >= 3
    full = eng.score(z0)
    for key in ("mse", "mfsim", "stage_cos"):
        assert np.array_equal(full[key], ref[key]), key
    for a, c in ((0, 1), (1, 2), (2, 9), (9, 17), (0, 40), (17, 40)):  # buckets 0, 0, 1, 2, 2, 2
        part = eng.score(z0[a:c])
        for key in ("mse", "mfsim", "stage_cos"):
            assert np.array_equal(part[key], full[key][a:c]), (key, a, c)


def test_selected_engine_scores_match_the_default_engine(ckpt, z0):
    off = NativeBackend(_artifact_in_memory(ckpt), "cpu", tactics="off").run(z0)
    auto = NativeBackend(_artifact_in_memory(ckpt), "cpu")
    assert auto.tactics.source == "selected"
    got = auto.run(z0)
    assert np.array_equal(got.mse, off.mse) and np.array_equal(got.stage_cos, off.stage_cos)
    # a second in-memory load in the same process reuses the choice (memo), nothing is timed again
    again = NativeBackend(_artifact_in_memory(ckpt), "cpu")
    assert again.tactics.source == "memo" and again.tactics.choices == auto.tactics.choices


def test_bucket_bounds():
    assert [_C.tactic_bucket(r) for r in (1, 2, 8, 9, 64, 65, 256, 257, 1024, 1025)] == [0, 1, 1, 2, 2, 3, 3, 4, 4, 5]
    assert [_C.tactic_bucket_bound(b) for b in range(6)] == [1, 8, 64, 256, 1024, 4096]


# ------------------------------------------------------------------------------------------------- bench
def test_bench_reports_auto_fixed_and_each_isa_with_the_chosen_tactics(tmp_path):
    """lfdn-edge bench --native-tactics auto,fixed,isa: one run reports native-fp32 (tactics chosen at load), the
    engine before tactics (native-fp32-fixed) and each usable ISA, records every variant's tactic per
    (bucket, layer) and the auto / fixed throughput ratio recomputed from the results."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    ck = bench.paper_checkpoint(seed=2, stage_dims=LAYOUT, width=64, depth=2, emb_dim=32)
    path = ck.save(tmp_path / "small.pt")
    out = tmp_path / "b.json"
    cmd = [sys.executable, "-m", "lfdn_edge.cli.bench", "--ckpt", str(path), "--backends", "native",
           "--native-precision", "fp32", "--native-tactics", "auto,fixed,isa", "--batch", "1,5", "--min-time", "0",
           "--min-reps", "2", "--warmup", "0", "--parity-batch", "0", "--no-probe", "--quiet", "--json", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=root)
    assert proc.returncode == 0, proc.stderr
    rep = json.loads(out.read_text())
    isas = list(_C.build_info()["cpu_kernels_usable"])
    variants = ["native-fp32", "native-fp32-fixed"] + [f"native-fp32-{i}" for i in isas]
    assert sorted({r["backend"] for r in rep["results"]}) == sorted(variants)
    nt = rep["native_tactics"]
    assert set(nt) == set(variants)
    assert nt["native-fp32-fixed"]["source"] == "off"
    assert set(nt["native-fp32-fixed"]["choices"].values()) == {None}
    assert nt["native-fp32"]["isa"] == _C.cpu_isa()
    for i in isas:
        t = nt[f"native-fp32-{i}"]
        assert t["isa"] == i and t["source"] in ("selected", "memo")
        assert t["bucket_bounds"] == [1, 8] and len(t["choices"]) == 2 * 3
        assert all(c.startswith(f"cpu.{i}.") for c in t["choices"].values()), t
    by = {(r["backend"], r["batch"]): r["items_per_s"] for r in rep["results"]}
    for b in (1, 5):
        want = by[("native-fp32", b)] / by[("native-fp32-fixed", b)]
        assert rep["ratios_auto_vs_fixed"]["fp32"][str(b)] == pytest.approx(want, abs=1e-3)
    assert rep["settings"]["native_tactics"] == ["auto", "fixed", *isas]
    bad = subprocess.run(cmd[:-2] + ["--native-tactics", "fastest", "--dry-run"], capture_output=True, text=True,
                         timeout=120, cwd=root)
    assert bad.returncode == 2 and "--native-tactics entries" in bad.stderr


def test_the_pass_runs_the_tactic_set_per_bucket(ckpt, z0):
    """The engine really runs the tactic of each (bucket, layer kind): with the test-only wrong tactic set (tests
    only: allow_test_only) in one bucket's block layers, that bucket's scores change and the others' do not."""
    eng = NativeBackend(_artifact_in_memory(ckpt), "cpu", tactics="off").engine
    ref1, ref40 = eng.score(z0[:1]), eng.score(z0)
    eng.set_tactic(2, 1, WRONG, allow_test_only=True)  # bucket 2: 9..64 rows
    assert np.array_equal(eng.score(z0[:1])["mse"], ref1["mse"])  # bucket 0 untouched
    assert not np.allclose(eng.score(z0)["mse"], ref40["mse"], rtol=1e-3)
    eng.set_tactic(2, 1, None)
    assert np.array_equal(eng.score(z0)["mse"], ref40["mse"])


def test_cache_functions_are_device_agnostic_and_any_fingerprint_change_rebuilds(tmp_path):
    """load_cache / store_cache work for any fingerprint (the CUDA engine's: device name, compute capability,
    driver and CUDA versions): the same one reads back, a change in any field is a miss."""
    fp = tactic_cache.gpu_fingerprint("NVIDIA H100", "9.0", "550.54", "12.4", threads_per_block=128)
    slots = [(0, 0, "inp:512x160:silu:fp16:rows1"), (0, 2, "out:160x512:gn_silu:fp16:rows1")]
    choices = {"b0.inp": "cuda.stream_splitk", "b0.out": "cuda.tile"}
    path = tmp_path / "e.tactics.json"
    tactic_cache.store_cache(path, fp, slots, choices, {})
    assert tactic_cache.load_cache(path, fp, slots) == choices
    for field in ("device_name", "compute_capability", "driver_version", "cuda_version", "lfdn_edge_version"):
        assert tactic_cache.load_cache(path, {**fp, field: "other"}, slots) is None, field
    with pytest.warns(tactic_cache.TacticCacheWarning, match="no valid entry for b1.inp"):  # another engine
        assert tactic_cache.load_cache(path, fp, slots[:1] + [(1, 0, "inp:512x160:silu:fp16:rows8")]) is None


def test_bench_fixed_variant_shares_the_auto_engine_and_switches_its_tactics(ckpt):
    """auto vs fixed in the bench compares tactics on ONE engine instance (two instances differ with where
    their weights landed), each runner putting its own tactic set on the engine before its calls."""
    runners = bench.make_runners(ckpt, ["native"], ["fp32"], "fp32", 64, "cpu", None, ("auto", "fixed"))
    auto, fixed = runners
    assert (auto.name, fixed.name) == ("native-fp32", "native-fp32-fixed")
    assert fixed.backend is auto.backend
    eng = auto.backend.engine
    slots = [(b, k) for b, k, _ in tactic_cache._slots(eng)]
    assert bench._activate(fixed) and all(eng.get_tactic(b, k) is None for b, k in slots)
    assert bench._activate(auto)
    default = tactic_cache.default_tactic_name(eng)
    want = [auto.tactics.choices[tactic_cache.slot_name(b, k)] for b, k in slots]
    assert [eng.get_tactic(b, k) for b, k in slots] == [None if w == default else w for w in want]
    assert fixed.tactics.source == "off" and auto.tactics.source in ("selected", "memo")
    # both give the same scores (one ISA: bit-identical), through the timing's own switching
    x = bench.standardised_inputs(9, LAYOUT, seed=1)
    a, f = bench.chunked(auto, x, 64), bench.chunked(fixed, x, 64)
    assert all(np.array_equal(a[k], f[k]) for k in ("mse", "mfsim", "stage_cos"))
    assert all(eng.get_tactic(b, k) is None for b, k in slots)  # fixed ran last


def test_sample_timer_sizes_samples_and_runs_untimed_passes_first():
    calls = []
    t = tactic_cache.sample_timer(lambda: calls.append(1), min_sample_s=0.0, warm_calls=1)
    assert t("selected") >= 0 and len(calls) == 3  # 1 untimed + 1 sizing + 1 timed (min_sample_s 0: one pass)
    t("default")
    assert len(calls) == 5  # then 1 untimed + 1 timed per sample
    import time as _time

    slow = tactic_cache.sample_timer(lambda: _time.sleep(0.002), min_sample_s=0.01)
    assert 0.0015 < slow("x") < 0.01


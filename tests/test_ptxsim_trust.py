"""The PTX interpreter (tools/ptxsim) checked on small CUDA kernels with known answers, and on kernels broken
on purpose that each checker must flag (tests/ptx_kernels/trust_kernels.cu, compiled by nvcc to PTX).

References here are independent of the interpreter's own code: rounding is checked against the sorted list
of every FP16/BF16 value, fragment layouts against hand-computed entries of the PTX ISA's figures."""

from __future__ import annotations

import numpy as np
import pytest

from ptxsim_common import ROOT, ptx_of, ptxsim

SRC = ROOT / "tests" / "ptx_kernels" / "trust_kernels.cu"


@pytest.fixture(scope="module")
def ptx80():
    return ptx_of(SRC, "compute_80")


@pytest.fixture()
def dev():
    return ptxsim.Device()


@pytest.fixture()
def mod(dev, ptx80):
    return dev.load(ptx80)


# ---------------------------------------------------------------------------------------------- known answers
def test_block_sum_shuffle_and_shared_reduction(dev, mod):
    x = np.random.default_rng(0).standard_normal((5, 333)).astype(np.float32)
    px, po = dev.upload(x), dev.alloc(5 * 4)
    dev.launch(mod, "block_sum", 5, 96, [px, po, 333])
    np.testing.assert_allclose(dev.read(po, np.float32, 5), x.astype(np.float64).sum(1), rtol=2e-6, atol=2e-5)


def _cuda_shfl(v, mode, delta, width):
    """CUDA C++ Programming Guide semantics of __shfl_*_sync (full mask)."""
    out = np.empty(32, v.dtype)
    for lane in range(32):
        seg = lane // width * width
        if mode == "up":
            src = lane - delta if lane - seg >= delta else lane
        elif mode == "down":
            src = lane + delta if lane - seg + delta < width else lane
        elif mode == "xor":
            src = lane ^ delta
            src = src if src < seg + width else lane  # later groups: own value
        else:
            src = seg + ((lane * 7 + delta) % 32) % width
        out[lane] = v[src]
    return out


@pytest.mark.parametrize("delta,width", [(1, 32), (3, 32), (3, 8), (5, 16), (2, 4)])
def test_shuffles_every_mode_with_segments(dev, mod, delta, width):
    v = (np.arange(32, dtype=np.int32) * 10 + 7)
    pi, po = dev.upload(v), dev.alloc(4 * 32 * 4)
    dev.launch(mod, "shuffles", 1, 32, [pi, po, delta, width])
    got = dev.read(po, np.int32, 128).reshape(4, 32)
    for k, mode in enumerate(("up", "down", "xor", "idx")):
        np.testing.assert_array_equal(got[k], _cuda_shfl(v, mode, delta, width), err_msg=mode)


def test_half_warp_shuffle_with_member_mask(dev, mod):
    v = np.arange(32, dtype=np.int32) * 3
    pi, po = dev.upload(v), dev.alloc(16 * 4)
    dev.launch(mod, "half_warp_shuffle", 1, 32, [pi, po])
    np.testing.assert_array_equal(dev.read(po, np.int32, 16), v[np.arange(16) ^ 1])


def test_half2_arithmetic_on_both_halves(dev, mod):
    rng = np.random.default_rng(1)
    n = 200
    a, b, c = (rng.standard_normal(2 * n).astype(np.float16) * np.float16(s) for s in (3, 2, 5))
    a[:4] = np.array([65504, -65504, 1e-7, 6e-5], np.float16)  # overflow, subnormal inputs
    ptrs = [dev.upload(x) for x in (a, b, c)] + [dev.alloc(4 * n) for _ in range(3)]
    dev.launch(mod, "half2_math", (n + 63) // 64, 64, ptrs + [n])
    fma, add, mul = (dev.read(p, np.float16, 2 * n) for p in ptrs[3:])
    a64, b64, c64 = (x.astype(np.float64) for x in (a, b, c))
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(fma.view(np.uint16), (a64 * b64 + c64).astype(np.float16).view(np.uint16))
        np.testing.assert_array_equal(add.view(np.uint16), (a64 + b64).astype(np.float16).view(np.uint16))
        np.testing.assert_array_equal(mul.view(np.uint16), (a64 * b64).astype(np.float16).view(np.uint16))


def _all_bf16():
    bits = np.arange(65536, dtype=np.uint32)
    vals = (bits << 16).view(np.float32).astype(np.float64)
    keep = np.isfinite(vals)
    order = np.argsort(vals[keep], kind="stable")
    return vals[keep][order], bits[keep][order].astype(np.uint16)


def _all_f16():
    bits = np.arange(65536, dtype=np.uint16)
    vals = bits.view(np.float16).astype(np.float64)
    keep = np.isfinite(vals)
    order = np.argsort(vals[keep], kind="stable")
    return vals[keep][order], bits[keep][order]


def _round_table(x, table, mode):
    """Round float64 x to the value list (sorted, with +-0 both present) in the given mode; ties to even bits."""
    vals, bits = table
    out = np.empty(len(x), np.uint16)
    for i, v in enumerate(x):
        j = np.searchsorted(vals, v)
        lo = vals[j - 1] if j > 0 else -np.inf
        hi = vals[j] if j < len(vals) else np.inf
        if j < len(vals) and vals[j] == v:
            k = j if not (v == 0 and np.signbit(v)) else j - 0  # exact (zero sign handled by caller data)
            out[i] = bits[k]
            continue
        if mode == "rz":
            k = j - 1 if v > 0 else j
        elif mode == "rd":
            k = j - 1
        elif mode == "ru":
            k = j
        else:
            dl, dh = v - lo, hi - v
            if dl < dh:
                k = j - 1
            elif dh < dl:
                k = j
            else:
                k = j - 1 if bits[j - 1] % 2 == 0 else j
        out[i] = bits[min(max(k, 0), len(bits) - 1)]
    return out


def test_conversions_each_rounding_mode(dev, mod):
    rng = np.random.default_rng(2)
    x = np.concatenate([rng.standard_normal(40) * 100, rng.standard_normal(20) * 1e-5,
                        [0.5, 1.5, 2.5, -0.5, -2.5, 1 + 2 ** -11, 1 + 3 * 2 ** -11, 3.0, -7.75, 0.25, 1.0, 1.25,
                         2049.0, 2051.0, -2049.0, 1 + 2 ** -8, 1 + 3 * 2 ** -8]]).astype(np.float32)
    n = len(x)
    ptrs = [dev.upload(x), dev.alloc(8 * n), dev.alloc(2 * n), dev.alloc(16 * n), dev.alloc(4 * n)]
    dev.launch(mod, "conversions", (n + 31) // 32, 32, ptrs + [n])
    h = dev.read(ptrs[1], np.uint16, 4 * n).reshape(n, 4)
    bf = dev.read(ptrs[2], np.uint16, n)
    iv = dev.read(ptrs[3], np.int32, 4 * n).reshape(n, 4)
    sat = dev.read(ptrs[4], np.float32, n)
    x64 = x.astype(np.float64)
    f16 = _all_f16()
    for k, mode in enumerate(("rn", "rz", "rd", "ru")):
        np.testing.assert_array_equal(h[:, k], _round_table(x64, f16, mode), err_msg=mode)
    np.testing.assert_array_equal(bf, _round_table(x64, _all_bf16(), "rn"))
    np.testing.assert_array_equal(iv[:, 0], np.rint(x64).astype(np.int32))
    np.testing.assert_array_equal(iv[:, 1], np.trunc(x64).astype(np.int32))
    np.testing.assert_array_equal(iv[:, 2], np.floor(x64).astype(np.int32))
    np.testing.assert_array_equal(iv[:, 3], np.ceil(x64).astype(np.int32))
    np.testing.assert_array_equal(sat, np.clip(x, 0, 1))
    # spot values by hand: 2.5 -> 2 (ties to even), 1 + 3*2^-11 -> f16 1 + 2^-9 (ties to even: 0x3C02)
    i25 = int(np.flatnonzero(x == 2.5)[0])
    assert iv[i25, 0] == 2 and iv[i25, 3] == 3
    assert h[int(np.flatnonzero(x == np.float32(1 + 3 * 2 ** -11))[0]), 0] == 0x3C02


def test_bf16x2_fma(dev, mod):
    rng = np.random.default_rng(3)
    n = 64
    tb = _all_bf16()
    vals = [rng.standard_normal(2 * n) * s for s in (2, 3, 1)]
    a, b, c = (_round_table(v, tb, "rn") for v in vals)
    ptrs = [dev.upload(x) for x in (a, b, c)] + [dev.alloc(4 * n)]
    dev.launch(mod, "bf162_math", 1, 64, ptrs + [n])
    got = dev.read(ptrs[3], np.uint16, 2 * n)

    def f(u):
        return (u.astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    np.testing.assert_array_equal(got, _round_table(f(a) * f(b) + f(c), tb, "rn"))


def test_mma_tile_by_hand(dev, mod):
    rng = np.random.default_rng(4)
    A = rng.integers(-4, 5, (16, 16)).astype(np.float16)
    Bn = rng.integers(-4, 5, (8, 16)).astype(np.float16)   # B stored n-major: Bn[n, k]
    C = rng.integers(-20, 21, (16, 8)).astype(np.float32)
    ptrs = [dev.upload(A), dev.upload(Bn), dev.upload(C), dev.alloc(16 * 8 * 4)]
    dev.launch(mod, "mma_tile", 1, 32, ptrs)
    D = dev.read(ptrs[3], np.float32, 128).reshape(16, 8)
    want = A.astype(np.float64) @ Bn.astype(np.float64).T + C
    np.testing.assert_array_equal(D, want)
    # one entry by hand: D[3, 5] = sum_k A[3, k] Bn[5, k] + C[3, 5]
    assert D[3, 5] == sum(float(A[3, k]) * float(Bn[5, k]) for k in range(16)) + float(C[3, 5])


def test_ldmatrix_plain_and_trans_fragments(dev, mod):
    m = np.arange(64, dtype=np.uint16)  # element (r, c) holds 8r + c
    ptrs = [dev.upload(m), dev.alloc(128), dev.alloc(128)]
    dev.launch(mod, "ldmatrix_trans", 1, 32, ptrs)
    plain, trans = dev.read(ptrs[1], np.uint32, 32), dev.read(ptrs[2], np.uint32, 32)
    # PTX ISA, ldmatrix: lane l holds row l/4, columns 2(l%4) and 2(l%4)+1 (low half first); .trans: of M^T
    assert plain[0] == 0 | (1 << 16) and plain[5] == 10 | (11 << 16) and plain[31] == 62 | (63 << 16)
    assert trans[0] == 0 | (8 << 16) and trans[5] == 17 | (25 << 16) and trans[31] == 55 | (63 << 16)
    for lane in range(32):
        r, c = lane // 4, 2 * (lane % 4)
        assert plain[lane] == (8 * r + c) | ((8 * r + c + 1) << 16)
        assert trans[lane] == (8 * c + r) | ((8 * (c + 1) + r) << 16)


@pytest.mark.parametrize("n", [128, 100, 98])
def test_cp_async_with_zero_fill(dev, mod, n):
    x = np.random.default_rng(5).standard_normal(n).astype(np.float32)
    ptrs = [dev.upload(x), dev.alloc(128)]
    dev.launch(mod, "cp_async_sum", 1, 32, ptrs + [n])
    xs = np.zeros(128, np.float32)
    xs[:n] = x
    want = xs.reshape(32, 4).sum(1)[(np.arange(32) + 1) % 32]
    np.testing.assert_allclose(dev.read(ptrs[1], np.float32, 32), want, rtol=1e-6)


def test_initialised_copy_passes(dev, mod):
    x = np.arange(10, dtype=np.float32)
    px, py = dev.upload(x), dev.alloc(40)
    dev.launch(mod, "copy", 1, 32, [px, py, 10])
    np.testing.assert_array_equal(dev.read(py, np.float32, 10), x)


# ---------------------------------------------------------------------------------------------- broken on purpose
def test_memcheck_out_of_bounds_store(dev, mod):
    y = dev.alloc(40 * 4, name="y")
    with pytest.raises(ptxsim.MemcheckError) as e:
        dev.launch(mod, "broken_oob_store", 1, 64, [y, 40])
    err = e.value
    assert err.thread == (40, 0, 0) and err.cta == (0, 0, 0) and err.address == y + 160
    assert err.kernel.startswith("broken_oob_store") and err.line > 0 and "st.global" in err.text


def test_memcheck_misaligned_load(dev, mod):
    x, y = dev.alloc(16), dev.alloc(8)
    with pytest.raises(ptxsim.MemcheckError, match="misaligned"):
        dev.launch(mod, "broken_misaligned", 1, 1, [x, y])


def test_racecheck_missing_syncthreads(dev, mod):
    x, o = dev.upload(np.arange(64, dtype=np.float32)), dev.alloc(256)
    with pytest.raises(ptxsim.RacecheckError) as e:
        dev.launch(mod, "broken_missing_syncthreads", 1, 64, [x, o])
    assert "ld.shared" in e.value.text and "no barrier" in str(e.value)


def test_initcheck_missing_cp_async_wait_and_stale_data(dev, mod):
    x = np.arange(128, dtype=np.float32)
    ptrs = [dev.upload(x), dev.alloc(128)]
    with pytest.raises(ptxsim.InitcheckError) as e:
        dev.launch(mod, "broken_missing_cp_async_wait", 1, 32, ptrs + [128])
    assert "ld.shared" in e.value.text
    # without initcheck the read sees shared memory before the copy landed (zeros), not x
    quiet = ptxsim.Device(initcheck=False)
    m2 = quiet.load(mod.module)
    p2 = [quiet.upload(x), quiet.alloc(128)]
    quiet.launch(m2, "broken_missing_cp_async_wait", 1, 32, p2 + [128])
    assert np.all(quiet.read(p2[1], np.float32, 32) == 0)


def test_synccheck_divergent_barrier(dev, mod):
    y = dev.alloc(256)
    with pytest.raises(ptxsim.SynccheckError, match="barrier reached by 16 of the CTA's 64 threads"):
        dev.launch(mod, "broken_divergent_barrier", 1, 64, [y])


def test_synccheck_partial_warp_shuffle(dev, mod):
    pi, po = dev.upload(np.arange(32, dtype=np.int32)), dev.alloc(64)
    with pytest.raises(ptxsim.SynccheckError, match="lane 16"):
        dev.launch(mod, "broken_partial_shuffle", 1, 32, [pi, po])


def test_initcheck_uninitialised_device_memory(dev, mod):
    px = dev.alloc(40, initialized=False)
    py = dev.alloc(40)
    with pytest.raises(ptxsim.InitcheckError) as e:
        dev.launch(mod, "copy", 1, 32, [px, py, 10])
    assert e.value.address == px and e.value.thread == (0, 0, 0)


def test_unknown_instruction_fails_loudly_with_its_line():
    ptx = (".version 8.0\n.target sm_80\n.address_size 64\n.visible .entry k(.param .u64 p)\n{\n"
           "\t.reg .b32 %r<3>;\n\tmov.u32 %r1, 1;\n\tfrobnicate.b32 %r2, %r1;\n\tret;\n}\n")
    with pytest.raises(ptxsim.UnsupportedInstruction, match=r"line 8 \(frobnicate.b32 %r2, %r1\)"):
        ptxsim.Device().load(ptx)


def test_launch_checks_parameter_block(dev, mod):
    with pytest.raises(ptxsim.LaunchError, match="takes 3 parameters"):
        dev.launch(mod, "block_sum", 1, 32, [dev.alloc(4)])
    with pytest.raises(ptxsim.LaunchError, match="2 bytes given"):
        dev.launch(mod, "block_sum", 1, 32, [dev.alloc(4), dev.alloc(4), b"\0\0"])


def test_cp_async_groups_wait_all_and_too_weak_wait(dev, mod):
    x = np.arange(256, dtype=np.float32)
    ptrs = [dev.upload(x), dev.alloc(128)]
    dev.launch(mod, "two_groups_wait_all", 1, 32, ptrs)
    np.testing.assert_array_equal(dev.read(ptrs[1], np.float32, 32), x[0:128:4] + x[128:256:4])
    with pytest.raises(ptxsim.InitcheckError):  # wait_group 1: the second group may still be in flight
        dev.launch(mod, "broken_weak_cp_async_wait", 1, 32, ptrs)
    quiet = ptxsim.Device(initcheck=False)
    m2 = quiet.load(mod.module)
    p2 = [quiet.upload(x), quiet.alloc(128)]
    quiet.launch(m2, "broken_weak_cp_async_wait", 1, 32, p2)
    np.testing.assert_array_equal(quiet.read(p2[1], np.float32, 32), x[0:128:4])  # the second half: stale zeros


def _f64_ulps(a, b):
    ia, ib = a.view(np.int64), b.view(np.int64)
    ia = np.where(ia < 0, -(ia & 0x7FFFFFFFFFFFFFFF), ia)
    ib = np.where(ib < 0, -(ib & 0x7FFFFFFFFFFFFFFF), ib)
    return np.abs(ia - ib)


def test_double_cosine_slow_path_call_local_memory_and_carries(dev, mod):
    """cos() of huge doubles runs libdevice's argument reduction (a called .func, local memory, add.cc/madc
    chains): CUDA documents 2 ulp for double cos; glibc is within 1 ulp; so within 3 ulp of numpy."""
    x = np.array([0.5, 3.0, 1e6, 123456789.0, 1e22, -5e17, 1e300, 2.0 ** 1000, 6.0e4, 1e15], np.float64)
    px, py = dev.upload(x), dev.alloc(8 * len(x))
    dev.launch(mod, "big_cos", 1, 32, [px, py, len(x)])
    got = dev.read(py, np.float64, len(x))
    assert _f64_ulps(got, np.cos(x)).max() <= 3, (got, np.cos(x))


def test_dynamic_shared_memory_and_constant_bank(dev, mod):
    n = 64
    x = np.arange(n, dtype=np.float32)
    dev.write(mod.global_addr["c_scale"], np.array([1, 2, 3, 4], np.float32))
    px, py = dev.upload(x), dev.alloc(4 * n)
    dev.launch(mod, "dyn_shared_const", 1, n, [px, py, n], smem=4 * n)
    want = x * np.array([1, 2, 3, 4], np.float32)[np.arange(n) % 4]
    np.testing.assert_array_equal(dev.read(py, np.float32, n), want[(np.arange(n) + 1) % n])
    with pytest.raises(ptxsim.MemcheckError, match="outside the CTA's 252 bytes of shared memory"):
        dev.launch(mod, "dyn_shared_const", 1, n, [px, py, n], smem=4 * (n - 1))  # one float short


def test_atomics_serialise(dev, mod):
    c, olds, pw, mx = dev.upload(np.zeros(1, np.uint32)), dev.alloc(4 * 128), dev.upload(np.zeros(4, np.uint32)), \
        dev.upload(np.array([-5], np.int32))
    dev.launch(mod, "atomics", 2, 64, [c, olds, pw, mx])
    assert dev.read(c, np.uint32, 1)[0] == 128
    assert sorted(dev.read(olds, np.uint32, 128).tolist()) == list(range(128))
    np.testing.assert_array_equal(dev.read(pw, np.uint32, 4), np.arange(128).reshape(4, 32).sum(1))
    assert dev.read(mx, np.int32, 1)[0] == max(t * 7 % 101 for t in range(128))


def _bf16_bits(v):
    return (np.asarray(v, np.float32).view(np.uint32) >> 16).astype(np.uint32)  # exact for these small integers


def test_mma_bf16_fragments_by_the_isa_layout(dev, mod):
    """Fragments built here from the PTX ISA's m16n8k16 tables (groupID = lane / 4, tig = lane % 4)."""
    rng = np.random.default_rng(7)
    A = rng.integers(-3, 4, (16, 16)).astype(np.float32)
    B = rng.integers(-3, 4, (16, 8)).astype(np.float32)
    C = rng.integers(-9, 10, (16, 8)).astype(np.float32)
    a, b, c = np.zeros((32, 4), np.uint32), np.zeros((32, 2), np.uint32), np.zeros((32, 4), np.float32)
    for lane in range(32):
        g, t = lane // 4, lane % 4
        for i in range(8):  # a0..a7 -> register i // 2, half i % 2
            row = g if i < 2 or 4 <= i < 6 else g + 8
            col = t * 2 + (i & 1) + (8 if i >= 4 else 0)
            a[lane, i // 2] |= _bf16_bits(A[row, col]) << (16 * (i % 2))
        for i in range(4):  # b0..b3
            b[lane, i // 2] |= _bf16_bits(B[t * 2 + (i & 1) + (8 if i >= 2 else 0), g]) << (16 * (i % 2))
        for i in range(4):
            c[lane, i] = C[g if i < 2 else g + 8, t * 2 + (i & 1)]
    ptrs = [dev.upload(a), dev.upload(b), dev.upload(c), dev.alloc(32 * 4 * 4)]
    dev.launch(mod, "mma_bf16", 1, 32, ptrs)
    d = dev.read(ptrs[3], np.float32, 128).reshape(32, 4)
    D = A @ B + C
    for lane in range(32):
        g, t = lane // 4, lane % 4
        for i in range(4):
            assert d[lane, i] == D[g if i < 2 else g + 8, t * 2 + (i & 1)]


def test_cp_async_4_and_8_bytes_with_partial_fill(dev, mod):
    x = np.arange(1, 97, dtype=np.float32)
    px, po = dev.upload(x), dev.alloc(128)
    dev.launch(mod, "cp_async_small", 1, 32, [px, po])
    t = np.arange(32)
    second = np.where(t % 2 == 1, x[33 + 2 * t], 0)
    np.testing.assert_array_equal(dev.read(po, np.float32, 32), x[t] + 10 * x[32 + 2 * t] + 100 * second)

"""The torch-free CPU core on AArch64, verified without ARM hardware: the core and csrc/tests/cpu_selftest.cpp are
cross-compiled with CMake and Debian's aarch64-linux-gnu-g++ and run under qemu-user
(``qemu-aarch64 -L /usr/aarch64-linux-gnu``), emulated and therefore not timed. The program checks every op
(noise, fused GroupNorm-SiLU-Linear with FP32 and FP16 weights, DDIM update + scores) and the whole scoring pass
(FP32 and FP16 weights) on every kernel table the target supports (scalar and NEON there) against reference
outputs this module writes with the Python reference on the host, the NEON table against the scalar one, and
row stability bit for bit; the tolerances are stated in cpu_selftest.cpp's header. The same program is also
built for the host and run natively (scalar, AVX2, AVX-512 here), which checks the fixtures and the program; on the
host it also runs the BF16 checks where the CPU reports AVX512_BF16 (BF16 op against FP32 operands under the BF16
rule, the pass with BF16 weights), and elsewhere checks that BF16 is refused and the skip says why.

INT8 (int8 weights from lfdn_edge.builder.quantize, per-row dynamic INT8 activations, exact INT32 sums) is checked
on every table with INT8 kernels: scalar always, avx2 / avx512 where the CPU reports AVX-VNNI / AVX512_VNNI, neon
where it has the Armv8.2 dot-product extension (sdot; smmla where it also has I8MM): kernels against the scalar
table's INT32 results, quantization bit for bit against the portable rule, every INT8 linear case against a float64
reference under the INT8 rule, bit for bit against the scalar table without a prologue, tactics, the pass. The
AArch64 binary runs three times: as qemu-user's default CPU "max" (dotprod and I8MM: the smmla kernels), as a
Neoverse N1 (``-cpu neoverse-n1``: dotprod only, the sdot kernels) and as a Cortex-A72 (Armv8.0: no INT8 kernels;
INT8 must be refused and the skip says why), every other check passing each time.

Without the cross compiler or qemu-aarch64 the AArch64 test skips with the reason, unless
$LFDN_EDGE_REQUIRE_TOOLCHAINS (comma-separated, set by .ci/run) names ``aarch64``: then it fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lfdn_edge.builder.native_payload import native_spec
from lfdn_edge.builder.quantize import quantize_weight_int8
from lfdn_edge.diffusion import Schedule, ddim_coefficients, ddim_step
from lfdn_edge.features import FeatureLayout
from lfdn_edge.noise import gaussian_noise
from lfdn_edge.reference import ScoreConfig, score_terms

ROOT = Path(__file__).resolve().parent.parent
LAYOUT = (16, 24, 40, 112, 320)
CROSS_CXX = "aarch64-linux-gnu-g++"
QEMU = "qemu-aarch64"
SYSROOT = "/usr/aarch64-linux-gnu"
REQUIRED = {t.strip() for t in os.environ.get("LFDN_EDGE_REQUIRE_TOOLCHAINS", "").split(",") if t.strip()}


# ------------------------------------------------------------------------------------------------ fixtures
class FixtureWriter:
    def __init__(self, path: Path):
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        self.lines: list[str] = []

    def array(self, name: str, a) -> None:
        a = np.ascontiguousarray(a)
        kind = {np.dtype(np.float32): "f32", np.dtype(np.float16): "u16", np.dtype(np.int32): "i32",
                np.dtype(np.uint64): "u64", np.dtype(np.int8): "i8"}[a.dtype]
        (self.path / f"{name}.bin").write_bytes(a.astype(a.dtype.newbyteorder("<")).tobytes())
        self.lines.append(f"array {name} {kind} " + " ".join(str(d) for d in a.shape))

    def scalar(self, name: str, v) -> None:
        self.lines.append(f"scalar {name} {float(v)!r}")

    def close(self) -> None:
        (self.path / "index.txt").write_text("\n".join(self.lines) + "\n")


def _torch_linear(x, w, b, prologue, gamma=None, beta=None, residual=None, eps=1e-5):
    t = torch.from_numpy(x).double()
    if prologue == 2:
        t = F.silu(F.group_norm(t, 1, torch.from_numpy(gamma).double(), torch.from_numpy(beta).double(), eps))
    elif prologue == 1:
        t = F.silu(t)
    y = F.linear(t, torch.from_numpy(w.astype(np.float32)).double(), torch.from_numpy(b).double())
    if residual is not None:
        y = y + torch.from_numpy(residual).double()
    return y.float().numpy()


def write_fixtures(path: Path) -> Path:
    """Inputs and the Python reference's outputs for cpu_selftest (see its header for the format)."""
    fx = FixtureWriter(path)
    rng = np.random.default_rng(12)
    # op 1: noise of 7 images with distinct keys
    keys = np.arange(7, dtype=np.uint64) * np.uint64(2**31 + 7) + np.uint64(3)
    fx.array("noise.keys", keys)
    fx.scalar("noise.seed", 1234)
    fx.scalar("noise.stream", 2)
    fx.scalar("noise.dim", 300)
    fx.array("noise.want", gaussian_noise(1234, 2, 300, image_keys=keys).astype(np.float32))
    # op 2: batch 1, 3, 8, 9, 13 (several groups), 37 with a k remainder; FP32 and FP16 weights
    # (FP16 weights: up to 6 rows on NEON, 12 on AVX-512, are converted in registers, more rows block by block)
    cases = {"gn_b1": (1, 640, 48, 2, np.float32, True), "gn_b3_fp16": (3, 520, 50, 2, np.float16, True),
             "gn_b13_fp16": (13, 300, 160, 2, np.float16, True),
             "gn_b37": (37, 700, 40, 2, np.float32, True), "gn_b8_fp16": (8, 257, 19, 2, np.float16, False),
             "silu_b9": (9, 70, 33, 1, np.float32, False), "none_b5": (5, 100, 37, 0, np.float32, False)}
    for name, (rows, k, n, pro, wdt, res) in cases.items():
        x = (rng.standard_normal((rows, k)) * 2 + 0.5).astype(np.float32)
        w = (rng.standard_normal((n, k)) / np.sqrt(k)).astype(wdt)
        b = rng.standard_normal(n).astype(np.float32)
        g = (1 + 0.2 * rng.standard_normal(k)).astype(np.float32)
        be = (0.2 * rng.standard_normal(k)).astype(np.float32)
        r = rng.standard_normal((rows, n)).astype(np.float32) if res else None
        p = f"lin.{name}"
        fx.array(p + ".x", x)
        fx.array(p + ".w", w)
        fx.array(p + ".b", b)
        fx.array(p + ".g", g)
        fx.array(p + ".be", be)
        if r is not None:
            fx.array(p + ".res", r)
        fx.scalar(p + ".prologue", pro)
        fx.array(p + ".want", _torch_linear(x, w, b, pro, g, be, r))
    # op 2, INT8 (WeightType::kI8): weights quantized by lfdn_edge.builder.quantize (int8 + per-channel scales);
    # in_dim not a multiple of 4 (1, 3, 70, 257, 515), several k-blocks (1100 > 1024 on NEON, > 512 on AVX-512),
    # 1 to 37 rows (single and several row groups, packed activations), every prologue, with and without residual;
    # one all-zero input row (scale 0: the output is bias + residual). The program computes its float64 reference.
    i8_cases = {"gn_b1": (1, 640, 48, 2, True), "gn_b13": (13, 257, 50, 2, True), "gn_b37": (37, 700, 40, 2, True),
                "silu_b9": (9, 70, 33, 1, False), "silu_b7_k3": (7, 3, 17, 1, True),
                "none_b5": (5, 100, 37, 0, False), "none_b37_k515": (37, 515, 20, 0, True),
                "none_b2_k1": (2, 1, 5, 0, False), "none_b20_k1100": (20, 1100, 24, 0, False),
                "gn_b6_k1100": (6, 1100, 16, 2, True)}
    for name, (rows, k, n, pro, res) in i8_cases.items():
        x = (rng.standard_normal((rows, k)) * 2 + 0.5).astype(np.float32)
        if name == "none_b5":
            x[2] = 0.0
        q, s = quantize_weight_int8(rng.standard_normal((n, k)) / np.sqrt(k))
        p = f"lin8.{name}"
        fx.array(p + ".x", x)
        fx.array(p + ".q", q)
        fx.array(p + ".s", s)
        fx.array(p + ".b", rng.standard_normal(n).astype(np.float32))
        fx.array(p + ".g", (1 + 0.2 * rng.standard_normal(k)).astype(np.float32))
        fx.array(p + ".be", (0.2 * rng.standard_normal(k)).astype(np.float32))
        if res:
            fx.array(p + ".res", rng.standard_normal((rows, n)).astype(np.float32))
        fx.scalar(p + ".prologue", pro)
    # op 3: one DDIM update and the scores
    layout = FeatureLayout(LAYOUT)
    x, y, z0 = (rng.standard_normal((11, layout.dim)).astype(np.float32) for _ in range(3))
    noise = rng.standard_normal(layout.dim).astype(np.float32)
    ab_cur, ab_next = 0.97, 0.985
    c_x0, c_eps, sigma = ddim_coefficients(ab_cur, ab_next, 1.0)
    coef = np.array([np.sqrt(ab_cur), np.sqrt(1 - ab_cur), c_x0, c_eps, sigma], np.float32)
    for name, a in (("x", x), ("y", y), ("z0", z0), ("noise", noise), ("coef", coef)):
        fx.array(f"ddim.{name}", a)
    fx.array("ddim.offsets", np.asarray(layout.offsets, np.int32))
    fx.array("ddim.want_x", ddim_step(torch.from_numpy(x), torch.from_numpy(y), ab_cur, ab_next, 1.0,
                                      torch.from_numpy(noise)[None]).numpy())
    ref = score_terms(torch.from_numpy(z0), torch.from_numpy(y), layout)
    fx.array("ddim.want_mse", ref["mse"].numpy().astype(np.float32))
    fx.array("ddim.want_mfsim", ref["mfsim"].numpy().astype(np.float32))
    fx.array("ddim.want_cos", ref["stage_cos"].numpy().astype(np.float32))
    # op 4: the whole pass of a random LFDN (the engine tests' model), FP32 and FP16 weights
    from lfdn_edge import benchmark as bench

    ck = bench.paper_checkpoint(seed=1, stage_dims=LAYOUT, width=192, depth=3, emb_dim=96)
    ck.data["score"] = ScoreConfig(t=5, steps=3, eta=1.0, seed=123).to_dict()
    model = ck.build_model("ema")
    specs = {p: native_spec(model, Schedule(ck.diffusion_config), ck.score_config, ck.layout, p)
             for p in ("fp32", "fp16", "int8")}
    s = specs["fp32"]
    for key in ("in_dim", "width", "depth", "steps", "seed", "q_a", "q_b", "gn_eps", "cos_eps"):
        fx.scalar(f"spec.{key}", s[key])
    fx.array("spec.stage_offsets", np.asarray(s["stage_offsets"], np.int32))
    for key in ("coef", "inp_b", "fc1_bias", "out_g", "out_b", "out_bias"):
        fx.array(f"spec.{key}", np.asarray(s[key], np.float32))
    for key in ("gn1_g", "gn1_b", "gn2_g", "gn2_b", "fc2_b"):
        for i, a in enumerate(s[key]):
            fx.array(f"spec.{key}.{i}", np.asarray(a, np.float32))
    for prec, sp in specs.items():
        for key in ("inp_w", "out_w"):
            fx.array(f"spec.{prec}.{key}", sp[key])
        for key in ("fc1_w", "fc2_w"):
            for i, a in enumerate(sp[key]):
                fx.array(f"spec.{prec}.{key}.{i}", a)
        if prec == "int8":  # int8 weights and one float32 scale per output channel (builder/quantize.py)
            for key in ("inp_w", "out_w"):
                fx.array(f"spec.int8.{key}_scale", sp[key + "_scale"])
            for key in ("fc1_w", "fc2_w"):
                for i, a in enumerate(sp[key + "_scale"]):
                    fx.array(f"spec.int8.{key}_scale.{i}", a)
    z = bench.standardised_inputs(23, LAYOUT, seed=9)
    zt = torch.from_numpy(z)
    scores = score_terms(zt, ck.reference_scorer().final.reconstruct(zt), ck.layout)
    fx.array("pass.z0", z)
    fx.array("pass.want_mse", scores["mse"].numpy().astype(np.float32))
    fx.array("pass.want_mfsim", scores["mfsim"].numpy().astype(np.float32))
    fx.array("pass.want_cos", scores["stage_cos"].numpy().astype(np.float32))
    fx.close()
    return path


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory):
    return write_fixtures(tmp_path_factory.mktemp("cpu_selftest_fixtures"))


def _cmake_build(build: Path, extra: list[str]) -> Path:
    cmake = shutil.which("cmake")
    if cmake is None:
        pytest.skip("cmake not found")
    cfg = [cmake, "-S", str(ROOT), "-B", str(build), "-DLFDN_EDGE_CUDA=OFF", "-DLFDN_EDGE_PYTHON=OFF",
           "-DLFDN_EDGE_SELFTEST=ON", "-DCMAKE_BUILD_TYPE=Release", *extra]
    for cmd in (cfg, [cmake, "--build", str(build), "-j2", "--target", "lfdn_cpu_selftest"]):
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    exe = build / "lfdn_cpu_selftest"
    assert exe.is_file()
    return exe


def _tables_line(out: str) -> str:
    return next(ln.strip() for ln in out.splitlines() if ln.startswith("kernel tables:"))


def _int8_line(out: str) -> list[str]:
    return next(ln for ln in out.splitlines() if ln.startswith("int8 kernels:")).split(":", 1)[1].split()


I8_CASES = ("gn_b1", "gn_b13", "gn_b37", "gn_b6_k1100", "silu_b9", "silu_b7_k3", "none_b5", "none_b37_k515",
            "none_b2_k1", "none_b20_k1100")


def _check_int8(lines: list[str], t: str, has_i8: bool) -> None:
    if not has_i8:  # refused, and skipped with the reason
        assert f"PASS {t} int8: fused_linear and the engine refuse INT8 (kUnsupported) without INT8 kernels" \
            in lines, (t, lines)
        assert any(ln.startswith(f"SKIP {t} int8 ops and pass: ") for ln in lines), (t, lines)
        return
    whats = ["int8: the tactic rule is this program's", "int8: quantize_i8 = the portable rule, bit for bit",
             "int8 tactics: ", "pass int8 mse vs PyTorch", "pass int8 stage cosines vs PyTorch",
             "pass int8 mfsim vs PyTorch", "pass int8 row stability"]
    for c in I8_CASES:
        whats += [f"int8 fused_linear[{c}] vs float64", f"int8 fused_linear[{c}] 1 vs 2 threads"]
    if t != "scalar":
        whats += ["int8: gemm_i8 / gemm_i8_pa = scalar table's INT32 results", "int8: i8_dot_loop counts",
                  "pass int8 mse vs scalar table"]
        whats += [f"int8 fused_linear[{c}] vs scalar table" for c in I8_CASES]
        # without a prologue the codes, the INT32 sums and the epilogue are the same: bit for bit
        for c in I8_CASES:
            if c.startswith("none"):
                assert any(ln.startswith(f"PASS {t} int8 fused_linear[{c}] vs scalar table")
                           and ln.endswith("bit-identical") for ln in lines), (t, c, lines)
    for what in whats:
        assert any(ln.startswith(f"PASS {t} {what}") for ln in lines), (t, what, lines)


def _check_report(out: str, tables: list[str], bf16_tables: list[str] = (), i8_tables: list[str] = ("scalar",)) -> None:
    lines = out.splitlines()
    assert not [ln for ln in lines if ln.startswith("FAIL")], out
    assert _int8_line(out) == [t for t in tables if t in i8_tables], (i8_tables, out)
    for t in tables:
        _check_int8(lines, t, t in i8_tables)
    for t in tables:  # each table really ran every op and both passes
        for what in ("noise vs numpy", "fused_linear[gn_b37] vs torch", "fused_linear[gn_b13_fp16] vs torch",
                     "fused_linear[gn_b3_fp16] vs torch",
                     "ddim mse vs torch", "pass fp32 mse vs PyTorch", "pass fp16 mse vs PyTorch",
                     "pass fp32 row stability", "tactics:", "tactics: the test-only wrong tactic differs",
                     "tactics: selection chose", "tactics: the wrong tactic rejected", "tactics: pass with a tactic"):
            assert any(ln.startswith(f"PASS {t} {what}") for ln in lines), (t, what, out)
        if t != "scalar":
            assert any(ln.startswith(f"PASS {t} pass fp32 mse vs scalar table") for ln in lines), out
        if t in bf16_tables:  # BF16 ops and pass ran on this table
            for what in ("bf16: the tactic rule is this program's", "bf16: f32_to_bf16 = round to nearest even",
                         "bf16 fused_linear[gn_b37] vs FP32 operands", "bf16 fused_linear[none_b5] vs FP32 operands",
                         "bf16 fused_linear[gn_b3_fp16] vs FP32 operands", "bf16 fused_linear[gn_b37] 1 vs 2 threads",
                         "pass bf16 mse vs PyTorch", "pass bf16 stage cosines vs PyTorch",
                         "pass bf16 row stability"):
                assert any(ln.startswith(f"PASS {t} {what}") for ln in lines), (t, what, out)
        else:  # refused, and skipped with the reason
            assert f"PASS {t} bf16: fused_linear and the engine refuse BF16 (kUnsupported) without BF16 kernels" \
                in lines, (t, out)
            assert any(ln.startswith(f"SKIP {t} bf16 ops and pass: ") for ln in lines), (t, out)


def _host_bf16_tables(build: Path) -> list[str]:
    """["avx512"] where this CPU reports AVX512_BF16 and the build compiled the BF16 kernels (the compiler has
    -mavx512bf16, CMakeCache LFDN_CXX_HAS_AVX512BF16), else []."""
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    flags = next((ln.split(":", 1)[1].split() for ln in cpuinfo.splitlines() if ln.startswith("flags")), [])
    cache = (build / "CMakeCache.txt").read_text()
    return ["avx512"] if "avx512_bf16" in flags and "LFDN_CXX_HAS_AVX512BF16:INTERNAL=1" in cache else []


def _host_i8_tables(build: Path) -> list[str]:
    """The host tables with INT8 kernels: scalar always; avx2 where this CPU reports AVX-VNNI and the build compiled
    its kernels (CMakeCache LFDN_CXX_HAS_AVXVNNI); avx512 likewise with AVX512_VNNI (LFDN_CXX_HAS_AVX512VNNI)."""
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    flags = next((ln.split(":", 1)[1].split() for ln in cpuinfo.splitlines() if ln.startswith("flags")), [])
    cache = (build / "CMakeCache.txt").read_text()
    tables = ["scalar"]
    if "avx_vnni" in flags and "LFDN_CXX_HAS_AVXVNNI:INTERNAL=1" in cache:
        tables.append("avx2")
    if "avx512_vnni" in flags and "LFDN_CXX_HAS_AVX512VNNI:INTERNAL=1" in cache:
        tables.append("avx512")
    return tables


def test_selftest_program_on_the_host(fixtures, tmp_path):
    """The program and the fixtures on this machine's tables (every table this x86-64 CPU supports)."""
    if not shutil.which("c++") and not shutil.which("g++"):
        pytest.skip("no host C++ compiler")
    exe = _cmake_build(tmp_path / "host", [])
    proc = subprocess.run([str(exe), str(fixtures)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    tables = _tables_line(proc.stdout).split(":", 1)[1].split("(")[0].split()
    assert "scalar" in tables and len(tables) >= 1
    _check_report(proc.stdout, tables, [t for t in _host_bf16_tables(tmp_path / "host") if t in tables],
                  _host_i8_tables(tmp_path / "host"))


def _aarch64_tools() -> tuple[bool, str]:
    missing = [t for t in (CROSS_CXX, QEMU) if shutil.which(t) is None]
    if missing or not Path(SYSROOT).is_dir():
        return False, (f"{', '.join(missing) or SYSROOT} not found (Debian: apt-get install "
                       "g++-aarch64-linux-gnu qemu-user)")
    return True, ""


def test_aarch64_build_passes_every_check_under_qemu(fixtures, tmp_path):
    ok, why = _aarch64_tools()
    if not ok:
        if "aarch64" in REQUIRED:
            pytest.fail(why + " -- required by LFDN_EDGE_REQUIRE_TOOLCHAINS")
        pytest.skip(why)
    exe = _cmake_build(tmp_path / "aarch64", ["-DCMAKE_SYSTEM_NAME=Linux", "-DCMAKE_SYSTEM_PROCESSOR=aarch64",
                                               f"-DCMAKE_CXX_COMPILER={shutil.which(CROSS_CXX)}"])
    machine = subprocess.run(["file", str(exe)], capture_output=True, text=True).stdout if shutil.which("file") else ""
    assert "aarch64" in machine or not machine, machine
    # qemu-user's default CPU ("max") has the dot-product extension and I8MM: the neon table computes INT8 with smmla;
    # a Neoverse N1 (Armv8.2 + dotprod, no I8MM) with sdot; a Cortex-A72 (Armv8.0) has neither: there the neon
    # table has no INT8 entries and refuses INT8 (the sdot / smmla code is never entered). Every check each time.
    for cpu, i8_tables, features in ((None, ["scalar", "neon"], ["asimddp", "i8mm"]),
                                     ("neoverse-n1", ["scalar", "neon"], ["asimddp"]),
                                     ("cortex-a72", ["scalar"], [])):
        cmd = [QEMU, *(["-cpu", cpu] if cpu else []), "-L", SYSROOT, str(exe), str(fixtures), "--require", "neon"]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, (cpu, proc.stdout[-6000:] + proc.stderr[-2000:])
        assert _tables_line(proc.stdout) == "kernel tables: scalar neon (auto: neon)", proc.stdout
        assert "PASS kernel table neon is compiled in and supported here" in proc.stdout
        line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("cpu int8 features:"))
        assert line.split(":", 1)[1].split() == features, (cpu, line)
        _check_report(proc.stdout, ["scalar", "neon"], i8_tables=i8_tables)
        if "neon" not in i8_tables:
            assert "SKIP neon int8 ops and pass: this CPU does not report the dot-product extension" in proc.stdout

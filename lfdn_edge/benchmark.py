"""The benchmark behind ``lfdn-edge bench``: scoring backends timed in one process (throughput and latency per
batch size), their scores checked against the PyTorch reference, the machine's limits and power recorded.

    from lfdn_edge.benchmark import BenchSettings, run_benchmark
    report = run_benchmark(BenchSettings(backends=["torch", "native"], batch=[1, 64]))   # the JSON's dict

:func:`run_benchmark` returns the report (the command's --json file); the command (lfdn_edge/cli/bench.py)
parses the options into :class:`BenchSettings`, prints the progress lines and the table, and writes the file.

Backends (variants):
    torch, torch-fp32   the plain eager FP32 PyTorch reference (Reconstructor.reconstruct + score_terms, as
                   ReferenceScorer runs it): the reference implementation's way of running
    torch-fp16     the eager scoring graph (lfdn_edge.scoring_graph.ScoringGraph) at FP16: Linear layers in
                   float16, GroupNorm statistics, DDIM arithmetic and scores in float32 (what the FP16
                   engines compute), on --device
    torch-compile-fp16, torch-compile-fp16-ro   the same graph through torch.compile (default mode, and
                   mode="reduce-overhead", which uses CUDA graphs on a GPU): what a PyTorch user would pick
    native-fp16-tactics   (--device cuda) the CUDA engine once with its own choice ("native-fp16 auto": the
                   verified fastest tactic per layer and batch bucket) and once per CUDA tactic forced with
                   LFDN_EDGE_TACTIC ("native-fp16 cuda.<name>"; where that tactic does not apply to a layer or
                   bucket the engine's own choice runs there: the JSON's cuda_tactic_choices says which ran);
                   cuda.cublaslt only when libcublasLt loads. Never run on a GPU yet.
    native         the lfdn-edge C++/CUDA engine, once per --native-precision (reported as native-fp32,
                   native-fp16, native-bf16, native-int8); native-fp32 / native-fp16 / native-bf16 /
                   native-int8 name one precision (bf16: CPU with AVX512_BF16 only, BF16 weights and
                   activations, FP32 accumulation; int8: INT8 weights with per-channel scales, activations
                   quantized per row at run time, INT32 accumulation: AVX512-VNNI / AVX-VNNI / AMX-INT8 / NEON
                   dot product, refused where the CPU has none).
                   On the CPU, per --native-tactics: native-P is the engine as loaded ("auto": a verified,
                   timed CPU tactic per layer and batch bucket, docs/NATIVE.md "Tactics"), native-P-fixed the
                   engine before tactics (the fixed default blocking), native-P-ISA (isa: every usable kernel
                   table, or name one: scalar, avx2, avx512, neon) the auto choice restricted to that ISA; the
                   JSON's native_tactics records per variant the chosen tactic of every (bucket, layer).
    onnxruntime, tensorrt, ...   any registered backend (lfdn_edge.runtime.backends), built in memory with
                   lfdn_edge.builder.dispatch.build_artifact at --precision (onnxruntime with --threads
                   intra-op threads when given, else onnxruntime's default); --precision int8 with onnxruntime
                   runs the explicitly quantized Q/DQ graph (lfdn-edge's INT8 weights, static activation scales;
                   what TensorRT builds INT8 from), reported as onnxruntime-int8
    onnxruntime-int8-dynamic   the INT8 peer a CPU user reaches for: the FP32 ONNX scoring graph through
                   onnxruntime.quantization.quantize_dynamic(weight_type=QInt8, per_channel=True) (int8
                   weights per output channel; activations quantized at run time per tensor, uint8
                   asymmetric, by DynamicQuantizeLinear; MatMulInteger), run by the onnxruntime backend
                   with the same threads as onnxruntime-fp32
Without --ckpt the model is the paper-size LFDN (C=720 as EfficientNet-B4's 24+32+56+160+448, W=1440,
N=16, E=720; 86.7 M parameters) with random weights (every Linear random, the zero-initialised second
Linear of each block included, GroupNorm affine perturbed), scored with t=3, 3 DDIM steps, eta=1.
Inputs are per-stage standardised random vectors, like real features. Every backend sees the same inputs.

Timing: per batch size the backends run interleaved: warm-up calls for each, then --rounds rounds in which
every backend runs in turn (a rotated order each round) until 1/rounds of --min-reps and of --min-time are
reached, CUDA synchronised after each call, so slow drift of the machine falls on all variants alike.
items_per_s = batch * reps / total time over all rounds; p50_ms / p99_ms are percentiles of the per-call
times; round_items_per_s the items/s of each round (their spread is the run-to-run noise). Parity: scores of
a fixed batch (random standardised vectors, or with --parity-data real feature vectors of a data set) from each
backend against the torch reference (max relative error of mse, max absolute error of mfsim and of the stage
cosines). The JSON also records the machine, the load average, the commit and the date.

Roofline (--device cpu, unless --no-probe): the native core measures the machine with its own threads
(lfdn_edge._C.probe_machine: a streaming read of a 512 MiB buffer, best of 3, and the FMA peak of the widest
usable kernel table, register-only), once before and once after the timing, keeping the higher reading of
each limit (both in ``roofline.probes``), and records the active kernel table (``cpu_isa``). Every result then
gets ``achieved_gbs`` (the Linear weights one call reads: weight count x steps x bytes per weight of the
variant, over the call's time), ``achieved_gflops`` (2 x weight count x steps x batch per call; GroupNorm,
SiLU and the scores are not counted), ``bound`` (the limit that binds at that batch: whichever of bytes /
bandwidth and flops / peak takes longer; native-bf16's peak is the measured vdpbf16ps peak, probe field
``bf16_peak_gflops``, 4 flops per FP32 lane; INT8 variants read 1 byte per weight and, with no INT8 peak
probed, are held to the bandwidth limit only) and ``fraction_of_bound`` (that lower-bound time over the measured
time: 1.0 = at the limit). ``ratios_vs_onnxruntime`` compares each variant with onnxruntime-fp32 when it ran,
``ratios_vs_onnxruntime_int8`` with onnxruntime-int8-dynamic when it ran.

Power (lfdn_edge.device_power; every field null where not available, as on a machine without a Jetson or GPU):
the JSON's ``power`` records, on a Jetson, the board, the L4T release and its JetPack, the nvpmodel power mode
(id and name) and whether jetson_clocks locked the clocks; where nvidia-smi runs, per GPU its power draw and
limit and SM clocks; and the sampler used. While the timed calls run (not the warm-up), the power is sampled
every --power-interval-ms: tegrastats on a Jetson (the board's input rail, else the sum of its rails; for
every --device), NVML (pynvml, else nvidia-smi) for --device cuda elsewhere (that GPU's board power), nothing
else. Each result gets ``watts`` (the mean of the samples inside that variant's timed windows),
``power_source``, ``power_samples`` and ``items_per_joule`` = items_per_s / watts; the table then has an
items/J column. A variant needs timed windows longer than the interval to get samples.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from . import defaults, device_power
from ._version import __version__
from .checkpoint import FORMAT, FORMAT_VERSION, Checkpoint
from .diffusion import DiffusionConfig
from .errors import UnavailableError
from .features import FeatureConfig
from .model import LFDN, LFDNConfig
from .reference import ScoreConfig, score_terms

PAPER = {"stage_dims": (24, 32, 56, 160, 448), **defaults.PAPER_MODEL}
TORCH_VARIANTS = ("torch", "torch-fp32", "torch-fp16", "torch-compile-fp16", "torch-compile-fp16-ro")
NATIVE_VARIANTS = ("native", "native-fp32", "native-fp16", "native-bf16", "native-int8")
NATIVE_TACTIC_MODES = ("auto", "fixed", "isa", "scalar", "avx2", "avx512", "neon")
_NATIVE_RE = re.compile(r"^native-(fp32|fp16|bf16|int8)(?:-(fixed|scalar|avx2|avx512|neon))?$")
CUDA_TACTIC_VARIANT = "native-fp16-tactics"
ORT_INT8_DYNAMIC = "onnxruntime-int8-dynamic"
# the non-test CUDA tactics (csrc/cuda/tactics_launch.cu; checked against _C.cuda_linear_tactics in the tests)
CUDA_TACTICS = ("cuda.legacy_tile", "cuda.stream_r8", "cuda.stream_r32", "cuda.mma_m64", "cuda.mma_m32",
                "cuda.mma_splitk_m32", "cuda.cublaslt")


# ---------------------------------------------------------------------------------------------- model
def paper_checkpoint(seed: int = 0, stage_dims=PAPER["stage_dims"], width=PAPER["width"], depth=PAPER["depth"],
                     emb_dim=PAPER["emb_dim"]) -> Checkpoint:
    """An in-memory checkpoint of a randomly initialised LFDN (no training, no file)."""
    torch.manual_seed(seed)
    cfg = LFDNConfig(in_dim=sum(stage_dims), width=width, depth=depth, emb_dim=emb_dim)
    model = LFDN(cfg)
    with torch.no_grad():
        for blk in model.blocks:  # the zero-initialised Linear too, so that every block does something
            torch.nn.init.kaiming_uniform_(blk.fc2.weight, a=5 ** 0.5)
            torch.nn.init.uniform_(blk.fc2.bias, -0.02, 0.02)
            for gn in (blk.norm1, blk.norm2):
                gn.weight.add_(0.1 * torch.randn_like(gn.weight))
                gn.bias.add_(0.1 * torch.randn_like(gn.bias))
    data = {"format": FORMAT, "format_version": FORMAT_VERSION, "lfdn_edge_version": __version__,
            "feature": FeatureConfig(backbone="efficientnet-b4", input_size=380).to_dict(),
            "layout": {"stage_dims": list(stage_dims)}, "model": cfg.to_dict(),
            "diffusion": DiffusionConfig().to_dict(), "score": ScoreConfig().to_dict(),
            "ema": {k: v.clone() for k, v in model.state_dict().items()}, "calibration": None}
    return Checkpoint(data, None)


def standardised_inputs(n: int, stage_dims, seed: int) -> np.ndarray:
    """Random vectors standardised per stage (mean 0, variance 1 within each stage), like real z0."""
    rng = np.random.default_rng(seed)
    parts = []
    for d in stage_dims:
        f = rng.standard_normal((n, d)) + rng.standard_normal((n, 1))
        parts.append((f - f.mean(1, keepdims=True)) / np.sqrt(f.var(1, keepdims=True) + 1e-5))
    return np.ascontiguousarray(np.concatenate(parts, axis=1), dtype=np.float32)


# ---------------------------------------------------------------------------------------------- runners
class TorchRunner:
    """The eager FP32 reference: Reconstructor.reconstruct + score_terms on torch tensors."""

    name = "torch"

    def __init__(self, ckpt: Checkpoint, device: str):
        self.device = torch.device(device)
        self.scorer = ckpt.reference_scorer()
        self.scorer.final.model.to(self.device)
        self.layout = ckpt.layout

    def prepare(self, x: np.ndarray):
        return torch.from_numpy(x).to(self.device)

    def __call__(self, x):
        with torch.no_grad():
            t = score_terms(x, self.scorer.final.reconstruct(x), self.layout)
        return {k: t[k].float().cpu().numpy() for k in ("mse", "mfsim", "stage_cos")}


class GraphRunner:
    """The scoring graph (lfdn_edge.scoring_graph) at FP16 in eager mode or through torch.compile."""

    def __init__(self, ckpt: Checkpoint, device: str, name: str):
        from .scoring_graph import ScoringGraph

        self.name = name
        self.device = torch.device(device)
        graph = ScoringGraph(ckpt, "fp16").eval().to(self.device)
        if name == "torch-compile-fp16":
            graph = torch.compile(graph)
        elif name == "torch-compile-fp16-ro":
            graph = torch.compile(graph, mode="reduce-overhead")
        self.graph = graph

    def prepare(self, x: np.ndarray):
        return torch.from_numpy(x).to(self.device)

    def __call__(self, x):
        with torch.inference_mode():
            _, mse, mfsim, cos = self.graph(x)
        return {"mse": mse.float().cpu().numpy(), "mfsim": mfsim.float().cpu().numpy(),
                "stage_cos": cos.float().cpu().numpy()}


class BackendRunner:
    """A registered ScoringBackend (native, onnxruntime, tensorrt, ...) on an in-memory artifact.

    ``tactics``: for native CPU engines, the tactic set this runner runs ({slot: name}, None entries = the default
    blocking) and its report; ``activate()`` (called by the timing before each block of calls) puts that set on
    the engine, so that two runners can share ONE engine instance (auto and fixed): identical engines differ by a
    few percent at batch 1 with where their weights landed in memory (7 % measured with 4 KiB pages), which
    would otherwise be mistaken for the effect of the tactics."""

    def __init__(self, label: str, backend, device: str, tactic_set: dict | None = None, report=None):
        self.name = label
        self.backend = backend
        self.device = device
        self.tactic_set = tactic_set
        self.tactics = report if report is not None else getattr(backend, "tactics", None)

    def activate(self) -> None:
        if self.tactic_set is None:
            return
        from .runtime.tactic_cache import apply_choices

        apply_choices(self.backend.engine, self.tactic_set)

    def prepare(self, x: np.ndarray):
        if self.device.startswith("cuda") and self.backend.name in ("native", "torch"):
            return torch.from_numpy(x).to(self.device)
        return x

    def __call__(self, x):
        out = self.backend.run(x)
        return {"mse": _as_numpy(out.mse), "mfsim": _as_numpy(out.mfsim), "stage_cos": _as_numpy(out.stage_cos)}


def _as_numpy(a) -> np.ndarray:
    return a.float().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a, np.float32)


def native_runner(ckpt: Checkpoint, precision: str, max_batch: int, device: str, threads: int | None,
                  tactics: str = "auto"):
    """tactics: "auto" (the engine as loaded), "fixed" (the default blocking, as before tactics) or a kernel
    table name (auto selection among that ISA's tactics: the table is made active while the engine loads)."""
    from .artifact.file import EngineArtifact
    from .artifact.header import common_header
    from .builder.native_payload import build_native_artifact
    from .runtime.backends.native_backend import NativeBackend

    batch = (1, max_batch, max_batch)
    extras, payload = build_native_artifact(ckpt, precision, batch, False)
    header = {**common_header(ckpt, "native", precision, batch, False), **extras}
    art = EngineArtifact(header, payload)
    if tactics in ("auto", "fixed") or device != "cpu":
        backend = NativeBackend(art, device, threads=threads, tactics="off" if tactics == "fixed" else None)
        label = f"native-{precision}" + ("-fixed" if tactics == "fixed" else "")
        if device == "cpu":  # its own tactic set, re-applied before each timed block (see BackendRunner)
            return BackendRunner(label, backend, device, dict(backend.tactics.choices))
    else:
        from .native_core import load_native

        core = load_native()
        if tactics not in core.build_info()["cpu_kernels_usable"]:
            raise UnavailableError(f"native-{precision}-{tactics}: kernel table {tactics!r} is not usable here "
                                   f"(usable: {core.build_info()['cpu_kernels_usable']})")
        core.set_cpu_isa(tactics)
        try:
            backend = NativeBackend(art, device, threads=threads)
        finally:
            core.set_cpu_isa("auto")
        label = f"native-{precision}-{tactics}"
    return BackendRunner(label, backend, device)


def fixed_sharing(auto: BackendRunner) -> BackendRunner:
    """native-P-fixed on the SAME engine instance as native-P (auto): the default blocking in every slot, set
    before each of its timed blocks, so that auto vs fixed compares tactics only, not two memory placements."""
    from .runtime.tactic_cache import TacticReport, _slots, slot_name

    eng = auto.backend.engine
    off = {slot_name(b, k): None for b, k, _ in _slots(eng)}
    report = TacticReport("off", dict(off), fingerprint=dict(getattr(auto.tactics, "fingerprint", {})))
    return BackendRunner(f"{auto.name}-fixed", auto.backend, auto.device, off, report)


def native_tactic_modes(spec, device: str) -> list[str]:
    """--native-tactics expanded: "isa" becomes every usable kernel table (CPU only; cuda: ["auto"])."""
    if device != "cpu":
        return ["auto"]
    out = []
    for m in spec:
        if m not in NATIVE_TACTIC_MODES:
            raise ValueError(f"--native-tactics entries must be one of {NATIVE_TACTIC_MODES}, got {m!r}")
        if m == "isa":
            try:
                from .native_core import build_info

                out.extend(build_info()["cpu_kernels_usable"])
            except ImportError as exc:
                raise UnavailableError(f"--native-tactics isa needs the native core: {exc}") from exc
        else:
            out.append(m)
    return list(dict.fromkeys(out))


def _native_label(precision: str, mode: str) -> str:
    return f"native-{precision}" + ("" if mode == "auto" else f"-{mode}")


def cuda_tactic_runners(ckpt: Checkpoint, max_batch: int, device: str, log: Callable[[str], None] = print) -> list:
    """'native-fp16 auto' and one runner per CUDA tactic forced through $LFDN_EDGE_TACTIC at load (``log`` says
    which tactic did not run and why)."""
    from .native_core import load_native

    if not device.startswith("cuda"):
        raise ValueError(f"{CUDA_TACTIC_VARIANT} needs --device cuda")
    C = load_native()
    runners = []
    auto = native_runner(ckpt, "fp16", max_batch, device, None)
    auto.name = "native-fp16 auto"
    runners.append(auto)
    saved = os.environ.get("LFDN_EDGE_TACTIC")
    try:
        for t in CUDA_TACTICS:
            if t == "cuda.cublaslt" and not C.cublaslt_available():
                log(f"{t}: not run ({C.cublaslt_info()})")
                continue
            os.environ["LFDN_EDGE_TACTIC"] = t
            r = native_runner(ckpt, "fp16", max_batch, device, None)
            r.name = f"native-fp16 {t}"
            runners.append(r)
    finally:
        if saved is None:
            os.environ.pop("LFDN_EDGE_TACTIC", None)
        else:
            os.environ["LFDN_EDGE_TACTIC"] = saved
    return runners


def registry_runner(ckpt: Checkpoint, name: str, precision: str, max_batch: int, device: str,
                    threads: int | None = None):
    from .builder.dispatch import build_artifact
    from .runtime.backends import PAYLOAD_RUNTIME, canonical_name, load_backend

    runtime = canonical_name(name)
    payload_kind = {v: k for k, v in PAYLOAD_RUNTIME.items()}[runtime]
    cls = load_backend(runtime)
    ok, why = cls.available()
    if not ok:
        raise UnavailableError(f"backend {runtime!r} cannot run here: {why}")
    art = build_artifact(ckpt, payload_kind, precision, (1, max_batch, max_batch))
    kwargs = {"threads": threads} if runtime == "onnxruntime" and threads is not None else {}
    return BackendRunner(f"{runtime}-{precision}", cls(art, device, **kwargs), device)


ORT_QUANTIZE_SETTINGS = {"function": "onnxruntime.quantization.quantize_dynamic", "weight_type": "QInt8",
                         "per_channel": True}


def ort_int8_dynamic_artifact(ckpt: Checkpoint, batch: tuple[int, int, int]):
    """The onnx FP32 artifact of ``ckpt`` with its payload replaced by onnxruntime's dynamic INT8 quantization
    (quantize_dynamic, QInt8 weights per output channel), quantized in a temporary directory. The header
    records what was done (``precision`` "int8", ``int8`` {method, weights, activations, onnxruntime}).

    Raises UnavailableError when onnxruntime.quantization cannot be imported (it ships with onnxruntime and
    needs the onnx package)."""
    import logging
    import tempfile

    try:
        import onnxruntime
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError as exc:
        raise UnavailableError(f"{ORT_INT8_DYNAMIC} needs onnxruntime.quantization, which cannot be imported here "
                               f"({exc}); pip install onnxruntime onnx") from exc
    from .artifact.file import EngineArtifact
    from .builder.dispatch import build_artifact

    art = build_artifact(ckpt, "onnx", "fp32", batch)
    with tempfile.TemporaryDirectory(prefix="lfdn-ort-int8-") as tmp:
        src, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "int8-dynamic.onnx"
        src.write_bytes(art.payload)
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # quantize_dynamic's advice to run its pre-processing (shape inference)
        try:
            quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True)
        finally:
            root.setLevel(level)
        payload = dst.read_bytes()
    header = dict(art.header)
    header["precision"] = "int8"
    header["int8"] = {"method": ORT_INT8_DYNAMIC, **ORT_QUANTIZE_SETTINGS,
                      "weights": "int8 symmetric per output channel (onnxruntime's own rounding)",
                      "activations": "dynamic per tensor per call, uint8 asymmetric (DynamicQuantizeLinear)",
                      "onnxruntime": onnxruntime.__version__}
    return EngineArtifact(header, payload, None)


def ort_int8_dynamic_runner(ckpt: Checkpoint, max_batch: int, device: str, threads: int | None):
    from .runtime.backends.onnxruntime_backend import OnnxRuntimeBackend

    ok, why = OnnxRuntimeBackend.available()
    if not ok:
        raise UnavailableError(f"{ORT_INT8_DYNAMIC} cannot run here: {why}")
    art = ort_int8_dynamic_artifact(ckpt, (1, max_batch, max_batch))
    return BackendRunner(ORT_INT8_DYNAMIC, OnnxRuntimeBackend(art, device, threads=threads), device)


def variant_names(names, native_precisions, precision, tactic_modes=("auto",)) -> list[str]:
    """The runner names that ``names`` expands to (what --dry-run prints), in order."""
    out = []
    for name in names:
        if name in ("torch", "torch-fp32"):
            out.append("torch")
        elif name in TORCH_VARIANTS:
            out.append(name)
        elif name == "native":
            out.extend(_native_label(p, m) for p in native_precisions for m in tactic_modes)
        elif name == CUDA_TACTIC_VARIANT:
            out.append("native-fp16 auto")
            out.extend(f"native-fp16 {t}" for t in CUDA_TACTICS)
        elif name in NATIVE_VARIANTS or _NATIVE_RE.match(name) or name == ORT_INT8_DYNAMIC:
            out.append(name)
        else:
            from .runtime.backends import canonical_name

            out.append(f"{canonical_name(name)}-{precision}")
    if len(set(out)) != len(out):
        raise ValueError(f"--backends names a variant twice: {out}")
    return out


def make_runners(ckpt, names, native_precisions, precision, max_batch, device, threads, tactic_modes=("auto",),
                 log: Callable[[str], None] = print):
    runners = []
    for name in names:
        if name in ("torch", "torch-fp32"):
            runners.append(TorchRunner(ckpt, device))
        elif name in TORCH_VARIANTS:
            runners.append(GraphRunner(ckpt, device, name))
        elif name == "native":
            for p in native_precisions:
                made = {}
                for m in tactic_modes:
                    if m == "fixed" and "auto" in made and device == "cpu":
                        made[m] = fixed_sharing(made["auto"])
                    else:
                        made[m] = native_runner(ckpt, p, max_batch, device, threads, m)
                    runners.append(made[m])
        elif name == CUDA_TACTIC_VARIANT:
            runners.extend(cuda_tactic_runners(ckpt, max_batch, device, log))
        elif _NATIVE_RE.match(name):
            mt = _NATIVE_RE.match(name)
            runners.append(native_runner(ckpt, mt.group(1), max_batch, device, threads, mt.group(2) or "auto"))
        elif name == ORT_INT8_DYNAMIC:
            runners.append(ort_int8_dynamic_runner(ckpt, max_batch, device, threads))
        else:
            runners.append(registry_runner(ckpt, name, precision, max_batch, device, threads))
    return runners


# ---------------------------------------------------------------------------------------------- timing
def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _timed_calls(runner, xin, device: str, min_reps: int, min_time: float, max_reps: int) -> list[float]:
    times = []
    start = time.perf_counter()
    while len(times) < max_reps and (len(times) < min_reps or time.perf_counter() - start < min_time):
        t0 = time.perf_counter()
        runner(xin)
        _sync(device)
        times.append(time.perf_counter() - t0)
    return times


def _activate(runner) -> bool:
    """Put the runner's own state (a shared engine's tactic set) in place; True when it has one."""
    act = getattr(runner, "activate", None)
    if act is None or getattr(runner, "tactic_set", None) is None:
        return False
    act()
    return True


def time_interleaved(runners, x, device: str, warmup: int, min_reps: int, min_time: float, max_reps: int,
                     rounds: int = 1, power=None) -> list[dict]:
    """Time every runner on ``x`` in ``rounds`` interleaved rounds: each runner gets its warm-up calls once,
    then per round 1/rounds of the repetitions and of --min-time, the runners in a rotated order each round
    (so slow drift of the machine, clocks or load falls on every variant alike). One result per runner, in
    the order given: items_per_s over all its timed calls, p50/p99 of the per-call times, and the items/s of
    each round (``round_items_per_s``: their spread shows the run-to-run noise). ``power``: a
    device_power.PowerSampler, running during the rounds only, each runner's timed calls a window of its own
    (adds watts / power_source / power_samples / items_per_joule; all None without one)."""
    if rounds < 1:
        raise ValueError(f"--rounds must be >= 1, got {rounds}")
    xin = [r.prepare(x) for r in runners]
    for r, xi in zip(runners, xin):
        _activate(r)
        for _ in range(warmup):
            r(xi)
    _sync(device)
    n = x.shape[0]
    per = [[] for _ in runners]
    rps = [[] for _ in runners]
    reps_round = max(1, -(-min_reps // rounds))
    max_round = max(1, max_reps // rounds)
    power = power if power is not None else device_power.NoPowerSampler()
    with power:
        for k in range(rounds):
            for j in [(i + k) % len(runners) for i in range(len(runners))]:
                if _activate(runners[j]) and warmup:  # one untimed call after switching the tactic set
                    runners[j](xin[j])
                with power.window(j):
                    t = _timed_calls(runners[j], xin[j], device, reps_round, min_time / rounds, max_round)
                per[j].extend(t)
                rps[j].append(n * len(t) / sum(t))
    out = []
    for j, (r, times, rr) in enumerate(zip(runners, per, rps)):
        ms = np.asarray(times) * 1e3
        ips = float(n * len(times) / (ms.sum() / 1e3))
        out.append({"backend": r.name, "batch": int(n), "items_per_s": ips,
                    "p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
                    "reps": len(times), "round_items_per_s": [float(v) for v in rr], **power.fields(j, ips)})
    return out


def time_runner(runner, x, device: str, warmup: int, min_reps: int, min_time: float, max_reps: int) -> dict:
    """One runner alone (one round)."""
    return time_interleaved([runner], x, device, warmup, min_reps, min_time, max_reps)[0]


def chunked(runner, x: np.ndarray, max_batch: int) -> dict:
    """The runner's outputs for ``x``, in calls of at most ``max_batch`` items."""
    _activate(runner)
    parts = [runner(runner.prepare(x[s:s + max_batch])) for s in range(0, len(x), max_batch)]
    return {k: np.concatenate([p[k] for p in parts]) for k in ("mse", "mfsim", "stage_cos")}


def real_feature_inputs(ckpt: Checkpoint, spec: str, per_set: int, cache_dir, progress: bool) -> np.ndarray:
    """Real feature vectors for the parity check: up to ``per_set`` of the ID test split of ``spec`` and of each
    of its OOD sets (fmnist-ood: all seven), through the feature cache, with the checkpoint's backbone."""
    from .feature_cache import cached_features
    from .features import MultiLayerFeatures
    from .workflow import checkpoint_benchmark

    bench = checkpoint_benchmark(ckpt, spec, n_test=per_set, n_ood=per_set, progress=progress)
    extractor = MultiLayerFeatures(ckpt.feature_config)
    sets = [bench.test, *bench.ood.values()]
    feats = [cached_features(extractor, s.images, cache_dir, desc=f"features: {s.name}", progress=progress)
             for s in sets]
    return np.ascontiguousarray(np.concatenate(feats), dtype=np.float32)


def parity(runner, ref: dict, x, max_batch: int) -> dict:
    got = chunked(runner, x, max_batch)
    rel = np.abs(got["mse"] - ref["mse"]) / np.maximum(np.abs(ref["mse"]), 1e-30)
    d_mfsim = np.abs(got["mfsim"] - ref["mfsim"])
    # mfsim_max_rel_err is per item (large where a score is near 0, as for random weights);
    # mfsim_norm_rel_err = max error / max |score| is the error relative to the scores' scale.
    return {"mse_max_rel_err": float(rel.max()),
            "mfsim_max_abs_err": float(d_mfsim.max()),
            "mfsim_max_rel_err": float((d_mfsim / np.maximum(np.abs(ref["mfsim"]), 1e-30)).max()),
            "mfsim_norm_rel_err": float(d_mfsim.max() / max(float(np.abs(ref["mfsim"]).max()), 1e-30)),
            "stage_cos_max_abs_err": float(np.abs(got["stage_cos"] - ref["stage_cos"]).max())}


# ---------------------------------------------------------------------------------------------- report
def machine_info(device: str) -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": cpu, "logical_cpus": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "numpy": np.__version__, "lfdn_edge": __version__}
    try:
        from .native_core import build_info

        info["native_build"] = build_info()
    except ImportError:
        info["native_build"] = None
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def git_commit() -> dict:
    root = Path(__file__).resolve().parents[1]  # the source checkout (lfdn_edge/..)
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                                    capture_output=True, text=True, check=True).stdout.strip())
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": None}
    return {"commit": head, "dirty": dirty}


def weight_bytes_per_param(variant: str) -> int:
    """Bytes per Linear weight a variant reads: 1 for INT8 storage (onnxruntime-int8-dynamic, native-int8), 2 for
    FP16/BF16 storage (native-fp16[-fixed/-ISA], native-bf16, onnxruntime-fp16, torch-fp16 graphs), else 4."""
    parts = variant.split("-")
    if "int8" in parts:
        return 1
    return 2 if "fp16" in parts or "bf16" in parts else 4


def linear_weight_count(cfg) -> int:
    """Weights of the Linear layers one model evaluation multiplies by (inp, fc1/fc2 per block, out); the
    timestep-embedding MLP is folded into biases by the engines, so it is not counted."""
    return cfg.in_dim * cfg.width + 2 * cfg.depth * cfg.width * cfg.width + cfg.width * cfg.in_dim


PROBE_LIMITS = ("read_bandwidth_gbs", "fma_peak_gflops", "bf16_peak_gflops", "int8_peak_gops",
                "int8_tile_peak_gops")


def best_probe(before: dict, after: dict) -> dict:
    """The machine's limits from two probes (before and after the timing): the higher reading of each limit.

    Each probe is a best-of-3 of a register-only (or streaming) loop, so load from elsewhere only lowers it; on
    a shared VM one probe read 117 GFLOPS where the other read 214 (2026-12-02), and the lower one made
    fraction_of_bound > 1. Both readings stay in the JSON (``probes``)."""
    out = dict(before)
    for k in PROBE_LIMITS:
        vals = [float(p[k]) for p in (before, after) if p.get(k) is not None]
        if vals:
            out[k] = max(vals)
    out["probes"] = [{k: before.get(k) for k in PROBE_LIMITS}, {k: after.get(k) for k in PROBE_LIMITS}]
    return out


def roofline(results: list[dict], probe: dict, weights: int, steps: int) -> dict:
    """Adds achieved_gbs / achieved_gflops / bound / fraction_of_bound to each result (see the module doc) and
    returns {variant: {batch: fraction_of_bound}}."""
    bw, peak = probe["read_bandwidth_gbs"] * 1e9, probe["fma_peak_gflops"] * 1e9
    bf16_peak = float(probe.get("bf16_peak_gflops") or 0.0) * 1e9
    # INT8: the highest probed INT8 peak (AMX tiles where usable, else the vector dot product): the limit of the
    # fastest INT8 kernel this machine has, whichever tactic an engine picked per bucket
    int8_peak = max(float(probe.get("int8_peak_gops") or 0.0), float(probe.get("int8_tile_peak_gops") or 0.0)) * 1e9
    out: dict = {}
    for r in results:
        # native-bf16 multiplies with vdpbf16ps: its compute limit is the measured BF16 dot-product peak
        peak_r = bf16_peak if "bf16" in r["backend"].split("-") and bf16_peak > 0 else peak
        int8 = "int8" in r["backend"].split("-")
        if int8:
            peak_r = int8_peak
        calls_per_s = r["items_per_s"] / r["batch"]
        nbytes = weights * steps * weight_bytes_per_param(r["backend"])
        flops = 2.0 * weights * steps * r["batch"]
        # INT8 variants without a probed INT8 peak: only the bandwidth limit is known for them
        t_bw, t_fl = nbytes / bw, (0.0 if int8 and peak_r <= 0 else flops / peak_r)
        r["achieved_gbs"] = round(nbytes * calls_per_s / 1e9, 2)
        r["achieved_gflops"] = round(flops * calls_per_s / 1e9, 1)
        r["bound"] = ("bandwidth (no INT8 peak probed)" if int8 and peak_r <= 0
                      else "bandwidth" if t_bw >= t_fl else "compute")
        r["fraction_of_bound"] = round(max(t_bw, t_fl) * calls_per_s, 3)
        out.setdefault(r["backend"], {})[str(r["batch"])] = r["fraction_of_bound"]
    return out


def native_tactic_report(runners) -> dict:
    """Per native CPU variant: its ISA, how its tactics came (selected / memo / cache / forced / off), the tactic
    of every (bucket, layer kind) ("b2.block": None = the default blocking), the selection time, rejections,
    and the whole-pass checks (per bucket: selected vs default pass time, kept or reverted)."""
    out = {}
    for r in runners:
        rep = getattr(r, "tactics", None)
        if rep is None or getattr(getattr(r, "backend", None), "name", "") != "native":
            continue
        eng = r.backend.engine
        out[r.name] = {"isa": eng.isa, "source": rep.source, "selection_s": round(rep.seconds, 3),
                       "choices": dict(rep.choices), "rejected": list(rep.rejected),
                       "pass_checks": {b: {k: v for k, v in c.items() if k != "samples"}
                                       for b, c in getattr(rep, "pass_checks", {}).items()},
                       "bucket_bounds": [int(eng.tactic_problem(b, 0)["bucket_bound"]) for b in range(eng.num_buckets)]}
    return out


def ratios_vs(results: list[dict], base: str) -> dict:
    """{variant: {batch: items/s over base's items/s at that batch}} for every other variant (batches base ran)."""
    ref = {r["batch"]: r["items_per_s"] for r in results if r["backend"] == base}
    out: dict = {}
    for r in results:
        if r["backend"] != base and r["batch"] in ref:
            out.setdefault(r["backend"], {})[str(r["batch"])] = round(r["items_per_s"] / ref[r["batch"]], 3)
    return out


def auto_vs_fixed(results: list[dict]) -> dict:
    """{precision: {batch: items/s of native-P over native-P-fixed}} where both ran."""
    by = {(r["backend"], r["batch"]): r["items_per_s"] for r in results}
    out: dict = {}
    for (name, b), v in by.items():
        m = _NATIVE_RE.match(name)
        if m and m.group(2) is None and (f"{name}-fixed", b) in by:
            out.setdefault(m.group(1), {})[str(b)] = round(v / by[(f"{name}-fixed", b)], 3)
    return out




# ---------------------------------------------------------------------------------------------- the run
@dataclass
class BenchSettings:
    """What one benchmark run measures (the options of ``lfdn-edge bench``, same names and defaults; ``progress``
    is the opposite of --quiet, ``probe`` of --no-probe)."""

    ckpt: Optional[str] = None  # checkpoint path; None: the paper-size random model
    backends: list = field(default_factory=lambda: ["torch", "native"])
    batch: list = field(default_factory=lambda: list(defaults.BENCH_BATCHES))
    device: str = "cpu"
    native_precision: Optional[list] = None  # None: fp32,fp16 on cpu, fp16 on cuda
    native_tactics: list = field(default_factory=lambda: ["auto", "fixed"])
    precision: str = "fp32"  # of the registry backends
    threads: Optional[int] = None
    warmup: int = 2
    min_reps: int = 5
    min_time: float = 2.0
    max_reps: int = 1000
    rounds: int = 3
    parity_batch: int = 64
    parity_data: Optional[str] = None
    cache_dir: Optional[str] = None
    progress: bool = True
    seed: int = 0
    probe: bool = True
    power_interval_ms: int = device_power.DEFAULT_INTERVAL_MS

    def native_precisions(self) -> list:
        return list(self.native_precision or (["fp32", "fp16"] if self.device == "cpu" else ["fp16"]))

    def check(self) -> None:
        """Raise ValueError for a setting that can never run (before anything is built)."""
        if self.device != "cpu" and not self.device.startswith("cuda"):
            raise ValueError(f"--device must be cpu or cuda[:N], got {self.device!r}")
        if not self.batch or min(self.batch) < 1:
            raise ValueError("batch sizes must be >= 1")
        if self.parity_data and not self.ckpt:
            raise ValueError("--parity-data needs --ckpt: real features come with a trained checkpoint's backbone")
        for value, option in ((self.max_reps, "--max-reps"), (self.min_reps, "--min-reps"), (self.rounds, "--rounds")):
            if value < 1:
                raise ValueError(f"{option} must be >= 1, got {value}")
        if self.power_interval_ms < 0:
            raise ValueError("--power-interval-ms must be >= 0 (0: no power sampling)")
        if self.warmup < 0 or self.min_time < 0 or self.parity_batch < 0:
            raise ValueError("--warmup, --min-time and --parity-batch must be >= 0")
        if self.threads is not None and self.threads < 1:
            raise ValueError("--threads must be >= 1")
        for prec in self.native_precisions():
            if prec not in ("fp32", "fp16", "bf16", "int8"):
                raise ValueError(f"--native-precision entries must be fp32, fp16, bf16 or int8, got {prec!r}")

    def tactic_modes(self) -> list:
        return native_tactic_modes(self.native_tactics, self.device)

    def variants(self) -> list:
        """The variants this run times, in order (what --dry-run prints); checks the settings first."""
        self.check()
        return variant_names(self.backends, self.native_precisions(), self.precision, self.tactic_modes())


def _loadavg():
    return os.getloadavg() if hasattr(os, "getloadavg") else None


def run_benchmark(settings: BenchSettings, log: Callable[[str], None] = print) -> dict:
    """Build every variant of ``settings``, check its scores against the torch reference, time all of them per
    batch size (interleaved rounds, power sampled where a source exists) and return the report (the JSON of
    ``lfdn-edge bench --json``: results, ratios, parity, roofline, power, model, machine, commit, date).
    ``log`` receives the progress lines (tactic choices, model, machine limits, parity, one line per result)."""
    s = settings
    s.check()
    if s.device.startswith("cuda") and not torch.cuda.is_available():
        raise UnavailableError("--device cuda needs a CUDA build of torch and a GPU")
    if s.threads is not None:
        torch.set_num_threads(s.threads)
    native_prec = s.native_precisions()
    tactic_modes = s.tactic_modes()
    variant_names(s.backends, native_prec, s.precision, tactic_modes)  # a variant named twice fails here
    ckpt = Checkpoint.load(s.ckpt) if s.ckpt else paper_checkpoint(s.seed)
    cfg, layout = ckpt.model_config, ckpt.layout
    max_batch = max(max(s.batch), s.parity_batch)
    runners = make_runners(ckpt, s.backends, native_prec, s.precision, max_batch, s.device, s.threads, tactic_modes,
                           log)
    native_tactics = native_tactic_report(runners)
    for name, t in native_tactics.items():
        log(f"tactics {name:<18} isa {t['isa']:<7} {t['source']:<8} ({t['selection_s']:.1f} s): "
            + ", ".join(f"{k} {v}" for k, v in t["choices"].items()))
        for b, c in t["pass_checks"].items():
            log(f"  whole-pass check {b} ({c['rows']} rows): per-layer choices {c['speedup']:.3f}x the default "
                f"blocking -> {'kept' if c['kept'] else 'reverted to the default'}")
    model_info = {**cfg.to_dict(), "stage_dims": list(layout.stage_dims),
                  "parameters": sum(t.numel() for t in ckpt.data["ema"].values()),
                  "source": s.ckpt or "random paper-size", "score": ckpt.score_config.to_dict()}
    log(f"model: C={cfg.in_dim} W={cfg.width} N={cfg.depth} E={cfg.emb_dim} "
        f"({model_info['parameters'] / 1e6:.1f} M params, {model_info['source']}); device {s.device}; "
        f"backends {[r.name for r in runners]}")
    load_before = _loadavg()
    probe, core = None, None
    if s.device == "cpu" and s.probe:
        try:
            from .native_core import load_native

            core = load_native()
        except ImportError:
            core = None
        if core is not None:
            probe = core.probe_machine(threads=s.threads or 0)
            probe["cpu_isa"] = core.cpu_isa()
            log(f"machine: read bandwidth {probe['read_bandwidth_gbs']:.1f} GB/s, FMA peak "
                f"{probe['fma_peak_gflops']:.0f} GFLOPS ({probe['fma_isa']}, {probe['threads']} threads), "
                f"BF16 dot-product peak {probe.get('bf16_peak_gflops', 0.0):.0f} GFLOPS, INT8 "
                f"{probe.get('int8_peak_gops', 0.0):.0f} GOPS (tiles {probe.get('int8_tile_peak_gops', 0.0):.0f}); "
                f"native kernels {probe['cpu_isa']}")

    par = {}
    parity_source = None
    if s.parity_batch > 0:
        if s.parity_data:
            x = real_feature_inputs(ckpt, s.parity_data, s.parity_batch, s.cache_dir, s.progress)
            parity_source = f"{s.parity_data}: {len(x)} real feature vectors (ID test split and OOD sets)"
        else:
            x = standardised_inputs(s.parity_batch, layout.stage_dims, s.seed + 1)
            parity_source = f"{len(x)} standardised random vectors"
        log(f"parity inputs: {parity_source}")
        torch_ref = next((r for r in runners if r.name == "torch"), None) or TorchRunner(ckpt, s.device)
        ref = chunked(torch_ref, x, max_batch)
        for r in runners:
            if r.name != "torch":
                par[r.name] = parity(r, ref, x, max_batch)
                log(f"parity {r.name:<14} " + "  ".join(f"{k} {v:.2e}" for k, v in par[r.name].items()))

    power_env = device_power.power_environment()
    sampler = device_power.power_sampler(s.device, s.power_interval_ms, power_env)
    log(f"power: {device_power.describe(power_env, sampler)}")
    results = []
    for b in s.batch:
        x = standardised_inputs(b, layout.stage_dims, s.seed + 2)
        for res in time_interleaved(runners, x, s.device, s.warmup, s.min_reps, s.min_time, s.max_reps, s.rounds,
                                    power=sampler):
            results.append(res)
            watts = (f"  {res['watts']:.2f} W, {res['items_per_joule']:.1f} items/J"
                     if res["items_per_joule"] is not None else "")
            log(f"  {res['backend']:<14} batch {b:>4}: {res['items_per_s']:9.1f} items/s  "
                f"p50 {res['p50_ms']:8.2f} ms  p99 {res['p99_ms']:8.2f} ms  ({res['reps']} reps){watts}")
    ratios: dict = {}
    ref_tp = {r["batch"]: r["items_per_s"] for r in results if r["backend"] == "torch"}
    for r in results:
        if r["backend"] != "torch" and r["batch"] in ref_tp:
            ratios.setdefault(r["backend"], {})[str(r["batch"])] = round(r["items_per_s"] / ref_tp[r["batch"]], 3)
    extra: dict = {}
    for base, key in (("onnxruntime-fp32", "ratios_vs_onnxruntime"), (ORT_INT8_DYNAMIC, "ratios_vs_onnxruntime_int8")):
        if any(r["backend"] == base for r in results):
            extra[key] = ratios_vs(results, base)
    if native_tactics:
        extra["native_tactics"] = native_tactics
        extra["ratios_auto_vs_fixed"] = auto_vs_fixed(results)
    cuda_choices = {r.name: dict(r.backend.tactics.choices) for r in runners
                    if isinstance(r, BackendRunner) and r.device.startswith("cuda")
                    and getattr(r.backend, "tactics", None) is not None}
    if cuda_choices:  # which CUDA tactic ran per (bucket, layer key), per runner
        extra["cuda_tactic_choices"] = cuda_choices
    if probe is not None and core is not None:
        probe = best_probe(probe, core.probe_machine(threads=s.threads or 0))
        weights = linear_weight_count(cfg)
        steps = int(ckpt.score_config.steps)
        extra["cpu_isa"] = probe["cpu_isa"]
        extra["roofline"] = {**probe, "linear_weights": weights, "steps": steps,
                             "fraction_of_bound": roofline(results, probe, weights, steps)}
    return {"device": s.device, "results": results, "ratios_vs_torch": ratios, **extra,
            "power": {**power_env, "source": sampler.source, "interval_ms": sampler.interval_ms,
                      "error": sampler.error},
            "parity_vs_torch": par,
            "parity_inputs": parity_source,
            "model": model_info, "machine": machine_info(s.device), **git_commit(),
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "loadavg_before": load_before,
            "loadavg_after": _loadavg(),
            "settings": {k: getattr(s, k) for k in ("warmup", "min_reps", "min_time", "max_reps", "rounds",
                                                    "parity_batch", "seed", "threads", "precision")}
            | {"native_precision": native_prec, "native_tactics": tactic_modes, "backends": s.backends,
               "batch": s.batch}}

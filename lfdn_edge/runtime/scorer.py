"""Scorer: load an engine artifact (or a checkpoint) and score batches with the matching backend.

    scorer = lfdn_edge.Scorer("ckpt.onnx.fp32.engine")      # or Scorer("ckpt.pt") for the PyTorch graph
    s = scorer.score(features)        # (N,) float32, higher = more out-of-distribution
    flags = scorer.is_ood(features)   # s > threshold (the calibrated one, or scorer.threshold = ...)
    terms = scorer.explain(features)  # score, mse, mfsim, stage_cos (N, M), threshold, is_ood

Inputs: features (N, C) floating point (converted to float32), or, for engines that include the backbone,
frames (N, H, W, 3) uint8 RGB at the engine's frame size. numpy (or lists) in -> numpy out; torch in -> torch
out on the input's device. Rejected with ValueError/TypeError: wrong shape, empty batch, NaN/Inf, values above
MAX_ABS_FEATURE (1e6; standardised features stay below about 21), wrong dtype. Any strides are accepted.

Batch range [min, max] of the engine (TensorRT needs it; the others record it): with the default
``batch_policy="split"`` a batch larger than max is scored in chunks of at most max items, and a batch
smaller than min is padded by repeating its last item (the padding is dropped from the result). Both are
exact: the noise is the same vector for every item, so an item's score does not depend on its batch.
``batch_policy="strict"`` raises ValueError for a batch outside [min, max] instead.

Threads: one Scorer may be used from several threads at once and gives the same scores as from one thread
(tests/test_reliability_concurrency.py). Backends whose class says ``thread_safe = True`` (torch: inference
on a frozen module; onnxruntime: ``InferenceSession.run`` is thread-safe; tensorrt: its own lock around the one
execution context) run concurrently; any other backend (the native one, whose C++ engines serialise with
their own mutex anyway, and any backend added later) is serialised by a lock of the Scorer around
``backend.run``. Validation, chunking and conversion run outside the lock.

``threads=N`` sets the CPU thread count of the native engine or the onnxruntime session (default: the native
engine's own default, all cores or $LFDN_EDGE_NUM_THREADS; onnxruntime's default). ``tactics="off"`` keeps a
native CPU engine's fixed default blocking instead of the verified, timed per-layer choice made at load (and
cached beside the engine file; lfdn_edge.runtime.tactic_cache); default "auto" ($LFDN_EDGE_TACTICS).

Which backend runs an artifact follows from its payload: TensorRT plan -> "tensorrt", native weights ->
"native", ONNX -> "onnxruntime", checkpoint tensors -> "torch" (``backend="auto"``). Naming another backend
is an error that says which one to use. A checkpoint path (or Checkpoint) runs the PyTorch reference graph;
``Scorer.from_checkpoint(path, include_backbone=..., precision=...)`` sets its options; other backends need an engine
(``lfdn-edge build``, or ``lfdn_edge.build_artifact`` in memory).
"""

from __future__ import annotations

import math
import os
import threading
from pathlib import Path
from typing import Any, Optional, Union, overload

import numpy as np
import numpy.typing as npt
import torch

from ..artifact.file import EngineArtifact, EngineError, read_engine
from ..artifact.header import engine_header
from ..checkpoint import Checkpoint, CheckpointError
from ..file_kinds import CHECKPOINT, file_kind
from ..reference import check_features
from .backends import PAYLOAD_RUNTIME, canonical_name, load_backend
from ..errors import UnavailableError

BATCH_POLICIES = ("split", "strict")
THREADED_BACKENDS = ("native", "onnxruntime")  # backends with their own CPU thread count (threads=)
CHECKPOINT_BATCH = (1, 256, 4096)  # batch range of a Scorer made directly from a checkpoint (chunk size 4096)
# Features are standardised per stage (|z| <= sqrt(stage size), about 21 for the largest stage), so a value far
# above this is not a feature vector; above about 1e19 the backends overflowed differently (inf, NaN or a finite
# MFsim: tests/test_reliability_fuzz.py), so the scores would depend on the backend.
MAX_ABS_FEATURE = 1e6

# What a Scorer loads (typing only)
EngineSource = Union[EngineArtifact, Checkpoint, str, "os.PathLike[str]"]


def _finite_threshold(value: float) -> float:
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"threshold must be a finite number, got {value!r}")
    return v


def load_artifact(source: EngineSource) -> EngineArtifact:
    """An EngineArtifact from an artifact, an engine file, a Checkpoint or a checkpoint file (a checkpoint
    becomes an in-memory "torch" artifact: the FP32 PyTorch graph on features; see Scorer.from_checkpoint)."""
    if isinstance(source, EngineArtifact):
        return source
    if isinstance(source, Checkpoint):
        return checkpoint_artifact(source)
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"expected an engine path, an EngineArtifact or a Checkpoint, got {type(source).__name__}")
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"no such engine or checkpoint file: {path}")
    if file_kind(path) == CHECKPOINT:
        try:
            ckpt = Checkpoint.load(path)
        except CheckpointError as exc:
            raise EngineError(f"{path} is neither an lfdn-edge engine nor an lfdn-edge checkpoint: {exc}") from exc
        return checkpoint_artifact(ckpt)
    return read_engine(path)


def checkpoint_artifact(ckpt: Checkpoint, batch: tuple[int, int, int] = CHECKPOINT_BATCH,
                        include_backbone: bool = False, precision: str = "fp32",
                        image_size: tuple[int, int] | None = None) -> EngineArtifact:
    """The in-memory "torch" artifact of a checkpoint: the PyTorch scoring graph (features, or frames with
    ``include_backbone``) at ``precision``; nothing is serialised, the backend takes the Checkpoint itself."""
    header = engine_header(ckpt, "torch", precision, batch, include_backbone, image_size=image_size)
    return EngineArtifact(header, b"", ckpt.path, checkpoint=ckpt)


def _check_header(h: dict, src: str) -> None:
    try:
        lo, hi = int(h["batch"]["min"]), int(h["batch"]["max"])
        stage_dims = [int(d) for d in h["layout"]["stage_dims"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise EngineError(f"{src}: malformed engine header ({exc}); rebuild the engine") from exc
    if not 1 <= lo <= hi or not stage_dims or min(stage_dims) < 1:
        raise EngineError(f"{src}: malformed engine header (batch {h['batch']}, layout {h['layout']})")
    # the entries the Scorer itself reads (a header whose checksum was forged must still fail clearly)
    thresholds = h.get("thresholds")
    numbers = (int, float)
    if not isinstance(h.get("score_type"), str) or \
            not (thresholds is None or (isinstance(thresholds, dict) and
                                        all(v is None or isinstance(v, numbers) for v in thresholds.values()))) or \
            not (h.get("threshold") is None or isinstance(h.get("threshold"), numbers)):
        raise EngineError(f"{src}: malformed engine header (score_type {h.get('score_type')!r}, thresholds "
                          f"{thresholds!r:.80}, threshold {h.get('threshold')!r:.40}); rebuild the engine")
    if h.get("includes_backbone"):
        size = h.get("image_size") or [(h.get("feature") or {}).get("input_size")] * 2
        if not (isinstance(size, list) and len(size) == 2 and
                all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in size)):
            raise EngineError(f"{src}: malformed engine header (image size {size!r:.60}); rebuild the engine")
    if h.get("backend") not in PAYLOAD_RUNTIME:
        raise EngineError(f"{src}: unknown engine payload {h.get('backend')!r} (known: {list(PAYLOAD_RUNTIME)})")


def _is_torch(x: object) -> bool:
    return isinstance(x, torch.Tensor)


class Scorer:
    """Score feature vectors or frames with an engine artifact. See the module docstring."""

    def __init__(self, engine_or_path: EngineSource, backend: str = "auto", device: str | None = None, *,
                 threshold: float | None = None, score_type: str | None = None, batch_policy: str = "split",
                 threads: int | None = None, tactics: str | None = None) -> None:
        self.artifact = load_artifact(engine_or_path)
        h = self.artifact.header
        src = str(self.artifact.path or "engine")
        _check_header(h, src)
        if batch_policy not in BATCH_POLICIES:
            raise ValueError(f"batch_policy must be one of {BATCH_POLICIES}, got {batch_policy!r}")
        self.batch_policy = batch_policy
        runtime = PAYLOAD_RUNTIME[h["backend"]]
        name = runtime if backend == "auto" else canonical_name(backend)
        if name != runtime:
            kind = {v: k for k, v in PAYLOAD_RUNTIME.items()}[name]
            hint = (f"build one: `lfdn-edge build CKPT --backend {kind}` (a file), or in memory "
                    f"Scorer(lfdn_edge.build_artifact(ckpt, {kind!r}))" if h["backend"] == "torch"
                    else f"build another engine: `lfdn-edge build CKPT --backend {kind}`")
            raise ValueError(f"{src} holds a {h['backend']!r} payload, which only the {runtime!r} backend runs "
                             f"(asked for {name!r}); use backend='auto', or {hint}")
        cls = load_backend(name)
        ok, why = cls.available()
        if not ok:
            raise UnavailableError(f"the {name!r} backend cannot run here: {why}")
        self.backend_name = name
        self._lock = None if getattr(cls, "thread_safe", False) else threading.Lock()
        kw: dict[str, Any] = {}  # options only some backends take
        if tactics is not None:
            if name != "native":
                raise ValueError(f"tactics= applies to the native backend, not {name!r}")
            kw["tactics"] = tactics
        if threads is not None:
            if name not in THREADED_BACKENDS:
                raise ValueError(f"threads= applies to the {' and '.join(THREADED_BACKENDS)} backends, not {name!r} "
                                 "(torch uses torch.set_num_threads for the whole process)")
            if int(threads) < 1:
                raise ValueError(f"threads must be >= 1, got {threads}")
            kw["threads"] = int(threads)
        self._backend = cls(self.artifact, device, **kw)
        self.stage_dims = tuple(int(d) for d in h["layout"]["stage_dims"])
        self.includes_backbone = bool(h.get("includes_backbone"))
        self.input_shape: tuple[int, ...]
        self.batch_range = (int(h["batch"]["min"]), int(h["batch"]["max"]))
        if self.includes_backbone:
            size = h.get("image_size") or [h["feature"]["input_size"]] * 2
            self.input_shape = (-1, int(size[0]), int(size[1]), 3)
        else:
            self.input_shape = (-1, sum(self.stage_dims))
        st = score_type or h["score_type"]
        if st not in ("mfsim", "mse"):
            raise ValueError(f"score_type must be 'mfsim' or 'mse', got {st!r}")
        self.score_type = st
        self._threshold: float | None = None
        if threshold is not None:
            self.threshold = threshold
        else:
            t = (h.get("thresholds") or {}).get(st)
            if t is None and st == h["score_type"]:
                t = h.get("threshold")
            self._threshold = None if t is None else float(t)

    # ------------------------------------------------------------------ properties
    @property
    def header(self) -> dict:
        return self.artifact.header

    @property
    def device(self) -> Any:
        """The device the backend runs on (as given, or the backend's choice: a string or a torch.device)."""
        return self._backend.device

    @property
    def threshold(self) -> float | None:
        """The OOD threshold on the score (score > threshold = OOD); calibrated, or set by the user."""
        return self._threshold

    @threshold.setter
    def threshold(self, value: float | None) -> None:
        if value is None:
            self._threshold = None
            return
        self._threshold = _finite_threshold(value)

    def __repr__(self) -> str:
        kind = f"frames {self.input_shape[1]}x{self.input_shape[2]}" if self.includes_backbone else \
            f"features C={self.input_shape[1]}"
        return (f"Scorer(backend={self.backend_name!r}, device={self.device!r}, {kind}, "
                f"precision={self.header['precision']!r}, score={self.score_type!r}, threshold={self.threshold}, "
                f"batch={self.batch_range[0]}..{self.batch_range[1]})")

    # ------------------------------------------------------------------ validation
    def _validate(self, batch: Any) -> tuple[Any, Optional[torch.device]]:
        """Returns (x, torch_device or None): x a float32 (N, C) / uint8 (N, H, W, 3) numpy array or tensor."""
        is_t = _is_torch(batch)
        x = batch if is_t else np.asarray(batch)
        shape = tuple(x.shape)
        if self.includes_backbone:
            _, hh, ww, _ = self.input_shape
            if len(shape) != 4 or shape[1:] != (hh, ww, 3):
                raise ValueError(f"this engine takes frames of shape (N, {hh}, {ww}, 3) uint8 RGB, got {shape}; "
                                 "resize the frames or rebuild the engine with --image-size HxW")
            if (x.dtype != torch.uint8) if is_t else (x.dtype != np.uint8):
                raise TypeError(f"frames must be uint8 (0..255 RGB, NHWC), got dtype {x.dtype}")
            if shape[0] == 0:
                raise ValueError("empty batch: need at least one frame")
            if not is_t:
                x = np.ascontiguousarray(x)  # torch.as_tensor refuses negative strides (e.g. frame[:, ::-1])
            return x, (x.device if is_t else None)
        dim = self.input_shape[1]
        if len(shape) != 2 or shape[1] != dim:
            hint = "; for a single vector pass x[None]" if len(shape) == 1 and shape[0] == dim else ""
            raise ValueError(f"expected features of shape (N, {dim}), got {shape}{hint}")
        if (not x.is_floating_point()) if is_t else (x.dtype.kind != "f"):
            raise TypeError(f"features must be floating point, got dtype {x.dtype}")
        # checked after the cast to float32, so float64 values that overflow float32 count as Inf
        if is_t:
            x = x.detach().to(torch.float32).contiguous()
            check_features(x, dim, MAX_ABS_FEATURE)
            return x, x.device
        with np.errstate(over="ignore"):
            x = np.ascontiguousarray(x, dtype=np.float32)
        check_features(torch.from_numpy(x), dim, MAX_ABS_FEATURE)
        return x, None

    # ------------------------------------------------------------------ running
    def _chunks(self, n: int) -> list[tuple[int, int]]:
        lo, hi = self.batch_range
        if self.batch_policy == "strict" and not lo <= n <= hi:
            raise ValueError(f"batch of {n} is outside the engine's batch range [{lo}, {hi}] "
                             "(batch_policy='strict'); rebuild with --batch MIN,OPT,MAX or use batch_policy='split'")
        return [(s, min(s + hi, n)) for s in range(0, n, hi)]

    def _run(self, batch: Any) -> tuple[dict[str, Any], Optional[torch.device]]:
        x, tdev = self._validate(batch)
        lo = self.batch_range[0]
        parts = []
        for s, e in self._chunks(int(x.shape[0])):
            chunk, m = x[s:e], e - s
            if m < lo:
                idx = [*range(m), *([m - 1] * (lo - m))]
                chunk = chunk[torch.tensor(idx, device=chunk.device)] if _is_torch(chunk) else chunk[idx]
            if self._lock is None:
                out = self._backend.run(chunk)
            else:
                with self._lock:
                    out = self._backend.run(chunk)
            parts.append({k: getattr(out, k)[:m] for k in ("mse", "mfsim", "stage_cos")})
        res = {k: self._join([p[k] for p in parts], tdev) for k in ("mse", "mfsim", "stage_cos")}
        return res, tdev

    @staticmethod
    def _join(arrays: list[Any], tdev: Optional[torch.device]) -> Any:
        if tdev is not None:
            ts = [a if _is_torch(a) else torch.from_numpy(np.asarray(a)) for a in arrays]
            return torch.cat([t.to(tdev, torch.float32) for t in ts])
        ns = [a.detach().cpu().numpy() if _is_torch(a) else np.asarray(a) for a in arrays]
        return np.concatenate(ns).astype(np.float32, copy=False)

    @overload
    def score(self, batch: torch.Tensor) -> torch.Tensor: ...
    @overload
    def score(self, batch: npt.ArrayLike) -> np.ndarray: ...

    def score(self, batch: Any) -> Any:
        """One float per item (higher = more OOD): numpy float32 (N,), or a torch tensor for torch input."""
        res, _ = self._run(batch)
        return res[self.score_type]

    def _require_threshold(self, threshold: float | None) -> float:
        t = self._threshold if threshold is None else _finite_threshold(threshold)
        if t is None:
            raise ValueError("this engine has no calibrated threshold (the checkpoint was not calibrated): pass "
                             "threshold=... or set scorer.threshold")
        return t

    @overload
    def is_ood(self, batch: torch.Tensor, threshold: float | None = None) -> torch.Tensor: ...
    @overload
    def is_ood(self, batch: npt.ArrayLike, threshold: float | None = None) -> np.ndarray: ...

    def is_ood(self, batch: Any, threshold: float | None = None) -> Any:
        """score > threshold per item (bool array / tensor); ``threshold`` overrides the stored one."""
        t = self._require_threshold(threshold)
        return self.score(batch) > t

    def explain(self, batch: Union[torch.Tensor, npt.ArrayLike]) -> dict[str, Any]:
        """Per-item terms: score, mse, mfsim, stage_cos (N, M, cosine of each stage with its reconstruction;
        mfsim = -mean over stages), plus score_type, stage_dims, threshold and is_ood (None without threshold)."""
        res, _ = self._run(batch)
        score = res[self.score_type]
        return {"score": score, "score_type": self.score_type, "mse": res["mse"], "mfsim": res["mfsim"],
                "stage_cos": res["stage_cos"], "stage_dims": self.stage_dims, "threshold": self._threshold,
                "is_ood": None if self._threshold is None else score > self._threshold}

    @classmethod
    def from_checkpoint(cls, ckpt: Union[Checkpoint, str, "os.PathLike[str]"], *, include_backbone: bool = False,
                        precision: str = "fp32", image_size: tuple[int, int] | None = None,
                        batch: tuple[int, int, int] = CHECKPOINT_BATCH, device: str | None = None,
                        backend: str = "torch", **kwargs: Any) -> Scorer:
        """Score with a checkpoint through the PyTorch scoring graph (torch backend, no file): features, or
        frames with ``include_backbone`` (at ``image_size``), FP32 or FP16 (``precision``), on ``device``.

        Other backends run engines: build one with ``lfdn-edge build`` (a file) or in memory with
        ``Scorer(lfdn_edge.build_artifact(ckpt, "onnx" | "native" | "tensorrt", ...))``. The run side never
        imports the build side, so this method does not build them.
        """
        if backend != "torch":
            kind = {v: k for k, v in PAYLOAD_RUNTIME.items()}.get(canonical_name(backend))
            raise ValueError(f"from_checkpoint runs the PyTorch graph (backend 'torch'); for {backend!r} build an "
                             f"engine: Scorer(lfdn_edge.build_artifact(ckpt, {kind!r})) in memory, or "
                             f"`lfdn-edge build CKPT --backend {kind}`")
        ck = ckpt if isinstance(ckpt, Checkpoint) else Checkpoint.load(ckpt)
        return cls(checkpoint_artifact(ck, batch, include_backbone, precision, image_size), "torch", device, **kwargs)

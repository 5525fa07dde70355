"""Serve a Scorer through NVIDIA Triton Inference Server (PyTriton): HTTP, gRPC, dynamic batching, health
and metrics endpoints. Needs the optional extra: ``pip install 'lfdn-edge[serve]'`` (nvidia-pytriton).

    from lfdn_edge import Scorer
    from lfdn_edge.runtime.triton_server import ScoreServer

    with ScoreServer(Scorer("ckpt.native.fp32.engine"), http_port=8000, grpc_port=8001) as server:
        print(server.http_url)          # score with tritonclient, curl (KServe v2 protocol), ...
        server.wait()                   # until SIGINT / SIGTERM (what `lfdn-edge serve` does)

What runs where: PyTriton starts a real ``tritonserver`` (a child process) whose Python backend forwards each
batch that Triton's dynamic batcher forms to this process, where :meth:`ScoreServer._infer` scores it with the
Scorer (one Scorer, used by ``instances`` threads; the Scorer is thread-safe). Requests from many clients
arriving within ``max_queue_delay_us`` are scored as one batch of up to ``max_batch`` items.

The model (name ``model_name``, version 1):
    input   ``features``  float32 [-1, C]         (engines on features), or
            ``images``    uint8   [-1, H, W, 3]   (engines that include the backbone: RGB frames, NHWC)
    outputs ``score``     float32 [-1, 1]   the engine's score type (higher = more OOD)
            ``is_ood``    bool    [-1, 1]   score > threshold (the calibrated one, or ``threshold=``)
            ``mse``, ``mfsim`` float32 [-1, 1], ``stage_cos`` float32 [-1, M] (cosine per stage)
            ``threshold`` float64 [-1, 1]   the threshold is_ood used (the same for every item), so a client
                                             (lfdn_edge.runtime.triton_client.TritonScorer) learns it exactly
The scores are the Scorer's. With a native engine an item's score does not depend on the batch it was
scored in, so they are bit for bit the in-process scores (tests/test_serve.py, 16 concurrent clients); other
backends can differ in the last bits between batch sizes (the PyTorch graph of a checkpoint; onnxruntime's
convolutions in frames engines: within 1e-5 in the tests).

Endpoints (Triton's): ``/v2/health/live``, ``/v2/health/ready``, ``/v2/models/NAME/infer`` on HTTP; the same
over gRPC; Prometheus metrics on ``metrics_port`` (``/metrics``). Triton's statistics, model-repository,
shared-memory, trace and logging endpoints need the access token (header ``triton-access-token``;
:attr:`ScoreServer.access_token`, random unless given).

Errors: Triton rejects wrong shapes and dtypes itself; the Scorer rejects NaN/Inf and out-of-range values,
and then the whole batch the bad request was batched with fails with that message (PyTriton answers a batch
as a whole). Shutdown: :meth:`stop` (also on leaving the ``with`` block, on SIGINT/SIGTERM in :meth:`wait`, and
at interpreter exit) stops tritonserver with SIGINT and waits for it, and removes PyTriton's workspace.
With a Python built outside the system (pyenv, conda) Triton's Python-backend stub needs libpython, so
sysconfig's LIBDIR is added to LD_LIBRARY_PATH before the server starts.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import sysconfig
import threading
import urllib.request
from collections import Counter
from pathlib import Path

import numpy as np

from .. import defaults
from ..errors import UnavailableError
from .scorer import Scorer

INSTALL_HINT = "pip install 'lfdn-edge[serve]'"
ACCESS_HEADER = "triton-access-token"
OUTPUTS = ("score", "is_ood", "mse", "mfsim", "stage_cos", "threshold")


def pytriton_available() -> tuple[bool, str]:
    """Whether PyTriton (the package nvidia-pytriton) is importable here."""
    if importlib.util.find_spec("pytriton") is None:
        return False, f"serving needs NVIDIA PyTriton, which is not installed: {INSTALL_HINT}"
    return True, ""


def _add_libpython_dir() -> None:
    """Triton's Python-backend stub links libpython: with a Python outside the system library path (pyenv,
    conda, a source build) it must be found through LD_LIBRARY_PATH, read by the child processes."""
    libdir = sysconfig.get_config_var("LIBDIR")
    if not libdir or not sysconfig.get_config_var("Py_ENABLE_SHARED"):
        return
    parts = [p for p in os.environ.get("LD_LIBRARY_PATH", "").split(":") if p]
    if libdir not in parts:
        os.environ["LD_LIBRARY_PATH"] = ":".join([libdir, *parts])


class ScoreServer:
    """A Triton server (via PyTriton) scoring with one Scorer. See the module docstring."""

    def __init__(self, scorer: Scorer, *, model_name: str = defaults.SERVE_MODEL_NAME, host: str = "127.0.0.1",
                 http_port: int = defaults.SERVE_HTTP_PORT, grpc_port: int = defaults.SERVE_GRPC_PORT,
                 metrics_port: int = defaults.SERVE_METRICS_PORT, max_batch: int = defaults.SERVE_MAX_BATCH,
                 max_queue_delay_us: int = defaults.SERVE_MAX_QUEUE_DELAY_US, instances: int = 1,
                 threshold: float | None = None, access_token: str | None = None, log_verbose: int = 0,
                 exit_timeout_s: int = defaults.SERVE_EXIT_TIMEOUT_S, log_file: str | os.PathLike | None = None):
        ok, why = pytriton_available()
        if not ok:
            raise UnavailableError(why)
        if not isinstance(scorer, Scorer):
            raise TypeError(f"expected a lfdn_edge.Scorer, got {type(scorer).__name__}")
        for value, what in ((max_batch, "max_batch"), (instances, "instances")):
            if int(value) < 1:
                raise ValueError(f"{what} must be >= 1, got {value}")
        if int(max_queue_delay_us) < 0:
            raise ValueError(f"max_queue_delay_us must be >= 0, got {max_queue_delay_us}")
        ports = {"http_port": http_port, "grpc_port": grpc_port, "metrics_port": metrics_port}
        for k, v in ports.items():
            if not 1 <= int(v) <= 65535:
                raise ValueError(f"{k} must be in 1..65535, got {v}")
        if len(set(int(v) for v in ports.values())) != 3:
            raise ValueError(f"the HTTP, gRPC and metrics ports must differ, got {ports}")
        if threshold is not None:
            scorer.threshold = threshold
        if scorer.threshold is None:
            raise ValueError("the engine has no calibrated threshold, so is_ood is undefined: pass threshold=... "
                             "(lfdn-edge serve --threshold)")
        self.scorer = scorer
        self.model_name = model_name
        self.host = host
        self.http_port, self.grpc_port, self.metrics_port = int(http_port), int(grpc_port), int(metrics_port)
        self.max_batch = int(max_batch)
        self.max_queue_delay_us = int(max_queue_delay_us)
        self.instances = int(instances)
        self.log_verbose = int(log_verbose)
        if int(exit_timeout_s) < 0:
            raise ValueError(f"exit_timeout_s must be >= 0, got {exit_timeout_s}")
        self.exit_timeout_s = int(exit_timeout_s)
        self.log_file = log_file
        self._token = access_token
        self._triton = None
        self._lock = threading.Lock()
        self._batches: list[tuple[int, int]] = []  # (requests, items) per batch the model function scored
        self._stop_event = threading.Event()

    # ------------------------------------------------------------------ the model function
    @property
    def input_name(self) -> str:
        return "images" if self.scorer.includes_backbone else "features"

    def _infer(self, requests):
        """PyTriton calls this with the requests of one batch (Triton's dynamic batcher merged them)."""
        xs = [r[self.input_name] for r in requests]
        sizes = [int(x.shape[0]) for x in xs]
        x = xs[0] if len(xs) == 1 else np.concatenate(xs)
        with self._lock:
            self._batches.append((len(sizes), int(x.shape[0])))
        e = self.scorer.explain(x)
        out = {"score": np.asarray(e["score"], np.float32)[:, None], "is_ood": np.asarray(e["is_ood"], bool)[:, None],
               "mse": np.asarray(e["mse"], np.float32)[:, None], "mfsim": np.asarray(e["mfsim"], np.float32)[:, None],
               "stage_cos": np.asarray(e["stage_cos"], np.float32),
               "threshold": np.full((x.shape[0], 1), float(e["threshold"]), np.float64)}
        bounds = np.cumsum([0, *sizes])
        return [{k: v[s:t] for k, v in out.items()} for s, t in zip(bounds[:-1], bounds[1:])]

    @property
    def batches(self) -> list[tuple[int, int]]:
        """(requests, items) of every batch the model function has scored so far."""
        with self._lock:
            return list(self._batches)

    @property
    def batch_histogram(self) -> dict[int, int]:
        """How many batches of each item count were scored."""
        return dict(sorted(Counter(n for _, n in self.batches).items()))

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "ScoreServer":
        """Start tritonserver and load the model (returns when it is ready to serve)."""
        if self._triton is not None:
            raise RuntimeError("the server is already running")
        from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
        from pytriton.triton import Triton, TritonConfig, TritonSecurityConfig

        _add_libpython_dir()
        s = self.scorer
        if s.includes_backbone:
            inputs = [Tensor(name="images", dtype=np.uint8, shape=tuple(s.input_shape[1:]))]
        else:
            inputs = [Tensor(name="features", dtype=np.float32, shape=(s.input_shape[1],))]
        m = len(s.stage_dims)
        outputs = [Tensor(name="score", dtype=np.float32, shape=(1,)), Tensor(name="is_ood", dtype=np.bool_, shape=(1,)),
                   Tensor(name="mse", dtype=np.float32, shape=(1,)), Tensor(name="mfsim", dtype=np.float32, shape=(1,)),
                   Tensor(name="stage_cos", dtype=np.float32, shape=(m,)),
                   Tensor(name="threshold", dtype=np.float64, shape=(1,))]
        config = TritonConfig(http_address=self.host, http_port=self.http_port, grpc_address=self.host,
                              grpc_port=self.grpc_port, metrics_address=self.host, metrics_port=self.metrics_port,
                              allow_metrics=True, allow_gpu_metrics=False, log_verbose=self.log_verbose,
                              exit_timeout_secs=self.exit_timeout_s,
                              log_file=None if self.log_file is None else Path(self.log_file))
        security = TritonSecurityConfig(access_token=self._token)
        triton = Triton(config=config, security_config=security)
        try:
            triton.bind(model_name=self.model_name, infer_func=[self._infer] * self.instances, inputs=inputs,
                        outputs=outputs, strict=True,
                        config=ModelConfig(max_batch_size=self.max_batch,
                                           batcher=DynamicBatcher(max_queue_delay_microseconds=self.max_queue_delay_us)))
            triton.run()
        except BaseException:
            triton.stop()
            raise
        self._triton = triton
        self._token = triton.get_access_token()
        return self

    def stop(self) -> None:
        """Stop tritonserver (SIGINT, then wait) and remove PyTriton's workspace; safe to call twice."""
        triton, self._triton = self._triton, None
        self._stop_event.set()
        if triton is not None:
            triton.stop()

    def __enter__(self) -> "ScoreServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._triton is not None and self._triton.is_alive()

    def wait(self, install_signal_handlers: bool = True) -> None:
        """Block until SIGINT or SIGTERM (or :meth:`stop` from another thread, or the server dying), then stop.

        SIGTERM is turned into the same clean stop as SIGINT: without a handler it would end this process
        at once and leave PyTriton's workspace and shared memory behind. (Handlers are installed from the
        main thread only, where Python allows it; from another thread, stop it with :meth:`stop`.)"""
        old = {}
        if install_signal_handlers and threading.current_thread() is threading.main_thread():
            def handler(signum, frame):
                self._stop_event.set()

            for sig in (signal.SIGINT, signal.SIGTERM):
                old[sig] = signal.signal(sig, handler)
        try:
            while not self._stop_event.wait(0.5):
                if not self.running:
                    break
        finally:
            try:
                self.stop()  # a second Ctrl-C meanwhile only sets the event again: the stop completes
            finally:
                for sig, h in old.items():
                    signal.signal(sig, h)

    # ------------------------------------------------------------------ endpoints
    @property
    def access_token(self) -> str | None:
        """The token of Triton's restricted endpoints (statistics, ...): header ``triton-access-token``."""
        return self._token

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.host}:{self.metrics_port}/metrics"

    def statistics(self) -> dict:
        """Triton's inference statistics of the model (``/v2/models/NAME/stats``, with the access token)."""
        req = urllib.request.Request(f"{self.http_url}/v2/models/{self.model_name}/stats",
                                     headers={ACCESS_HEADER: self._token or ""})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())


def serve(engine, **kwargs) -> ScoreServer:
    """Start a ScoreServer for an engine path, an EngineArtifact, a checkpoint or a Scorer; returns it running
    (use it as a context manager, or call ``wait()`` / ``stop()``). ``kwargs``: ScoreServer's options, plus
    ``backend``, ``device``, ``threads``, ``score_type`` for the Scorer."""
    scorer_opts = {k: kwargs.pop(k) for k in ("backend", "device", "threads", "score_type") if k in kwargs}
    scorer = engine if isinstance(engine, Scorer) else Scorer(engine, **scorer_opts)
    return ScoreServer(scorer, **kwargs).start()

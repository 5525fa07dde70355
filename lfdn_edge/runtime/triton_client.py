"""Score on a running Triton server (``lfdn-edge serve``, or an ``lfdn-edge export-triton`` repository in a
site's own Triton) with the interface the stream uses of a Scorer: ``score``, ``threshold``, ``batch_range``,
``includes_backbone``, ``input_shape`` and, for a features model, ``header["feature"]``. Needs tritonclient
(the [serve] extra).

    scorer = TritonScorer("http://gpu-box:8000")                # or grpc://gpu-box:8001; model_name="lfdn_edge"
    scores = scorer.score(frames)                                # (N, H, W, 3) uint8 for an `images` model

What the model takes is read from the server (model metadata and config): ``images`` uint8 [-1, H, W, 3] (an
engine built with --include-backbone: frames are only resized here, the backbone runs on the server) or
``features`` float32 [-1, C] (the features are computed here, with the backbone named by a local copy of the
engine or checkpoint: ``feature_source``; without one that is an error that says so). The largest batch is
the config's max_batch_size. The threshold is the model config's parameter ``lfdn_edge.threshold`` (an
exported repository) or, from ``lfdn-edge serve``, the ``threshold`` output of one probe request at connect
(one all-zero item); None when the model gives neither (then alerts need an explicit threshold).
"""

from __future__ import annotations

import atexit
import os
from typing import Any, Optional, Union
from urllib.parse import urlsplit

import numpy as np

from .. import defaults

INSTALL_HINT = "pip install 'lfdn-edge[serve]' (or tritonclient[http,grpc])"
PROTOCOLS = ("http", "grpc")


def import_tritonclient(protocol: str) -> Any:
    try:
        if protocol == "grpc":
            import tritonclient.grpc as mod
        else:
            import tritonclient.http as mod
    except ImportError:
        raise ImportError(f"scoring on a Triton server needs tritonclient: {INSTALL_HINT}") from None
    if protocol != "grpc" and not _STOP_REGISTERED:
        _register_gevent_threadpool_stop()
    return mod


_STOP_REGISTERED = False


def _register_gevent_threadpool_stop() -> None:
    """tritonclient.http runs on gevent, whose hub resolves host names on a pool of native threads that
    idle for 5 s (GEVENT_THREADPOOL_IDLE_TASK_TIMEOUT) before they exit. One that times out while the
    interpreter is finalizing is stopped by CPython with pthread_exit, whose forced unwind through the
    greenlet stack can crash the process at exit (seen as a segfault after the stream tests, with
    GStreamer's libunwind loaded). At exit, before finalization, the pool is told to stop and its
    workers are waited for (at most 2 s)."""
    global _STOP_REGISTERED
    _STOP_REGISTERED = True
    atexit.register(stop_gevent_threadpool)


def stop_gevent_threadpool() -> None:
    """Stop the worker threads of this thread's gevent hub's thread pool, if it has one (idempotent)."""
    try:
        from gevent._hub_local import get_hub_if_exists
    except ImportError:
        return
    hub = get_hub_if_exists()
    pool = None if hub is None else getattr(hub, "_threadpool", None)
    if pool is None or not pool.size:
        return
    import _thread
    import time

    threads, workers = _thread._count(), pool.size
    pool.size = 0   # queues one stop per worker, then waits (on the hub) until each has left its loop
    t_end = time.monotonic() + 2.0
    while _thread._count() > threads - workers and time.monotonic() < t_end:
        time.sleep(0.005)   # and until their native threads have ended (bounded: never hangs an exit)


def parse_triton_url(url: str, protocol: Optional[str] = None) -> tuple[str, str, bool]:
    """``http://host:8000``, ``https://host``, ``grpc://host:8001`` or ``host:port`` (HTTP) -> (protocol,
    "host:port", ssl)."""
    text = str(url).strip()
    u = urlsplit(text if "://" in text else f"http://{text}")
    scheme = u.scheme.lower()
    if scheme not in ("http", "https", "grpc", "grpcs"):
        raise ValueError(f"Triton URL {url!r}: expected http://HOST:PORT, https://..., grpc://HOST:PORT or HOST:PORT")
    if not u.hostname:
        raise ValueError(f"Triton URL {url!r}: no host")
    if u.path not in ("", "/") or u.query:
        raise ValueError(f"Triton URL {url!r}: give only the server's address (the model: model_name / --triton-model)")
    proto = "grpc" if scheme.startswith("grpc") else "http"
    if protocol is not None and protocol != proto:
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
        raise ValueError(f"Triton URL {url!r} is {proto}, but protocol={protocol!r}")
    try:
        port = u.port
    except ValueError:
        raise ValueError(f"Triton URL {url!r}: bad port") from None
    port = port or (defaults.SERVE_GRPC_PORT if proto == "grpc" else (443 if scheme == "https" else defaults.SERVE_HTTP_PORT))
    host = f"[{u.hostname}]" if ":" in u.hostname else u.hostname
    return proto, f"{host}:{port}", scheme in ("https", "grpcs")


def model_interface(metadata: dict, config: dict, url: str = "", name: str = "") -> dict[str, Any]:
    """What a model takes, from its KServe v2 metadata and Triton config (as JSON dicts: HTTP's, or gRPC's with
    as_json=True, where int64 shapes are strings and the config sits under "config"):
    {"input": "images" | "features", "datatype", "shape" (-1, ...), "max_batch", "threshold" (float or None),
    "stage_dims" (tuple or None), "outputs"}."""
    config = config.get("config", config)
    where = f"model {name!r} at {url}" if url else f"model {name!r}"
    inputs = metadata.get("inputs") or []
    if len(inputs) != 1 or inputs[0].get("name") not in ("images", "features"):
        raise ValueError(f"{where}: expected one input, 'images' (uint8 [-1, H, W, 3]) or 'features' (float32 "
                         f"[-1, C]) as lfdn-edge serve / export-triton make; found {[i.get('name') for i in inputs]}")
    inp = inputs[0]
    shape = tuple(int(d) for d in inp.get("shape") or ())
    want = ("UINT8", 4) if inp["name"] == "images" else ("FP32", 2)
    if (inp.get("datatype"), len(shape)) != want or shape[0] != -1 or any(d < 1 for d in shape[1:]) or \
            (inp["name"] == "images" and shape[3] != 3):
        raise ValueError(f"{where}: input {inp['name']} is {inp.get('datatype')} {list(shape)}; expected "
                         + ("UINT8 [-1, H, W, 3]" if inp["name"] == "images" else "FP32 [-1, C]"))
    outputs = tuple(o.get("name") for o in metadata.get("outputs") or [])
    if "score" not in outputs:
        raise ValueError(f"{where}: no 'score' output (outputs: {list(outputs)})")
    max_batch = int(config.get("max_batch_size") or 0)
    if max_batch < 1:
        raise ValueError(f"{where}: max_batch_size {max_batch}: the model must batch (lfdn-edge serve does)")
    params = {k: v.get("string_value") for k, v in (config.get("parameters") or {}).items() if isinstance(v, dict)}
    thr = params.get("lfdn_edge.threshold")
    dims = params.get("lfdn_edge.stage_dims")
    return {"input": inp["name"], "datatype": inp["datatype"], "shape": shape, "max_batch": max_batch,
            "threshold": float(thr) if thr else None,
            "stage_dims": None if not dims else tuple(int(d) for d in dims.split(",")), "outputs": outputs}


def _local_header(source: Union[str, "os.PathLike[str]", dict, Any]) -> dict:
    """An engine header: from a dict (a header), a Scorer, or an engine / checkpoint path."""
    if isinstance(source, dict):
        return source
    if hasattr(source, "header"):
        return source.header
    from .scorer import load_artifact

    return load_artifact(source).header


class TritonScorer:
    """A Scorer-like client of a Triton model (see the module doc). Thread-safe for ``score`` as far as
    tritonclient's client is (one request at a time from the stream's scoring thread)."""

    def __init__(self, url: str, model_name: str = defaults.SERVE_MODEL_NAME, protocol: Optional[str] = None, *,
                 feature_source: Any = None, threshold: Optional[float] = None, timeout: float = 30.0):
        self.protocol, self.address, ssl = parse_triton_url(url, protocol)
        self.url = str(url)
        self.model_name = model_name
        mod = import_tritonclient(self.protocol)
        self._mod = mod
        try:
            if self.protocol == "grpc":
                self._client = mod.InferenceServerClient(self.address, ssl=ssl)
            else:
                self._client = mod.InferenceServerClient(self.address, ssl=ssl, connection_timeout=timeout,
                                                         network_timeout=timeout)
            live = self._client.is_server_live()
        except Exception as exc:   # refused, DNS, timeout: tritonclient raises its own or the socket's errors
            raise ConnectionError(f"cannot reach a Triton server at {self.url} ({self.protocol}): {_msg(exc)}") from None
        if not live:
            raise ConnectionError(f"the Triton server at {self.url} is not live")
        try:
            ready = self._client.is_model_ready(model_name)
        except Exception as exc:
            raise ConnectionError(f"Triton at {self.url}: model {model_name!r}: {_msg(exc)}") from None
        if not ready:
            raise ValueError(f"Triton at {self.url} has no ready model {model_name!r} (lfdn-edge serve names it "
                             f"{defaults.SERVE_MODEL_NAME!r}; --triton-model NAME)")
        kw = {"as_json": True} if self.protocol == "grpc" else {}
        meta = self._client.get_model_metadata(model_name, **kw)
        cfg = self._client.get_model_config(model_name, **kw)
        self.interface = model_interface(meta, cfg, self.url, model_name)
        self.includes_backbone = self.interface["input"] == "images"
        self.input_shape = self.interface["shape"]
        self.batch_range = (1, self.interface["max_batch"])
        self._header: dict[str, Any] = {"includes_backbone": self.includes_backbone}
        if not self.includes_backbone:
            if feature_source is None:
                raise ValueError(
                    f"model {model_name!r} at {self.url} takes features [-1, {self.input_shape[1]}], which are "
                    "computed here with the backbone of the engine it was built from: give that engine or its "
                    "checkpoint too (--engine; only its feature settings are read), or serve an engine built with "
                    "--include-backbone (then the server runs the backbone)")
            h = _local_header(feature_source)
            c = int(sum(h["layout"]["stage_dims"]))
            if c != self.input_shape[1] or (self.interface["stage_dims"] is not None and
                                            tuple(h["layout"]["stage_dims"]) != self.interface["stage_dims"]):
                raise ValueError(f"model {model_name!r} at {self.url} takes {self.input_shape[1]} features; the local "
                                 f"engine's backbone ({h['feature'].get('backbone')}) gives {c} "
                                 f"(stages {list(h['layout']['stage_dims'])}): not the engine it was built from")
            self._header.update(feature=h["feature"], layout=h["layout"])
        self.calls = 0
        self._threshold = None if threshold is None else float(threshold)
        if self._threshold is None:
            self._threshold = self.interface["threshold"]
        if self._threshold is None and "threshold" in self.interface["outputs"]:
            probe = np.zeros((1, *self.input_shape[1:]), np.uint8 if self.includes_backbone else np.float32)
            self._threshold = float(self._infer(probe, ("threshold",))["threshold"].reshape(-1)[0])

    @property
    def header(self) -> dict:
        return self._header

    @property
    def threshold(self) -> Optional[float]:
        return self._threshold

    @threshold.setter
    def threshold(self, value: Optional[float]) -> None:
        self._threshold = None if value is None else float(value)

    def __repr__(self) -> str:
        return (f"TritonScorer({self.url!r}, model={self.model_name!r}, input={self.interface['input']} "
                f"{list(self.input_shape)}, max_batch={self.batch_range[1]})")

    def _infer(self, x: np.ndarray, outputs: tuple[str, ...]) -> dict[str, np.ndarray]:
        mod = self._mod
        name = self.interface["input"]
        inp = mod.InferInput(name, list(x.shape), self.interface["datatype"])
        inp.set_data_from_numpy(x)
        outs = [mod.InferRequestedOutput(o) for o in outputs]
        try:
            res = self._client.infer(self.model_name, [inp], outputs=outs)
        except Exception as exc:
            raise ConnectionError(f"Triton at {self.url}: model {self.model_name!r}: {_msg(exc)}") from None
        self.calls += 1
        return {o: res.as_numpy(o) for o in outputs}

    def score(self, batch: Any) -> np.ndarray:
        """(N,) float32 scores of a batch: uint8 frames (N, H, W, 3) at the model's size, or float32 features
        (N, C); in requests of at most max_batch items."""
        x = np.ascontiguousarray(batch, dtype=np.uint8 if self.includes_backbone else np.float32)
        if x.ndim != len(self.input_shape) or tuple(x.shape[1:]) != tuple(self.input_shape[1:]) or len(x) == 0:
            raise ValueError(f"expected a batch of shape [N, {', '.join(map(str, self.input_shape[1:]))}] "
                             f"({self.interface['input']}), got {list(x.shape)}")
        out = []
        for s in range(0, len(x), self.batch_range[1]):
            part = x[s:s + self.batch_range[1]]
            sc = self._infer(part, ("score",))["score"].reshape(-1)
            if sc.shape[0] != part.shape[0]:
                raise ValueError(f"Triton at {self.url}: {sc.shape[0]} scores for {part.shape[0]} items")
            out.append(sc.astype(np.float32))
        return np.concatenate(out)

    def close(self) -> None:
        try:
            self._client.close()
        except Exception:   # closing a client whose server is gone
            pass

    def __enter__(self) -> TritonScorer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _msg(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) < 300 else text[:300] + "..."

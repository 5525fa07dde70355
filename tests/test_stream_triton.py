"""Triton mode of the stream without a server (the end-to-end test with a real `lfdn-edge serve` is in
tests/test_serve.py, which runs in the [serve] venv): Triton URLs, what a model takes read from its metadata
and config (dicts captured from a PyTriton server of this project over HTTP and gRPC, and the config an
export-triton repository gives), and the errors for a server that is not there (with its URL, fast)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lfdn_edge.runtime.triton_client import model_interface, parse_triton_url

ROOT = Path(__file__).resolve().parent.parent

# captured from `ScoreServer` (PyTriton 0.7) serving a frames engine (24x40, Lite0: 5 stages, max_batch 8)
OUTS = [{"name": n, "datatype": d, "shape": [-1, k]} for n, d, k in
        (("score", "FP32", 1), ("is_ood", "BOOL", 1), ("mse", "FP32", 1), ("mfsim", "FP32", 1), ("stage_cos", "FP32", 5),
         ("threshold", "FP64", 1))]
HTTP_META = {"name": "lfdn_edge", "versions": ["1"], "platform": "python",
             "inputs": [{"name": "images", "datatype": "UINT8", "shape": [-1, 24, 40, 3]}], "outputs": OUTS}
GRPC_META = {"name": "lfdn_edge", "versions": ["1"], "platform": "python",
             "inputs": [{"name": "images", "datatype": "UINT8", "shape": ["-1", "24", "40", "3"]}],
             "outputs": [{**o, "shape": [str(d) for d in o["shape"]]} for o in OUTS]}
HTTP_CONFIG = {"name": "lfdn_edge", "backend": "python", "max_batch_size": 8,
               "input": [{"name": "images", "data_type": "TYPE_UINT8", "format": "FORMAT_NONE", "dims": [24, 40, 3]}],
               "parameters": {"workspace-path": {"string_value": "/root/.cache/pytriton/workspace_389hdlpn"}}}
GRPC_CONFIG = {"config": HTTP_CONFIG}
FEATURES_META = {"name": "lfdn_edge", "versions": ["1"], "platform": "python",
                 "inputs": [{"name": "features", "datatype": "FP32", "shape": [-1, 512]}], "outputs": OUTS}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_triton_urls():
    assert parse_triton_url("http://gpu-box:8000") == ("http", "gpu-box:8000", False)
    assert parse_triton_url("gpu-box") == ("http", "gpu-box:8000", False)
    assert parse_triton_url("grpc://10.0.0.2") == ("grpc", "10.0.0.2:8001", False)
    assert parse_triton_url("https://t.example") == ("http", "t.example:443", True)
    assert parse_triton_url("grpc://[::1]:9001", "grpc") == ("grpc", "[::1]:9001", False)
    for bad, msg in (("ftp://h", "expected http"), ("http://h:8000/v2/models/x", "only the server's address"),
                     ("http://:8000", "no host"), ("http://h:x", "bad port")):
        with pytest.raises(ValueError, match=msg):
            parse_triton_url(bad)
    with pytest.raises(ValueError, match="is http, but protocol='grpc'"):
        parse_triton_url("http://h:8000", "grpc")


def test_model_interface_from_captured_metadata_http_and_grpc():
    for meta, cfg in ((HTTP_META, HTTP_CONFIG), (GRPC_META, GRPC_CONFIG)):
        it = model_interface(meta, cfg, "http://h:8000", "lfdn_edge")
        assert (it["input"], it["datatype"], it["shape"], it["max_batch"]) == ("images", "UINT8", (-1, 24, 40, 3), 8)
        assert it["threshold"] is None and it["stage_dims"] is None and "threshold" in it["outputs"]
    f = model_interface(FEATURES_META, HTTP_CONFIG)
    assert (f["input"], f["datatype"], f["shape"]) == ("features", "FP32", (-1, 512))
    bad = {**HTTP_META, "inputs": [{"name": "images", "datatype": "UINT8", "shape": [-1, 24, 40]}]}
    with pytest.raises(ValueError, match=r"model 'm' at http://h: input images is UINT8 \[-1, 24, 40\]"):
        model_interface(bad, HTTP_CONFIG, "http://h", "m")
    with pytest.raises(ValueError, match="expected one input"):
        model_interface({**HTTP_META, "inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [-1, 4]}]}, HTTP_CONFIG)
    with pytest.raises(ValueError, match="no 'score' output"):
        model_interface({**HTTP_META, "outputs": OUTS[1:]}, HTTP_CONFIG)
    with pytest.raises(ValueError, match="must batch"):
        model_interface(HTTP_META, {**HTTP_CONFIG, "max_batch_size": 0})


def test_model_interface_of_an_export_triton_repository_reads_its_threshold_parameter():
    """The config of `lfdn-edge export-triton` as Triton returns it (its protobuf as JSON)."""
    pb = pytest.importorskip("tritonclient.grpc.model_config_pb2")
    from google.protobuf import json_format, text_format

    from lfdn_edge.builder.triton_repo import model_config_text

    header = {"input": {"name": "features", "dtype": "float32", "shape": [-1, 96]},
              "batch": {"min": 1, "opt": 16, "max": 64}, "layout": {"stage_dims": [16, 32, 48]},
              "score_type": "mfsim", "precision": "fp32", "threshold": -0.8125}
    text = model_config_text(header, "cams", "onnxruntime_onnx")
    cfg = json_format.MessageToDict(text_format.Parse(text, pb.ModelConfig()), preserving_proto_field_name=True)
    meta = {"name": "cams", "versions": ["1"], "platform": "onnxruntime_onnx",
            "inputs": [{"name": "features", "datatype": "FP32", "shape": [-1, 96]}],
            "outputs": [{"name": "score", "datatype": "FP32", "shape": [-1]}]}
    it = model_interface(meta, cfg, "grpc://h:8001", "cams")
    assert (it["threshold"], it["stage_dims"], it["max_batch"]) == (-0.8125, (16, 32, 48), 64)


@pytest.mark.parametrize("scheme", ["http", "grpc"])
def test_an_unreachable_server_is_a_clear_error_with_its_url(scheme):
    pytest.importorskip(f"tritonclient.{scheme}")
    from lfdn_edge.runtime.triton_client import TritonScorer

    url = f"{scheme}://127.0.0.1:{free_port()}"
    t0 = time.monotonic()
    with pytest.raises(ConnectionError, match=f"cannot reach a Triton server at {url} \\({scheme}\\)"):
        TritonScorer(url)
    assert time.monotonic() - t0 < 10


def test_stream_command_with_an_unreachable_triton_fails_before_any_frame(tmp_path):
    pytest.importorskip("tritonclient.http")
    url = f"http://127.0.0.1:{free_port()}"
    p = subprocess.run([sys.executable, "-m", "lfdn_edge", "stream", "test://pattern?frames=5", "--triton", url,
                        "--out", str(tmp_path / "r.jsonl")], capture_output=True, text=True, timeout=120,
                       cwd=str(ROOT))
    assert p.returncode == 2 and p.stderr.startswith(f"error: cannot reach a Triton server at {url}"), p.stderr
    assert not (tmp_path / "r.jsonl").exists() or (tmp_path / "r.jsonl").read_text(encoding="utf-8") == ""
    none = subprocess.run([sys.executable, "-m", "lfdn_edge", "stream", "test://pattern?frames=5"],
                          capture_output=True, text=True, timeout=120, cwd=str(ROOT))
    assert none.returncode == 2 and "--triton URL" in none.stderr


def test_the_http_clients_resolver_threads_are_stopped_before_the_interpreter_finalizes():
    """tritonclient.http's gevent hub resolves names on native threads that idle 5 s before they exit; one that
    wakes while the interpreter finalizes is pthread_exit-ed through a greenlet stack, which crashed pytest at
    exit after the stream tests (segfault, with GStreamer's libunwind loaded). The client registers an atexit
    hook that stops them: a hook registered before it (so run after it) sees no such thread left."""
    pytest.importorskip("tritonclient.http")
    code = ("import _thread, atexit, socket\n"
            "atexit.register(lambda: print('at exit', _thread._count()))\n"
            "import lfdn_edge.runtime.triton_client as tc\n"
            "s = socket.socket(); s.bind(('127.0.0.1', 0)); port = s.getsockname()[1]; s.close()\n"
            "try:\n    tc.TritonScorer(f'http://127.0.0.1:{port}')\nexcept ConnectionError:\n    pass\n"
            "print('before', _thread._count())\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=str(ROOT))
    assert p.returncode == 0, p.stderr
    counts = dict(line.rsplit(" ", 1) for line in p.stdout.splitlines())
    assert int(counts["before"]) >= 1 and int(counts["at exit"]) == 0, counts   # the worker existed, and ended

"""Serving through a real Triton Inference Server (PyTriton) on 127.0.0.1: exact scores from 16 concurrent
clients over HTTP and gRPC, requests batched together (Triton's statistics and the batches the model function
saw), health and metrics endpoints, restricted statistics, clean shutdown with no child process left, the
`lfdn-edge serve` command stopped by SIGINT and by SIGTERM, and the error without PyTriton.

PyTriton (nvidia-pytriton) comes with the [test] extra on Linux x86_64; where it is missing these tests skip,
unless $LFDN_EDGE_REQUIRE_TOOLCHAINS (set by .ci/run) names ``pytriton``: then they fail.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

REQUIRED = {t.strip() for t in os.environ.get("LFDN_EDGE_REQUIRE_TOOLCHAINS", "").split(",") if t.strip()}
ROOT = Path(__file__).resolve().parent.parent
THRESHOLD = -0.5


def _need_pytriton():
    from lfdn_edge.runtime.triton_server import pytriton_available

    ok, why = pytriton_available()
    if not ok:
        if "pytriton" in REQUIRED:
            pytest.fail(why + " -- required by LFDN_EDGE_REQUIRE_TOOLCHAINS")
        pytest.skip(why)


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (read from /proc)."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if fields[0] == "Z":  # a zombie is dead; it only waits to be reaped
            continue
        children.setdefault(int(fields[1]), []).append(int(d.name))
    found, todo = set(), [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            if c not in found:
                found.add(c)
                todo.append(c)
    return found


def alive(pids) -> list[int]:
    out = []
    for p in pids:
        try:
            state = Path(f"/proc/{p}/stat").read_text()
        except OSError:
            continue
        if state[state.rindex(")") + 2] != "Z":
            out.append(p)
    return out


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    """A small engine (native if the core is built, else onnx) on random weights, and its Scorer."""
    import torch

    from lfdn_edge.builder.dispatch import build_engine
    from lfdn_edge.checkpoint import save_checkpoint
    from lfdn_edge.diffusion import DiffusionConfig
    from lfdn_edge.features import FeatureConfig
    from lfdn_edge.model import LFDN, LFDNConfig
    from lfdn_edge.probes import native_usable
    from lfdn_edge.reference import ScoreConfig

    d = tmp_path_factory.mktemp("serve")
    torch.manual_seed(0)
    cfg = LFDNConfig(in_dim=96, width=64, depth=2, emb_dim=32)
    data = {"feature": FeatureConfig().to_dict(), "layout": {"stage_dims": [16, 32, 48]}, "model": cfg.to_dict(),
            "diffusion": DiffusionConfig().to_dict(), "score": ScoreConfig().to_dict(),
            "ema": LFDN(cfg).state_dict(), "calibration": None}
    ckpt = save_checkpoint(data, d / "tiny.pt")
    backend = "native" if native_usable()[0] else "onnx"
    return build_engine(ckpt, backend=backend, out=d / f"tiny.{backend}.engine")


def _features(n: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 96)).astype(np.float32)


def test_sixteen_concurrent_clients_get_exactly_the_scorers_scores_in_shared_batches(engine, tmp_path):
    _need_pytriton()
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    from lfdn_edge import Scorer
    from lfdn_edge.runtime.triton_server import ScoreServer

    scorer = Scorer(engine, threshold=THRESHOLD)
    clients, per_client = 16, 6
    sizes = [1 + (i % 3) for i in range(clients * per_client)]  # 1..3 items per request
    x = _features(sum(sizes))
    scorer.threshold = thr = float(np.median(scorer.score(x)))  # half the items OOD
    want = scorer.explain(x)
    # precondition of "exactly": this engine scores an item identically in any batch
    for s, e in ((0, 1), (5, 8), (3, 40)):
        assert np.array_equal(scorer.score(x[s:e]), want["score"][s:e])
    bounds = np.cumsum([0, *sizes])
    before = descendants(os.getpid())
    h, g, m = free_ports(3)
    server = ScoreServer(scorer, http_port=h, grpc_port=g, metrics_port=m, max_batch=32,
                         max_queue_delay_us=20_000, log_file=tmp_path / "triton.log")
    server.start()
    try:
        kids = descendants(os.getpid()) - before
        assert kids, "tritonserver should be a child process"
        # health (open) and statistics (restricted to the access token)
        assert urllib.request.urlopen(f"{server.http_url}/v2/health/ready", timeout=10).status == 200
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(f"{server.http_url}/v2/models/{server.model_name}/stats", timeout=10)
        results, errors = {}, []
        barrier = threading.Barrier(clients)

        def client(c: int) -> None:
            try:
                use_grpc = c % 2 == 1
                mod = grpcclient if use_grpc else httpclient
                cl = mod.InferenceServerClient(server.grpc_url if use_grpc else f"127.0.0.1:{h}")
                barrier.wait()
                for r in range(c * per_client, (c + 1) * per_client):
                    xi = x[bounds[r]:bounds[r + 1]]
                    inp = mod.InferInput("features", list(xi.shape), "FP32")
                    inp.set_data_from_numpy(xi)
                    res = cl.infer(server.model_name, [inp])
                    results[r] = {k: res.as_numpy(k) for k in ("score", "is_ood", "mse", "mfsim", "stage_cos")}
                cl.close()
            except Exception as exc:  # reported below
                errors.append(repr(exc))

        threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not errors, errors[:3]
        assert len(results) == len(sizes)
        got = {k: np.concatenate([results[r][k] for r in range(len(sizes))]) for k in results[0]}
        # exactly the Scorer's numbers, item by item
        np.testing.assert_array_equal(got["score"][:, 0], want["score"])
        np.testing.assert_array_equal(got["mse"][:, 0], want["mse"])
        np.testing.assert_array_equal(got["mfsim"][:, 0], want["mfsim"])
        np.testing.assert_array_equal(got["stage_cos"], want["stage_cos"])
        np.testing.assert_array_equal(got["is_ood"][:, 0], want["score"] > thr)
        assert 0 < got["is_ood"].sum() < len(x)  # the threshold splits the items: is_ood is informative
        # batched together: the model function saw batches of several requests, and Triton says so too
        batches = server.batches
        assert sum(n for _, n in batches) == len(x) and sum(r for r, _ in batches) == len(sizes)
        assert max(r for r, _ in batches) >= 2 and len(batches) < len(sizes), server.batch_histogram
        stats = server.statistics()["model_stats"][0]
        triton_sizes = {int(b["batch_size"]): int(b["compute_infer"]["count"]) for b in stats["batch_stats"]}
        assert max(triton_sizes) > max(sizes), triton_sizes  # more items than any one request carried
        assert sum(k * v for k, v in triton_sizes.items()) == len(x)
        assert triton_sizes == server.batch_histogram
        metrics = urllib.request.urlopen(server.metrics_url, timeout=10).read().decode()
        assert f'nv_inference_request_success{{model="{server.model_name}",version="1"}} {len(sizes)}' in metrics
    finally:
        t0 = time.time()
        server.stop()
        stop_s = time.time() - t0
    assert not server.running
    left = alive(kids)
    assert left == [], f"processes left running after stop: {left}"
    assert stop_s < 30, stop_s
    with pytest.raises(OSError):  # nothing listens any more
        urllib.request.urlopen(f"http://127.0.0.1:{h}/v2/health/live", timeout=5)


def test_bad_requests_fail_with_the_scorers_message_and_the_server_keeps_serving(engine, tmp_path):
    _need_pytriton()
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    from lfdn_edge import Scorer
    from lfdn_edge.runtime.triton_server import ScoreServer

    scorer = Scorer(engine, threshold=THRESHOLD)
    h, g, m = free_ports(3)
    with ScoreServer(scorer, http_port=h, grpc_port=g, metrics_port=m, log_file=tmp_path / "t.log") as server:
        cl = httpclient.InferenceServerClient(f"127.0.0.1:{h}")

        def infer(arr, dtype="FP32"):
            inp = httpclient.InferInput("features", list(arr.shape), dtype)
            inp.set_data_from_numpy(arr)
            return cl.infer(server.model_name, [inp])

        bad = _features(2)
        bad[1, 3] = np.nan
        with pytest.raises(InferenceServerException, match="NaN|finite"):
            infer(bad)
        with pytest.raises(InferenceServerException):  # wrong width: Triton itself refuses it
            infer(_features(2)[:, :50])
        ok = _features(3)
        np.testing.assert_array_equal(infer(ok).as_numpy("score")[:, 0], scorer.score(ok))
        cl.close()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_serve_command_stops_cleanly_on_a_signal(engine, tmp_path, sig):
    _need_pytriton()
    import tritonclient.grpc as grpcclient

    from lfdn_edge import Scorer

    h, g, m = free_ports(3)
    token = "test-token-123"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "lfdn_edge", "serve", str(engine), "--threshold", str(THRESHOLD),
           "--http-port", str(h), "--grpc-port", str(g), "--metrics-port", str(m), "--access-token", token,
           "--log-file", str(tmp_path / "triton.log")]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT)
    kids: set[int] = set()
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            assert proc.poll() is None, proc.stdout.read()
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{h}/v2/models/lfdn_edge/ready", timeout=2).status == 200:
                    break
            except OSError:
                time.sleep(0.3)
        else:
            pytest.fail("server not ready within 120 s")
        kids = descendants(proc.pid)
        assert kids
        x = _features(5, seed=7)
        cl = grpcclient.InferenceServerClient(f"127.0.0.1:{g}")
        inp = grpcclient.InferInput("features", [5, 96], "FP32")
        inp.set_data_from_numpy(x)
        got = cl.infer("lfdn_edge", [inp]).as_numpy("score")[:, 0]
        cl.close()
        np.testing.assert_array_equal(got, Scorer(engine).score(x))
        req = urllib.request.Request(f"http://127.0.0.1:{h}/v2/models/lfdn_edge/stats",
                                     headers={"triton-access-token": token})
        stats = json.loads(urllib.request.urlopen(req, timeout=10).read())
        assert stats["model_stats"][0]["inference_count"] == 5
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, out[-3000:]
    assert "ready; Ctrl-C" in out and "stopped; scored 5 items in 1 batches" in out, out[-3000:]
    assert alive(kids) == [], f"left running after {sig.name}: {alive(kids)}"


def test_serve_without_pytriton_says_how_to_install_it(engine, monkeypatch, capsys):
    from lfdn_edge.cli import main

    monkeypatch.setitem(sys.modules, "pytriton", None)  # find_spec -> None: as if not installed
    assert main(["serve", str(engine)]) == 2
    err = capsys.readouterr().err
    assert "pip install 'lfdn-edge[serve]'" in err and err.startswith("error: ")


def test_server_options_are_checked_before_starting(engine):
    _need_pytriton()
    from lfdn_edge import Scorer
    from lfdn_edge.runtime.triton_server import ScoreServer

    scorer = Scorer(engine)  # uncalibrated: no threshold
    with pytest.raises(ValueError, match="no calibrated threshold"):
        ScoreServer(scorer)
    scorer.threshold = 0.0
    with pytest.raises(ValueError, match="ports must differ"):
        ScoreServer(scorer, http_port=9000, grpc_port=9000, metrics_port=9002)
    with pytest.raises(ValueError, match="max_batch"):
        ScoreServer(scorer, max_batch=0)


def test_requests_merged_into_one_batch_get_their_own_rows_back(engine, monkeypatch):
    """The model function without a server (runs without PyTriton, so in the main venv too): the requests of
    one batch are concatenated in order and the outputs split at the same bounds, so each request gets the
    scores of its own rows (request sizes all differ, so a reversed or shuffled merge or split shows)."""
    import lfdn_edge.runtime.triton_server as ts
    from lfdn_edge import Scorer

    monkeypatch.setattr(ts, "pytriton_available", lambda: (True, ""))  # ScoreServer() checks, start() needs it
    scorer = Scorer(engine)
    server = ts.ScoreServer(scorer, threshold=THRESHOLD)
    sizes = (3, 1, 5, 2)
    requests = [{"features": _features(n, seed=20 + i)} for i, n in enumerate(sizes)]
    answers = server._infer(requests)
    assert server.batches == [(len(sizes), sum(sizes))]
    assert len(answers) == len(requests)
    for req, ans in zip(requests, answers):
        n = req["features"].shape[0]
        want = scorer.explain(req["features"])
        assert sorted(ans) == sorted(ts.OUTPUTS)
        assert {k: v.shape for k, v in ans.items()} == {"score": (n, 1), "is_ood": (n, 1), "mse": (n, 1),
                                                        "mfsim": (n, 1), "stage_cos": (n, 3), "threshold": (n, 1)}
        for k in ("score", "mse", "mfsim"):
            np.testing.assert_allclose(ans[k][:, 0], want[k], rtol=1e-5, atol=1e-6, err_msg=k)
        np.testing.assert_allclose(ans["stage_cos"], want["stage_cos"], rtol=1e-5, atol=1e-6)
        assert np.array_equal(ans["is_ood"][:, 0], want["score"] > THRESHOLD)
        assert ans["threshold"].dtype == np.float64 and np.all(ans["threshold"] == THRESHOLD)
    one = server._infer(requests[2:3])[0]  # a batch of one request: no concatenation
    np.testing.assert_allclose(one["score"][:, 0], scorer.explain(requests[2]["features"])["score"], rtol=1e-5)


def test_frames_engine_serves_uint8_images(tmp_path):
    """An engine that includes the backbone: clients send uint8 RGB frames as 'images'."""
    _need_pytriton()
    import torch
    import tritonclient.http as httpclient

    from lfdn_edge import Scorer
    from lfdn_edge.backbones import get_backbone
    from lfdn_edge.builder.dispatch import build_engine
    from lfdn_edge.checkpoint import save_checkpoint
    from lfdn_edge.diffusion import DiffusionConfig
    from lfdn_edge.features import FeatureConfig
    from lfdn_edge.model import LFDN, LFDNConfig
    from lfdn_edge.probes import onnx_usable
    from lfdn_edge.reference import ScoreConfig
    from lfdn_edge.runtime.triton_server import ScoreServer

    if not onnx_usable()[0]:
        pytest.skip(onnx_usable()[1])
    dims = list(get_backbone("efficientnet-lite0").stage_dims)
    torch.manual_seed(0)
    cfg = LFDNConfig(in_dim=sum(dims), width=32, depth=1, emb_dim=16)
    data = {"feature": FeatureConfig(backbone="efficientnet-lite0", input_size=32).to_dict(), "layout": {"stage_dims": dims},
            "model": cfg.to_dict(), "diffusion": DiffusionConfig().to_dict(), "score": ScoreConfig().to_dict(),
            "ema": LFDN(cfg).state_dict(), "calibration": None}
    ckpt = save_checkpoint(data, tmp_path / "img.pt")
    engine = build_engine(ckpt, backend="onnx", include_backbone=True, image_size=(24, 40), batch=(1, 8, 16),
                          out=tmp_path / "img.engine")
    frames = np.random.default_rng(0).integers(0, 256, (6, 24, 40, 3), dtype=np.uint8)
    scorer = Scorer(engine)
    want = scorer.score(frames)
    scorer.threshold = float(np.median(want))
    h, g, m = free_ports(3)
    with ScoreServer(scorer, http_port=h, grpc_port=g, metrics_port=m, log_file=tmp_path / "t.log") as server:
        cl = httpclient.InferenceServerClient(f"127.0.0.1:{h}")
        got = []
        for s, e in ((0, 2), (2, 3), (3, 6)):
            inp = httpclient.InferInput("images", [e - s, 24, 40, 3], "UINT8")
            inp.set_data_from_numpy(frames[s:e])
            res = cl.infer(server.model_name, [inp])
            got.append(res.as_numpy("score")[:, 0])
            assert res.as_numpy("stage_cos").shape == (e - s, len(dims))
        cl.close()
    # the frames engine's scores; compared with a tolerance because onnxruntime's convolutions may round
    # differently for another batch size (the features engines above are compared bit for bit)
    np.testing.assert_allclose(np.concatenate(got), want, rtol=1e-5, atol=1e-6)


def _lite0_checkpoint(path, input_size=32):
    """A checkpoint on EfficientNet-Lite0 features (random LFDN weights): real backbone stages, so a stream can
    compute its features from frames."""
    import torch

    from lfdn_edge.backbones import get_backbone
    from lfdn_edge.checkpoint import save_checkpoint
    from lfdn_edge.diffusion import DiffusionConfig
    from lfdn_edge.features import FeatureConfig
    from lfdn_edge.model import LFDN, LFDNConfig
    from lfdn_edge.reference import ScoreConfig

    dims = list(get_backbone("efficientnet-lite0").stage_dims)
    torch.manual_seed(0)
    cfg = LFDNConfig(in_dim=sum(dims), width=32, depth=1, emb_dim=16)
    data = {"feature": FeatureConfig(backbone="efficientnet-lite0", input_size=input_size).to_dict(),
            "layout": {"stage_dims": dims}, "model": cfg.to_dict(), "diffusion": DiffusionConfig().to_dict(),
            "score": ScoreConfig().to_dict(), "ema": LFDN(cfg).state_dict(), "calibration": None}
    return save_checkpoint(data, path)


STREAM_SRC = "test://pattern?live=0&size=80x48&frames=12&anomaly=4-7&name=cam"


def _stream_scores(scorer):
    import lfdn_edge.stream as ls

    with ls.open([STREAM_SRC], scorer, torch_threads=1) as s:
        res = [r for r in s if isinstance(r, ls.Result)]
    assert [r.frame for r in res] == list(range(12)) and all(r.health == "ok" for r in res)
    return np.array([r.score for r in res]), [r.threshold for r in res]


def test_stream_triton_mode_scores_frames_on_the_server_like_the_local_scorer(tmp_path, engine):
    """`lfdn-edge stream --triton`: frames decoded here, scored by a running server (a frames engine: resized
    here, backbone on the server; a checkpoint on features: features computed here with the local engine's
    backbone). The scores are the in-process Scorer's (within the tolerance of the frames engine test above)
    over HTTP, gRPC and the command; the default alert threshold is the server's, exactly."""
    _need_pytriton()
    from lfdn_edge import Scorer
    from lfdn_edge.builder.dispatch import build_engine
    from lfdn_edge.probes import onnx_usable
    from lfdn_edge.runtime.triton_client import TritonScorer
    from lfdn_edge.runtime.triton_server import ScoreServer

    if not onnx_usable()[0]:
        pytest.skip(onnx_usable()[1])
    ckpt = _lite0_checkpoint(tmp_path / "lite0.pt")
    frames_engine = build_engine(ckpt, backend="onnx", include_backbone=True, image_size=(24, 40), batch=(1, 4, 8),
                                 out=tmp_path / "frames.engine")
    local = Scorer(frames_engine, threshold=0.0)   # random weights, uncalibrated: a threshold for the first pass
    want, _ = _stream_scores(local)
    local.threshold = thr = float(np.median(want)) + 1e-3
    h, g, m = free_ports(3)
    with ScoreServer(local, http_port=h, grpc_port=g, metrics_port=m, max_batch=8, log_file=tmp_path / "t.log"):
        for url in (f"http://127.0.0.1:{h}", f"grpc://127.0.0.1:{g}"):
            with TritonScorer(url) as remote:
                assert remote.includes_backbone and remote.input_shape == (-1, 24, 40, 3)
                assert remote.batch_range == (1, 8) and remote.threshold == thr   # float64 output: exact
                got, thrs = _stream_scores(remote)
                assert set(thrs) == {thr} and remote.calls == 1 + 12   # the probe, then one frame per tick
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=url)
            assert 0 < int((got > thr).sum()) < 12
        p = subprocess.run([sys.executable, "-m", "lfdn_edge", "stream", STREAM_SRC, "--triton", f"127.0.0.1:{h}",
                            "--out", str(tmp_path / "r.jsonl")], capture_output=True, text=True, timeout=300, cwd=ROOT)
        assert p.returncode == 0, p.stderr[-3000:]
        lines = [json.loads(x) for x in (tmp_path / "r.jsonl").read_text(encoding="utf-8").splitlines()]
        res = [x for x in lines if x["type"] == "result"]
        np.testing.assert_allclose([x["score"] for x in res], want, rtol=1e-5, atol=1e-6)
        assert {x["threshold"] for x in res} == {round(thr, 7)}
        assert sum(x["type"] == "event" and x["event"] == "start" for x in lines) >= 1
        bad = subprocess.run([sys.executable, "-m", "lfdn_edge", "stream", STREAM_SRC, "--triton",
                              f"http://127.0.0.1:{h}", "--triton-model", "nope"],
                             capture_output=True, text=True, timeout=300, cwd=ROOT)
        assert bad.returncode == 2 and "no ready model 'nope'" in bad.stderr, bad.stderr[-2000:]
    # a model on features: the stream computes them here, with the backbone of a local copy of the engine
    feats = Scorer(ckpt, threshold=-0.5)
    want_f, _ = _stream_scores(feats)
    h, g, m = free_ports(3)
    with ScoreServer(feats, http_port=h, grpc_port=g, metrics_port=m, max_batch=8, log_file=tmp_path / "f.log"):
        url = f"http://127.0.0.1:{h}"
        with pytest.raises(ValueError, match=r"takes features \[-1, \d+\].*give that engine or its checkpoint"):
            TritonScorer(url)
        with pytest.raises(ValueError, match="not the engine it was built from"):
            TritonScorer(url, feature_source=engine)   # the tiny 96-feature engine: another backbone
        with TritonScorer(url, feature_source=ckpt) as remote:
            assert not remote.includes_backbone and remote.threshold == -0.5
            got, _ = _stream_scores(remote)
        np.testing.assert_allclose(got, want_f, rtol=1e-5, atol=1e-6)
        p = subprocess.run([sys.executable, "-m", "lfdn_edge", "stream", STREAM_SRC, "--triton", url],
                           capture_output=True, text=True, timeout=300, cwd=ROOT)
        assert p.returncode == 2 and "--engine" in p.stderr and "takes features" in p.stderr, p.stderr[-2000:]


def test_stream_triton_mode_rides_out_a_server_restart(tmp_path):
    """A live camera scored by a Triton server that is stopped mid-stream and started again on the same ports
    2 s later: the stream goes on (results without a score meanwhile), the camera gets scorer_unavailable then
    scorer_back, and the scores after the restart are the server's again (finite, its threshold)."""
    _need_pytriton()
    import lfdn_edge.stream as ls
    from lfdn_edge import Scorer
    from lfdn_edge.runtime.triton_client import TritonScorer
    from lfdn_edge.runtime.triton_server import ScoreServer

    ckpt = _lite0_checkpoint(tmp_path / "lite0.pt")
    local = Scorer(ckpt, threshold=-0.5)
    h, g, m = free_ports(3)

    def serve(name):
        return ScoreServer(local, http_port=h, grpc_port=g, metrics_port=m, max_batch=8, log_file=tmp_path / name)

    server = serve("t1.log")
    server.__enter__()
    recs, marks = [], {}
    try:
        with TritonScorer(f"http://127.0.0.1:{h}", feature_source=ckpt) as remote, \
                ls.open(["test://pattern?size=80x48&fps=10&name=cam"], remote, duration=120.0,
                        scorer_backoff=ls.Backoff(0.2, 0.5, jitter=0.0)) as s:
            for r in s:
                recs.append(r)
                scored = [x for x in recs if isinstance(x, ls.Result) and x.score is not None]
                if "down" not in marks and len(scored) >= 10:
                    server.__exit__(None, None, None)
                    server = None
                    marks["down"], marks["n_before"] = time.time(), len(scored)
                elif "down" in marks and "up" not in marks and time.time() - marks["down"] >= 2.0:
                    server = serve("t2.log")
                    server.__enter__()
                    marks["up"] = time.time()
                elif "up" in marks and len(scored) >= marks["n_before"] + 10:
                    break
            summary = s.summary().cameras["cam"]
    finally:
        if server is not None:
            server.__exit__(None, None, None)
    res = [x for x in recs if isinstance(x, ls.Result)]
    st = [(x.status, x.detail) for x in recs if isinstance(x, ls.Status) and x.status.startswith("scorer_")]
    assert [k for k, _ in st] == ["scorer_unavailable", "scorer_back"], st
    assert "Triton at http://127.0.0.1:" in st[0][1] and "retry in 0.20 s" in st[0][1], st
    gap = [x for x in res if x.score is None]
    assert gap and all(x.health == "ok" and marks["down"] - 1.0 <= x.score_time for x in gap)
    after = [x for x in res if x.score is not None and x.score_time > marks["up"]]
    assert len(after) >= 10 and all(np.isfinite(x.score) and x.threshold == -0.5 for x in after)
    assert summary["unscored"] == len(gap) and summary["scored"] + len(gap) == summary["frames"]

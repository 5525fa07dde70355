"""tools/stream_bench.py smoke run: 2 small cameras for 2 s, the three variants, the JSON's fields (not the numbers:
they depend on the machine's load). A tiny checkpoint on random Lite0-layout features: the bench only needs
something to score with."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("av", reason="PyAV (the [stream] extra) writes and decodes the clips")
pytest.importorskip("cv2", reason="the plain loop reads with OpenCV (opencv-python-headless)")

ROOT = Path(__file__).resolve().parents[1]


def test_stream_bench_smoke(tmp_path):
    from lfdn_edge.features import FeatureConfig, MultiLayerFeatures
    from lfdn_edge.model import LFDNConfig
    from lfdn_edge.train import TrainConfig, train_lfdn

    fc = FeatureConfig(backbone="efficientnet-lite0", input_size=64)
    layout = MultiLayerFeatures(fc).layout
    z = np.random.default_rng(0).normal(size=(48, layout.dim)).astype(np.float32)
    ckpt = train_lfdn(z[:32], layout, fc, tmp_path / "ckpt.pt", LFDNConfig(in_dim=layout.dim, width=32, depth=1,
                                                                          emb_dim=16),
                      TrainConfig(epochs=1, batch_size=16, seed=0, early_epoch=1), cal_features=z[32:],
                      progress=False).path
    out = tmp_path / "bench.json"
    p = subprocess.run([sys.executable, str(ROOT / "tools" / "stream_bench.py"), "--engine", str(ckpt), "--cameras", "2",
                        "--duration", "2", "--warmup", "0.5", "--grace", "0.5", "--clips", "1", "--size", "160x120",
                        "--no-stages", "--asap-cameras", "0", "--workdir", str(tmp_path / "clips"), "--out", str(out)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-3000:]
    res = json.loads(out.read_text())
    assert set(res["machine"]) >= {"cpu_model", "cores", "loadavg_start", "loadavg_end"}
    assert res["commit"] and res["date"]
    assert res["settings"]["fps"] == 15.0 and res["settings"]["duration_s"] == 2.0
    assert [(r["cameras"], r["variant"]) for r in res["results"]] == [(2, "stream"), (2, "loop"), (2, "loop-every")]
    for r in res["results"]:
        assert r["scored"] > 0 and r["scored_fps"] > 0
        assert r["expected_frames"] == 2 * 30 or abs(r["expected_frames"] - 60) <= 2
        assert r["dropped"] == max(0, r["expected_frames"] - r["scored"])
        assert set(r["per_camera_fps"]) == {"cam00", "cam01"}
        assert r["fairness_max_over_min"] >= 1.0
        assert 0 < r["latency_s"]["p50"] <= r["latency_s"]["p99"] <= r["latency_s"]["max"]
        assert {"loadavg_before", "loadavg_after", "process_cpu_cores"} <= set(r["cpu"])
    assert res["results"][0]["scoring_stage"]["calls"] > 0
    assert "late" in res["results"][0]["reader_dropped_whole_run"]
    assert {"events", "segments", "precision", "recall"} <= set(res["results"][0]["events"])
    cal = res["settings"]["alert_threshold"]
    assert cal["frames"] == 90 and cal["on"] == pytest.approx(cal["normal_mean"] + 6 * cal["normal_std"])

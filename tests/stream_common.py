"""Shared by the stream tests: a small LFDN trained on Lite0 (64 px) features of given camera frames; test://
scene videos written with PyAV; the check that a stream left no thread behind."""

from __future__ import annotations

import threading

import numpy as np

PIX_FMT = {"libx264": "yuv420p", "mjpeg": "yuvj420p", "ffv1": "yuv420p"}


def stream_threads():
    """The stream's threads still alive (readers, clip writer, HTTP server: all named lfdn-stream-...)."""
    return [t for t in threading.enumerate() if t.name.startswith("lfdn-stream-")]


def write_video(path, codec, n, anomalies, size, fps=15, seed=5, options=None):
    """n frames of the test:// scene (frames in ``anomalies`` replaced by the checkerboard) encoded with
    ``codec`` (libx264, mjpeg, ffv1) at ``size`` (W, H) and ``fps`` into ``path``."""
    import av

    from lfdn_edge.stream.synthetic import SyntheticConfig, render

    cfg = SyntheticConfig(size=size, anomalies=tuple(anomalies), seed=seed, fps=fps)
    with av.open(str(path), "w") as out:
        st = out.add_stream(codec, rate=fps, options=options or {})
        st.width, st.height = size
        st.pix_fmt = PIX_FMT[codec]
        for k in range(n):
            for p in st.encode(av.VideoFrame.from_ndarray(render(cfg, k), format="rgb24")):
                out.mux(p)
        for p in st.encode():
            out.mux(p)
    return path


def train_scene_model(frame_sets, out_dir, n_train: int):
    """(checkpoint path, MFsim scores of the held-out calibration frames): the features of every (N, H, W, 3)
    uint8 array in frame_sets (sizes may differ between them; PyTorch at 1
    thread, as the stream scores: much faster on 2 busy cores), shuffled, the first n_train trained on and
    the rest used to calibrate."""
    import torch

    from lfdn_edge.features import FeatureConfig, MultiLayerFeatures
    from lfdn_edge.model import LFDNConfig
    from lfdn_edge.runtime.scorer import Scorer
    from lfdn_edge.train import TrainConfig, train_lfdn

    fc = FeatureConfig(backbone="efficientnet-lite0", input_size=64)
    ex = MultiLayerFeatures(fc).eval()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.inference_mode():
            z = np.concatenate([ex(torch.from_numpy(f)).numpy() for f in frame_sets])
        z = z[np.random.default_rng(0).permutation(len(z))]
        path = train_lfdn(z[:n_train], ex.layout, fc, out_dir / "ckpt.pt",
                          LFDNConfig(in_dim=ex.layout.dim, width=64, depth=2, emb_dim=32),
                          TrainConfig(epochs=6, batch_size=32, lr=1e-3, seed=0, early_epoch=1),
                          cal_features=z[n_train:], progress=False).path
        cal = Scorer(path).score(z[n_train:])
    finally:
        torch.set_num_threads(threads)
    return path, np.asarray(cal, dtype=np.float64)

"""The lfdn-edge console commands and the rough edges a new user hits: auto backend choice, ignored options,
error classes (user error: one line; bug: traceback), progress flags, far-OOD wording, Scorer hints,
threads, the score and bench commands."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
LITE0_STAGES = [16, 24, 40, 112, 320]


def lfdn_edge_cmd(*args, timeout=600):
    """``python -m lfdn_edge ...``: the same entry point as the ``lfdn-edge`` console script."""
    return subprocess.run([sys.executable, "-m", "lfdn_edge", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def tiny_checkpoint(path: Path, stage_dims=(4, 8), calibrated: bool = True):
    from lfdn_edge.checkpoint import Checkpoint, save_checkpoint
    from lfdn_edge.diffusion import DiffusionConfig
    from lfdn_edge.features import FeatureConfig
    from lfdn_edge.model import LFDN, LFDNConfig
    from lfdn_edge.reference import ScoreConfig

    torch.manual_seed(0)
    cfg = LFDNConfig(in_dim=sum(stage_dims), width=16, depth=2, emb_dim=16)
    model = LFDN(cfg)
    cal = {"tpr": 0.95, "n": 10, "thresholds": {"mfsim": -0.5, "mse": 1.0}} if calibrated else None
    data = {"feature": FeatureConfig(backbone="efficientnet-lite0").to_dict(), "layout": {"stage_dims": list(stage_dims)}, "model": cfg.to_dict(),
            "diffusion": DiffusionConfig().to_dict(), "score": ScoreConfig().to_dict(),
            "ema": model.state_dict(), "calibration": cal}
    save_checkpoint(data, path)
    return Checkpoint.load(path)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("cli") / "tiny.pt")


# ------------------------------------------------------------------------------------------- commands
def test_console_command_lists_and_runs_every_subcommand():
    r = lfdn_edge_cmd("--help")
    assert r.returncode == 0
    for sub in ("train", "evaluate", "build", "bench", "score"):
        assert f"  {sub} " in r.stdout
        h = lfdn_edge_cmd(sub, "--help")
        assert h.returncode == 0 and f"usage: lfdn-edge {sub}" in h.stdout, h.stderr
    r = lfdn_edge_cmd("frobnicate")
    assert r.returncode == 2 and "unknown command 'frobnicate'" in r.stderr
    # the documented script form keeps working and is the same command
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "build_engine.py"), "--help"], capture_output=True,
                       text=True, cwd=ROOT)
    assert r.returncode == 0 and "--score-type" in r.stdout and "--trt-flavor" in r.stdout and "--opset" in r.stdout


def test_defaults_come_from_one_place(monkeypatch):
    """argparse, the config dataclasses and the library functions all read lfdn_edge.defaults."""
    import inspect

    from lfdn_edge import defaults
    from lfdn_edge.cli import build as build_cli
    from lfdn_edge.cli import train as train_cli
    from lfdn_edge.data import load_benchmark, resolve_split
    from lfdn_edge.model import LFDNConfig
    from lfdn_edge.train import TrainConfig
    from lfdn_edge.workflow import train_from_data

    args = train_cli.build_parser().parse_args(["--out", "x.pt"])
    assert (args.width, args.depth, args.epochs, args.lr, args.t, args.input_size) == \
        (defaults.WIDTH, defaults.DEPTH, defaults.EPOCHS, defaults.LR, defaults.T, defaults.INPUT_SIZE)
    assert args.n_train is None  # the data's own split (lfdn_edge.data.resolve_split, from defaults)
    cfg, tc = LFDNConfig(in_dim=8), TrainConfig()
    assert (cfg.width, cfg.depth, cfg.emb_dim) == (args.width, args.depth, args.emb_dim)
    assert (tc.epochs, tc.lr, tc.batch_size, tc.ema_decay) == (args.epochs, args.lr, args.batch_size, args.ema_decay)
    assert inspect.signature(load_benchmark).parameters["n_train"].default is None
    assert resolve_split("fmnist-ood")[0] == resolve_split("/a/folder")[0] == defaults.N_TRAIN
    assert inspect.signature(train_from_data).parameters["model_width"].default == defaults.WIDTH
    b = build_cli.build_parser().parse_args(["c.pt"])
    assert b.batch == defaults.ENGINE_BATCH and b.opset == defaults.ONNX_OPSET


# ------------------------------------------------------------------------------------------- build
def test_auto_backend_can_do_what_was_asked(monkeypatch):
    from lfdn_edge.builder import dispatch

    monkeypatch.setattr(dispatch, "tensorrt_usable", lambda: (False, "no CUDA GPU found"))
    monkeypatch.setattr(dispatch, "native_usable", lambda: (True, ""))
    monkeypatch.setattr(dispatch, "onnx_usable", lambda: (True, ""))
    assert dispatch.choose_backend("auto")[0] == "native"
    name, why = dispatch.choose_backend("auto", include_backbone=True)
    assert name == "onnx" and "cannot include the backbone" in why
    monkeypatch.setattr(dispatch, "onnx_usable", lambda: (False, "onnx not installed"))
    with pytest.raises(RuntimeError, match="no backend can build an engine here"):
        dispatch.choose_backend("auto", include_backbone=True)


@pytest.mark.parametrize("cc,ok", [("8.6", True), ("8.9", True), ("8.7", False), ("9.0", False)])
def test_tensorrt_rtx_alone_is_not_usable_on_gpus_it_does_not_support(monkeypatch, cc, ok):
    from lfdn_edge import probes

    monkeypatch.setattr(probes, "module_installed", lambda m: m == "tensorrt_rtx")
    monkeypatch.setattr(probes, "cuda_device_info", lambda i=0: probes.CudaDevice(0, "GPU", cc, "12.6"))
    usable, why = probes.tensorrt_usable()
    assert usable is ok
    if not ok:
        assert f"compute capability {cc}" in why and "full TensorRT" in why
    monkeypatch.setattr(probes, "module_installed", lambda m: m in ("tensorrt", "tensorrt_rtx"))
    assert probes.tensorrt_usable() == (True, "")  # full TensorRT runs on every CUDA GPU it knows


def test_build_cli_options_reach_the_engine_and_ignored_ones_are_said(ckpt, tmp_path):
    pytest.importorskip("onnxruntime")
    out = tmp_path / "e.engine"
    r = lfdn_edge_cmd("build", ckpt.path, "--backend", "onnx", "--score-type", "mse", "--workspace", "512",
                      "--opset", "18", "-o", out)
    assert r.returncode == 0, r.stderr
    assert "--workspace applies to TensorRT builds only; ignored for the onnx backend" in r.stdout
    from lfdn_edge.artifact.file import read_engine

    h = read_engine(out).header
    assert h["score_type"] == "mse" and h["onnx_opset"] == 18 and h["threshold"] == 1.0
    r = lfdn_edge_cmd("build", ckpt.path, "--backend", "onnx", "--opset", "13", "-o", tmp_path / "f.engine")
    assert r.returncode == 2 and "opset must be >= 17" in r.stderr and "Traceback" not in r.stderr


# ------------------------------------------------------------------------------------------- errors
def test_user_errors_are_one_line_and_bugs_keep_their_traceback(capsys):
    from argparse import Namespace

    from lfdn_edge.cli.common import run_cli
    from lfdn_edge.errors import TrainingDiverged, UnavailableError

    for exc in (TrainingDiverged("training diverged at epoch 3"), UnavailableError("no GPU"), ValueError("bad"),
                FileNotFoundError("missing")):
        def body(e=exc):
            raise e
        assert run_cli(Namespace(), body) == 2
        assert capsys.readouterr().err.strip() == f"error: {exc}"
    for bug in (KeyError("weights"), RuntimeError("internal")):
        def body(e=bug):
            raise e
        with pytest.raises(type(bug)):
            run_cli(Namespace(), body)


def test_divergence_is_a_training_diverged_error(tmp_path):
    from lfdn_edge.errors import TrainingDiverged
    from lfdn_edge.features import FeatureConfig, FeatureLayout
    from lfdn_edge.model import LFDNConfig
    from lfdn_edge.train import TrainConfig, train_lfdn

    feats = np.full((64, 12), 3e19, dtype=np.float32)  # finite, but its square overflows float32
    with pytest.raises(TrainingDiverged, match="training diverged at epoch 1"):
        train_lfdn(feats, FeatureLayout((4, 8)), FeatureConfig(), tmp_path / "d.pt",
                   LFDNConfig(in_dim=12, width=16, depth=1, emb_dim=16), TrainConfig(epochs=1, batch_size=64),
                   progress=False)
    assert issubclass(TrainingDiverged, FloatingPointError)


# ------------------------------------------------------------------------------------------- progress
def test_folder_loading_bar_follows_the_progress_flag(tmp_path, capsys):
    from PIL import Image

    from lfdn_edge.data import image_folder

    for i in range(520):  # above the bar's 500-file floor
        Image.new("RGB", (4, 4), (i % 256, 0, 0)).save(tmp_path / f"{i:04d}.png")
    image_folder(tmp_path, 8, progress=False)
    assert "loading" not in capsys.readouterr().err
    image_folder(tmp_path, 8, progress=True)
    assert "loading" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------- evaluate
def test_user_ood_sets_are_not_called_far_ood(ckpt):
    from lfdn_edge.evaluate import evaluate_features, format_table

    rng = np.random.default_rng(0)
    train, test = rng.standard_normal((50, 12)), rng.standard_normal((40, 12))
    ood = {"folder_a": rng.standard_normal((30, 12)) * 3, "folder_b": rng.standard_normal((30, 12)) + 2}
    report = evaluate_features(ckpt, train, test, ood, far_ood=()).report
    table = format_table(report)
    assert "far-OOD mean" not in table and "mean, all OOD" in table
    assert report["far_ood_mean"] == {} and set(report["ood_mean"]) >= {"mfsim", "mse"}
    known = format_table(evaluate_features(ckpt, train, test, ood, far_ood=("folder_b",)).report)
    assert "far-OOD mean" in known and "mean, all OOD" in known


# ------------------------------------------------------------------------------------------- Scorer
def test_scorer_hints_are_right(ckpt, tmp_path):
    from lfdn_edge import Scorer, build_artifact
    from lfdn_edge.probes import native_usable

    with pytest.raises(FileNotFoundError, match="no such engine or checkpoint file"):
        Scorer(tmp_path / "missing.pt")
    with pytest.raises(ValueError, match=r"lfdn-edge build CKPT --backend native.*build_artifact\(ckpt, 'native'\)"):
        Scorer(ckpt.path, backend="native")
    if native_usable()[0]:  # what the hint says works
        x = np.random.default_rng(1).standard_normal((5, 12)).astype(np.float32)
        got = Scorer(build_artifact(ckpt, "native")).score(x)
        np.testing.assert_allclose(got, Scorer(ckpt.path).score(x), rtol=1e-4, atol=1e-5)


def test_scorer_threads(ckpt):
    from lfdn_edge import Scorer, build_artifact
    from lfdn_edge.probes import native_usable

    with pytest.raises(ValueError, match="threads= applies to the native and onnxruntime backends"):
        Scorer(ckpt.path, threads=2)
    if not native_usable()[0]:
        pytest.skip(native_usable()[1])
    art = build_artifact(ckpt, "native")
    x = np.random.default_rng(2).standard_normal((9, 12)).astype(np.float32)
    one, two = Scorer(art, threads=1), Scorer(art, threads=2)
    assert one._backend.engine.threads == 1 and two._backend.engine.threads == 2
    np.testing.assert_array_equal(one.score(x), two.score(x))  # rows do not depend on the thread count
    with pytest.raises(ValueError, match="threads must be >= 1"):
        Scorer(art, threads=0)


# ------------------------------------------------------------------------------------------- score / bench
def test_score_command_on_feature_arrays(ckpt, tmp_path):
    from lfdn_edge import Scorer

    x = np.random.default_rng(3).standard_normal((7, 12)).astype(np.float32)
    np.save(tmp_path / "f.npy", x)
    ref = Scorer(ckpt.path).score(x)
    t = float(np.sort(ref)[3])  # a threshold inside the scores: 3 items above it, 4 at or below
    r = lfdn_edge_cmd("score", ckpt.path, tmp_path / "f.npy", "--json", tmp_path / "s.json", "--threshold", repr(t))
    assert r.returncode == 0, r.stderr
    doc = json.loads((tmp_path / "s.json").read_text())
    np.testing.assert_allclose([i["score"] for i in doc["items"]], ref, rtol=1e-6)
    assert [i["is_ood"] for i in doc["items"]] == [bool(v > t) for v in ref]
    assert sum(i["is_ood"] for i in doc["items"]) == 3
    assert "3 flagged OOD at threshold" in r.stdout
    np.save(tmp_path / "bad.npy", x[:, :5])
    r = lfdn_edge_cmd("score", ckpt.path, tmp_path / "bad.npy")
    assert r.returncode == 2 and "expected features of shape (N, 12)" in r.stderr


def test_score_command_on_images_computes_features_with_the_engines_backbone(tmp_path):
    from PIL import Image

    from lfdn_edge import Scorer
    from lfdn_edge.features import FeatureConfig, MultiLayerFeatures

    ck = tiny_checkpoint(tmp_path / "lite0.pt", LITE0_STAGES)
    rng = np.random.default_rng(4)
    frames = rng.integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    for i, f in enumerate(frames):
        Image.fromarray(f).save(tmp_path / f"img{i}.png")
    r = lfdn_edge_cmd("score", ck.path, *(tmp_path / f"img{i}.png" for i in range(3)), "--json", tmp_path / "s.json",
                      "--quiet")
    assert r.returncode == 0, r.stderr
    got = [i["score"] for i in json.loads((tmp_path / "s.json").read_text())["items"]]
    with torch.inference_mode():
        feats = MultiLayerFeatures(FeatureConfig(backbone="efficientnet-lite0")).eval()(torch.from_numpy(frames)).numpy()
    np.testing.assert_allclose(got, Scorer(ck.path).score(feats), rtol=1e-4, atol=1e-6)


def test_bench_dry_run_lists_the_gpu_variants_without_a_gpu():
    r = lfdn_edge_cmd("bench", "--backends", "torch-fp32,torch-fp16,torch-compile-fp16,torch-compile-fp16-ro,native-fp16",
                      "--batch", "1,8,64,256,1024", "--device", "cuda", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "variants torch, torch-fp16, torch-compile-fp16, torch-compile-fp16-ro, native-fp16" in r.stdout
    r = lfdn_edge_cmd("bench", "--backends", "torch,torch-fp32", "--dry-run")
    assert r.returncode == 2 and "names a variant twice" in r.stderr
    r = lfdn_edge_cmd("bench", "--backends", "tensorflow", "--dry-run")
    assert r.returncode == 2 and "unknown backend 'tensorflow'" in r.stderr


def test_bench_torch_fp16_variant_runs_and_reports_its_fp16_error(ckpt, tmp_path):
    out = tmp_path / "b.json"
    r = lfdn_edge_cmd("bench", "--ckpt", ckpt.path, "--backends", "torch,torch-fp16", "--batch", "2",
                      "--min-time", "0", "--min-reps", "2", "--warmup", "1", "--parity-batch", "8", "--json", out)
    assert r.returncode == 0, r.stderr
    rep = json.loads(out.read_text())
    assert {(x["backend"], x["batch"]) for x in rep["results"]} == {("torch", 2), ("torch-fp16", 2)}
    err = rep["parity_vs_torch"]["torch-fp16"]["mse_max_rel_err"]
    assert 0 < err < 5e-2  # FP16 Linear layers: a real, small error against the FP32 reference


def test_from_checkpoint_names_the_way_to_other_backends(ckpt):
    from lfdn_edge import Scorer

    with pytest.raises(ValueError, match=r"build_artifact\(ckpt, 'onnx'\)"):
        Scorer.from_checkpoint(ckpt, backend="onnxruntime")
    s = Scorer.from_checkpoint(ckpt, precision="fp16")
    assert s.backend_name == "torch" and s.header["precision"] == "fp16"

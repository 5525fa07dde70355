"""`lfdn-edge export-triton`: the model repository's config.pbtxt parses with Triton's own ModelConfig protobuf
schema (tritonclient ships it) and says what the model is; the ONNX model, run with onnxruntime, gives exactly
the scores of the Scorer on the onnx engine built with the same options; the write is atomic and leaves the
other models of the repository alone. (Running the repository needs a full Triton with the onnxruntime or
tensorrt backend, which PyPI does not have; see docs/SCALE_OUT.md.)"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lfdn_edge.probes import onnx_usable

pytestmark = pytest.mark.skipif(not onnx_usable()[0], reason=onnx_usable()[1])
STAGES = [16, 32, 48]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    import torch

    from lfdn_edge.checkpoint import save_checkpoint
    from lfdn_edge.diffusion import DiffusionConfig
    from lfdn_edge.features import FeatureConfig
    from lfdn_edge.model import LFDN, LFDNConfig
    from lfdn_edge.reference import ScoreConfig

    torch.manual_seed(0)
    cfg = LFDNConfig(in_dim=sum(STAGES), width=64, depth=2, emb_dim=32)
    data = {"feature": FeatureConfig(input_size=32).to_dict(), "layout": {"stage_dims": STAGES},
            "model": cfg.to_dict(), "diffusion": DiffusionConfig().to_dict(), "score": ScoreConfig().to_dict(),
            "ema": LFDN(cfg).state_dict(),
            "calibration": {"tpr": 0.95, "n": 10, "thresholds": {"mfsim": -0.25, "mse": 1.5}}}
    return save_checkpoint(data, tmp_path_factory.mktemp("triton") / "ckpt.pt")


def parse_config(path: Path):
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())  # unknown fields raise


def test_config_follows_tritons_schema_and_describes_the_model(ckpt, tmp_path):
    from tritonclient.grpc import model_config_pb2 as pb

    from lfdn_edge.builder.triton_repo import export_triton_repository

    model_dir = export_triton_repository(ckpt, tmp_path / "repo", batch=(1, 16, 48), instances=2,
                                         instance_kind="KIND_CPU", max_queue_delay_us=750)
    assert model_dir == tmp_path / "repo" / "lfdn_edge"
    assert sorted(p.relative_to(model_dir).as_posix() for p in model_dir.rglob("*")) == \
        ["1", "1/model.onnx", "config.pbtxt"]
    c = parse_config(model_dir / "config.pbtxt")
    assert c.name == "lfdn_edge" and c.platform == "onnxruntime_onnx" and c.max_batch_size == 48
    assert [(i.name, i.data_type, list(i.dims)) for i in c.input] == [("features", pb.TYPE_FP32, [96])]
    outs = {o.name: (o.data_type, list(o.dims), o.HasField("reshape"), list(o.reshape.shape)) for o in c.output}
    assert outs == {"score": (pb.TYPE_FP32, [1], True, []), "mse": (pb.TYPE_FP32, [1], True, []),
                    "mfsim": (pb.TYPE_FP32, [1], True, []), "stage_cos": (pb.TYPE_FP32, [3], False, [])}
    assert list(c.dynamic_batching.preferred_batch_size) == [16, 48]
    assert c.dynamic_batching.max_queue_delay_microseconds == 750
    assert [(g.count, g.kind) for g in c.instance_group] == [(2, pb.ModelInstanceGroup.KIND_CPU)]
    params = {k: v.string_value for k, v in c.parameters.items()}
    assert float(params["lfdn_edge.threshold"]) == -0.25 and params["lfdn_edge.score_type"] == "mfsim"
    assert params["lfdn_edge.stage_dims"] == "16,32,48"
    # the schema check itself rejects a field Triton does not know
    from google.protobuf import text_format

    bad = model_dir / "bad.pbtxt"
    bad.write_text((model_dir / "config.pbtxt").read_text() + "max_batch: 3\n")
    with pytest.raises(text_format.ParseError):
        parse_config(bad)


def test_the_model_scores_exactly_like_the_scorer_on_the_same_onnx_engine(ckpt, tmp_path):
    import onnxruntime as ort

    from lfdn_edge import Scorer
    from lfdn_edge.builder.dispatch import build_artifact
    from lfdn_edge.builder.triton_repo import export_triton_repository

    model_dir = export_triton_repository(ckpt, tmp_path / "repo", score_type="mse")
    c = parse_config(model_dir / "config.pbtxt")
    sess = ort.InferenceSession(str(model_dir / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    # the names and element types the config declares are the model's
    assert [i.name for i in sess.get_inputs()] == [i.name for i in c.input]
    assert sess.get_inputs()[0].type == "tensor(float)" and sess.get_inputs()[0].shape[1] == 96
    assert sorted(o.name for o in sess.get_outputs()) == sorted(o.name for o in c.output)
    assert all(o.type == "tensor(float)" for o in sess.get_outputs())
    x = np.random.default_rng(3).standard_normal((37, 96)).astype(np.float32)
    got = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"features": x})))
    scorer = Scorer(build_artifact(ckpt, "onnx", score_type="mse"))
    want = scorer.explain(x)
    np.testing.assert_array_equal(got["score"], want["score"])
    np.testing.assert_array_equal(got["score"], got["mse"])  # score_type mse
    np.testing.assert_array_equal(got["stage_cos"], want["stage_cos"])
    ref = Scorer(ckpt, score_type="mse").explain(x)  # the PyTorch graph: the same maths, float rounding apart
    np.testing.assert_allclose(got["mse"], ref["mse"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got["mfsim"], ref["mfsim"], rtol=1e-5, atol=1e-6)


def test_frames_model_takes_uint8_images(ckpt, tmp_path):
    import onnxruntime as ort
    from tritonclient.grpc import model_config_pb2 as pb

    from lfdn_edge import Scorer
    from lfdn_edge.builder.dispatch import build_artifact
    from lfdn_edge.builder.triton_repo import export_triton_repository

    # the checkpoint's layout must be the backbone's for a frames model: take Lite0's stage sizes
    from lfdn_edge.checkpoint import Checkpoint, save_checkpoint
    from lfdn_edge.features import FeatureLayout
    from lfdn_edge.backbones import get_backbone
    from lfdn_edge.model import LFDN, LFDNConfig

    dims = list(get_backbone("efficientnet-lite0").stage_dims)
    data = dict(Checkpoint.load(ckpt).data)
    cfg = LFDNConfig(in_dim=FeatureLayout(dims).dim, width=32, depth=1, emb_dim=16)
    data.update(layout={"stage_dims": dims}, model=cfg.to_dict(), ema=LFDN(cfg).state_dict(),
                feature={**data["feature"], "backbone": "efficientnet-lite0"})
    img_ckpt = save_checkpoint(data, tmp_path / "img.pt")
    model_dir = export_triton_repository(img_ckpt, tmp_path / "repo", name="cam", include_backbone=True,
                                         image_size=(24, 40), batch=(1, 4, 8))
    c = parse_config(model_dir / "config.pbtxt")
    assert [(i.name, i.data_type, list(i.dims)) for i in c.input] == [("images", pb.TYPE_UINT8, [24, 40, 3])]
    frames = np.random.default_rng(0).integers(0, 256, (3, 24, 40, 3), dtype=np.uint8)
    sess = ort.InferenceSession(str(model_dir / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    got = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"images": frames})))
    want = Scorer(build_artifact(img_ckpt, "onnx", include_backbone=True, image_size=(24, 40), batch=(1, 4, 8)))
    np.testing.assert_array_equal(got["score"], want.score(frames))


def test_export_is_atomic_and_leaves_other_models_alone(ckpt, tmp_path, monkeypatch):
    import lfdn_edge.builder.triton_repo as tr

    repo = tmp_path / "repo"
    other = repo / "other_model" / "1"
    other.mkdir(parents=True)
    (other / "model.onnx").write_bytes(b"not ours")
    first = tr.export_triton_repository(ckpt, repo, batch=(1, 8, 8))
    assert parse_config(first / "config.pbtxt").max_batch_size == 8
    # a failure while building leaves the previous model as it was, and no temporary folder
    real = tr.build_artifact

    def boom(*a, **k):
        raise RuntimeError("build failed")

    monkeypatch.setattr(tr, "build_artifact", boom)
    with pytest.raises(RuntimeError, match="build failed"):
        tr.export_triton_repository(ckpt, repo, batch=(1, 16, 16))
    assert parse_config(first / "config.pbtxt").max_batch_size == 8
    # a failure while the new files are written (after model.onnx, at config.pbtxt): the same
    monkeypatch.setattr(tr, "build_artifact", real)
    old_model = (first / "1" / "model.onnx").read_bytes()
    real_write = Path.write_text

    def failing_write(self, *a, **k):
        if self.name == "config.pbtxt":
            raise OSError("disk full")
        return real_write(self, *a, **k)

    monkeypatch.setattr(Path, "write_text", failing_write)
    with pytest.raises(OSError, match="disk full"):
        tr.export_triton_repository(ckpt, repo, batch=(1, 16, 16), score_type="mse")
    monkeypatch.undo()
    assert parse_config(first / "config.pbtxt").max_batch_size == 8
    assert (first / "1" / "model.onnx").read_bytes() == old_model
    assert sorted(p.name for p in repo.iterdir()) == ["lfdn_edge", "other_model"]
    # a successful export replaces it
    tr.export_triton_repository(ckpt, repo, batch=(1, 16, 16))
    assert parse_config(first / "config.pbtxt").max_batch_size == 16
    assert sorted(p.name for p in repo.iterdir()) == ["lfdn_edge", "other_model"]
    assert (other / "model.onnx").read_bytes() == b"not ours"


def test_bad_options_and_the_command(ckpt, tmp_path, capsys):
    from lfdn_edge.builder.triton_repo import export_triton_repository
    from lfdn_edge.cli import main

    with pytest.raises(ValueError, match="model name"):
        export_triton_repository(ckpt, tmp_path / "r", name="../x")
    with pytest.raises(ValueError, match="instance count"):
        export_triton_repository(ckpt, tmp_path / "r", instances=0)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        export_triton_repository(ckpt, tmp_path / "file")
    assert main(["export-triton", str(ckpt), str(tmp_path / "cli"), "--instances", "3", "--instance-kind",
                 "KIND_CPU", "--batch", "1,4,32", "--name", "cam1"]) == 0
    c = parse_config(tmp_path / "cli" / "cam1" / "config.pbtxt")
    assert c.max_batch_size == 32 and c.instance_group[0].count == 3
    assert "wrote Triton model" in capsys.readouterr().out


def test_tensorrt_plan_without_tensorrt_and_a_gpu_is_a_clear_error(ckpt, tmp_path):
    from lfdn_edge.errors import USER_ERRORS
    from lfdn_edge.probes import tensorrt_usable
    from lfdn_edge.builder.triton_repo import export_triton_repository

    if tensorrt_usable()[0]:
        model_dir = export_triton_repository(ckpt, tmp_path / "repo", backend="tensorrt")
        c = parse_config(model_dir / "config.pbtxt")
        assert c.platform == "tensorrt_plan" and (model_dir / "1" / "model.plan").stat().st_size > 0
        return
    with pytest.raises(USER_ERRORS, match="(?i)tensorrt|gpu|cuda"):
        export_triton_repository(ckpt, tmp_path / "repo", backend="tensorrt")
    assert not (tmp_path / "repo" / "lfdn_edge").exists()

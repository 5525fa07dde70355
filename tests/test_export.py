"""The export graphs and their ONNX: same scores as the PyTorch reference (ReferenceScorer, MultiLayerFeatures).

Tolerances (measured values in docs/DEPLOYMENT.md):
* FP32, torch graph or onnxruntime vs the reference: 1e-4 relative on mse and mfsim (measured ~5e-7 on
  features, ~5e-6 on frames), 1e-5 absolute on the stage cosines.
* FP16 (LFDN Linears and backbone in float16, statistics and scores in float32) vs the FP32 reference:
  features: |d mfsim| <= 2e-3, |d stage_cos| <= 5e-3, mse 1e-2 relative;
  frames (FP16 backbone too): |d mfsim| <= 1e-2, |d stage_cos| <= 5e-2, mse 5e-2 relative;
  and the OOD decisions at the calibrated threshold agree on at least 97 % of the items.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lfdn_edge.checkpoint import Checkpoint
from lfdn_edge.builder.onnx_export import export_onnx, onnx_bytes
from lfdn_edge.scoring_graph import ImageScoringGraph, ScoringGraph, build_graph, resize_matrix
from lfdn_edge.features import FeatureConfig, FeatureLayout
from lfdn_edge.model import LFDNConfig
from lfdn_edge.train import TrainConfig, train_lfdn

onnx = pytest.importorskip("onnx", reason="ONNX export tests need onnx (pip install onnx)")
ort = pytest.importorskip("onnxruntime", reason="ONNX parity tests need onnxruntime (pip install onnxruntime)")

TINY = dict(width=128, depth=2, emb_dim=64)
LAYOUT = FeatureLayout((16, 24, 40, 112, 320))


def rel_err(a, ref) -> float:
    a, ref = np.asarray(a, np.float64), np.asarray(ref, np.float64)
    return float(np.max(np.abs(a - ref) / np.abs(ref)))


def run_onnx(model_bytes: bytes, x: np.ndarray) -> dict:
    sess = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {name: x})))


def torch_graph(graph, x) -> dict:
    with torch.no_grad():
        out = graph(torch.as_tensor(x))
    return dict(zip(("score", "mse", "mfsim", "stage_cos"), (o.numpy() for o in out)))


@pytest.fixture(scope="module")
def synthetic_ckpt(tmp_path_factory):
    z = np.random.default_rng(1).standard_normal((160, 512)).astype(np.float32)
    return train_lfdn(z[:128], LAYOUT, FeatureConfig(backbone="efficientnet-lite0", input_size=64), tmp_path_factory.mktemp("syn") / "ckpt.pt",
                      LFDNConfig(in_dim=512, width=64, depth=2, emb_dim=32),
                      TrainConfig(epochs=2, batch_size=64, early_epoch=1), cal_features=z[128:], progress=False)


@pytest.fixture(scope="module")
def trained(real_features, tmp_path_factory):
    return train_lfdn(real_features.train, real_features.layout, real_features.feature_config,
                      tmp_path_factory.mktemp("export") / "ckpt.pt", LFDNConfig(in_dim=real_features.layout.dim, **TINY),
                      TrainConfig(epochs=3, batch_size=128, lr=1e-3, seed=3, early_epoch=1),
                      cal_features=real_features.cal,
                      progress=False)


@pytest.fixture(scope="module")
def id_ood_features(real_features):
    return np.concatenate([real_features.test[:200], *[v[:40] for v in real_features.ood.values()]])


@pytest.fixture(scope="module")
def frames(small_benchmark):
    b = small_benchmark
    return np.ascontiguousarray(np.concatenate([b.test.images[:24], *[v.images[:6] for v in b.ood.values()]]))


# ---------------------------------------------------------------------------------------------- real data
@pytest.mark.data
def test_torch_scoring_graph_matches_reference_fp32(trained, id_ood_features):
    ref = trained.reference_scorer().scores(id_ood_features)
    out = torch_graph(ScoringGraph(trained).eval(), id_ood_features)
    assert rel_err(out["mse"], ref["mse"]) < 1e-5
    assert rel_err(out["mfsim"], ref["mfsim"]) < 1e-5
    assert np.abs(out["stage_cos"] - ref["stage_cos"]).max() < 1e-5
    # the engine score is the reference's MFsim (default score type), and MSE for score_type="mse"
    assert rel_err(out["score"], ref["mfsim"]) < 1e-5
    mse_graph = torch_graph(ScoringGraph(trained, score_type="mse").eval(), id_ood_features)
    assert rel_err(mse_graph["score"], ref["mse"]) < 1e-5


@pytest.mark.data
def test_onnx_features_fp32_parity_and_dynamic_batch(trained, id_ood_features):
    ref = trained.reference_scorer().scores(id_ood_features)
    model = onnx_bytes(trained, precision="fp32")
    out = run_onnx(model, id_ood_features)
    for k in ("mse", "mfsim"):
        assert rel_err(out[k], ref[k]) < 1e-4, k
    assert np.abs(out["stage_cos"] - ref["stage_cos"]).max() < 1e-5
    t = torch_graph(ScoringGraph(trained).eval(), id_ood_features)
    assert rel_err(out["mfsim"], t["mfsim"]) < 1e-4
    # any batch size; an item's score does not depend on its batch
    for n in (1, 7):
        part = run_onnx(model, id_ood_features[:n])
        np.testing.assert_allclose(part["mfsim"], out["mfsim"][:n], rtol=1e-6, atol=1e-7)


def _with_convention(ck: Checkpoint, **score) -> Checkpoint:
    return Checkpoint(dict(ck.data, score=dict(ck.data["score"], **score)), None)


@pytest.mark.data
def test_onnx_fp32_parity_under_the_authors_convention(trained, id_ood_features):
    """The authors' chain and MFsim as graph constants: torch graph and ONNX = reference (authors) within the
    FP32 tolerances above, and the authors' scores differ from the project's by far more than those."""
    ck = _with_convention(trained, convention="authors")
    ref = ck.reference_scorer().scores(id_ood_features)
    proj = trained.reference_scorer().scores(id_ood_features)
    assert np.abs(ref["mfsim"] - proj["mfsim"]).max() > 1e-3 and np.abs(ref["mse"] - proj["mse"]).max() > 1e-3
    t = torch_graph(ScoringGraph(ck).eval(), id_ood_features)
    out = run_onnx(onnx_bytes(ck, precision="fp32"), id_ood_features)
    for name, got in (("torch", t), ("onnx", out)):
        assert rel_err(got["mse"], ref["mse"]) < 1e-4, name
        assert rel_err(got["mfsim"], ref["mfsim"]) < 1e-4, name
        assert np.abs(got["stage_cos"] - ref["stage_cos"]).max() < 1e-5, name
        np.testing.assert_allclose(got["mfsim"], -ref["stage_cos"][:, 1:].mean(axis=1), rtol=0, atol=1e-5)


def test_onnx_authors_convention_synthetic(synthetic_ckpt):
    """The same without the benchmark data: authors' convention ONNX = reference, t = 5 in 4 steps."""
    ck = _with_convention(synthetic_ckpt, convention="authors", t=5, steps=4)
    z = np.random.default_rng(6).standard_normal((16, 512)).astype(np.float32) * 0.5
    ref = ck.reference_scorer().scores(z)
    out = run_onnx(onnx_bytes(ck), z)
    np.testing.assert_allclose(out["mse"], ref["mse"], rtol=1e-4)
    np.testing.assert_allclose(out["stage_cos"], ref["stage_cos"], atol=1e-5)
    np.testing.assert_allclose(out["mfsim"], ref["mfsim"], rtol=1e-4, atol=1e-6)


@pytest.mark.data
@pytest.mark.parametrize("image_size", [None, (80, 96)], ids=["native-size", "resized"])
def test_onnx_image_fp32_parity_with_features_pipeline(trained, frames, lite0, image_size):
    """uint8 NHWC frames -> scores, against MultiLayerFeatures (antialiased resize) + ReferenceScorer."""
    x = frames
    if image_size is not None:  # camera-sized frames: the engine resizes them exactly as the features module does
        up = F.interpolate(torch.from_numpy(frames).permute(0, 3, 1, 2).float(), size=image_size, mode="bilinear")
        x = up.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()
    with torch.no_grad():
        z = lite0(torch.from_numpy(x)).numpy()
    ref = trained.reference_scorer().scores(z)
    graph = ImageScoringGraph(trained, image_size=image_size).eval()
    t = torch_graph(graph, x)
    out = run_onnx(onnx_bytes(trained, include_backbone=True, image_size=image_size), x)
    for res in (t, out):
        for k in ("mse", "mfsim"):
            assert rel_err(res[k], ref[k]) < 1e-4, k
        assert np.abs(res["stage_cos"] - ref["stage_cos"]).max() < 1e-5
    assert rel_err(out["mfsim"], t["mfsim"]) < 1e-4


@pytest.mark.data
def test_fp16_variants_within_stated_tolerance(trained, id_ood_features, frames, lite0):
    thr = trained.threshold("mfsim")
    ref = trained.reference_scorer().scores(id_ood_features)
    with torch.no_grad():
        ref_img = trained.reference_scorer().scores(lite0(torch.from_numpy(frames)).numpy())
    cases = [
        ("features-ort", run_onnx(onnx_bytes(trained, precision="fp16"), id_ood_features), ref, 2e-3, 5e-3, 1e-2),
        ("features-torch", torch_graph(ScoringGraph(trained, "fp16").eval(), id_ood_features), ref, 2e-3, 5e-3, 1e-2),
        ("frames-ort", run_onnx(onnx_bytes(trained, include_backbone=True, precision="fp16"), frames), ref_img,
         1e-2, 5e-2, 5e-2),
    ]
    for name, out, r, tol_mfsim, tol_cos, tol_mse in cases:
        assert np.abs(out["mfsim"] - r["mfsim"]).max() <= tol_mfsim, name
        assert np.abs(out["stage_cos"] - r["stage_cos"]).max() <= tol_cos, name
        assert rel_err(out["mse"], r["mse"]) <= tol_mse, name
        assert np.mean((out["mfsim"] > thr) == (r["mfsim"] > thr)) >= 0.97, name


# ---------------------------------------------------------------------------------------------- no data
def test_resize_matrix_is_torchs_antialiased_bilinear():
    g = torch.Generator().manual_seed(0)
    img = torch.rand(2, 3, 37, 53, generator=g)
    for size in ((64, 64), (20, 30), (37, 26)):
        want = F.interpolate(img, size=size, mode="bilinear", align_corners=False, antialias=True)
        got = resize_matrix(37, size[0]) @ img @ resize_matrix(53, size[1]).t()
        assert torch.allclose(got, want, atol=2e-6), size


def test_noise_and_coefficients_are_graph_constants_matching_the_reference(synthetic_ckpt):
    """Scores depend on the noise seed; the graph must carry the checkpoint's noise, not some other draw."""
    z = np.random.default_rng(5).standard_normal((16, 512)).astype(np.float32) * 0.5
    other = Checkpoint(dict(synthetic_ckpt.data, score=dict(synthetic_ckpt.data["score"], seed=7)), None)
    res = {}
    for name, ck in (("seed0", synthetic_ckpt), ("seed7", other)):
        ref = ck.reference_scorer().scores(z)
        out = run_onnx(onnx_bytes(ck), z)
        np.testing.assert_allclose(out["mse"], ref["mse"], rtol=1e-4)
        np.testing.assert_allclose(out["stage_cos"], ref["stage_cos"], atol=1e-5)
        res[name] = out["mse"]
    assert np.abs(res["seed0"] - res["seed7"]).max() > 1e-3


@pytest.mark.parametrize("score_type", ["mfsim", "mse"])
def test_score_output_is_the_reference_score_of_its_type(synthetic_ckpt, score_type):
    """The graph's first output, ``score``, is the ReferenceScorer's score of the engine's score type (in the torch
    graph and in its ONNX), not the other score: the two differ by far more than the tolerance here."""
    z = np.random.default_rng(8).standard_normal((24, 512)).astype(np.float32) * 0.6
    ref = synthetic_ckpt.reference_scorer().scores(z)
    other = "mse" if score_type == "mfsim" else "mfsim"
    assert np.abs(ref[score_type] - ref[other]).min() > 1e-2  # a mix-up cannot pass the checks below
    t = torch_graph(ScoringGraph(synthetic_ckpt, score_type=score_type).eval(), z)
    model = onnx_bytes(synthetic_ckpt, score_type=score_type)
    o = run_onnx(model, z)
    for name, out in (("torch", t), ("onnx", o)):
        np.testing.assert_allclose(out["score"], ref[score_type], rtol=1e-4, atol=1e-6, err_msg=name)
        np.testing.assert_allclose(out["mse"], ref["mse"], rtol=1e-4, err_msg=name)
        np.testing.assert_allclose(out["mfsim"], ref["mfsim"], rtol=1e-4, atol=1e-6, err_msg=name)
    meta = {p.key: p.value for p in onnx.load_from_string(model).metadata_props}
    assert meta["score_type"] == score_type


def test_onnx_model_structure(synthetic_ckpt, tmp_path):
    path = export_onnx(synthetic_ckpt, tmp_path / "f32.onnx")
    m = onnx.load(str(path))
    onnx.checker.check_model(m)
    assert [i.name for i in m.graph.input] == ["features"]
    dims = m.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and dims[1].dim_value == 512
    assert m.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert [o.name for o in m.graph.output] == ["score", "mse", "mfsim", "stage_cos"]
    assert all(o.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for o in m.graph.output)
    assert m.opset_import[0].version == 17
    meta = {p.key: p.value for p in m.metadata_props}
    assert meta["precision"] == "fp32" and meta["score_type"] == "mfsim" and meta["stage_dims"] == "16,24,40,112,320"
    assert not any(t.data_type == onnx.TensorProto.FLOAT16 for t in m.graph.initializer)

    m16 = onnx.load_from_string(onnx_bytes(synthetic_ckpt, precision="fp16"))
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in m16.graph.initializer)
    assert m16.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # I/O stays float32
    norms = [n for n in m16.graph.node if n.op_type == "LayerNormalization"]
    assert norms  # GroupNorm statistics: LayerNormalization fed by float32 casts
    init16 = {t.name for t in m16.graph.initializer if t.data_type == onnx.TensorProto.FLOAT16}
    assert not any(name in init16 for n in norms for name in n.input[1:])

    mi = onnx.load_from_string(onnx_bytes(synthetic_ckpt, include_backbone=True, image_size=(48, 60)))
    inp = mi.graph.input[0].type.tensor_type
    assert inp.elem_type == onnx.TensorProto.UINT8
    assert [d.dim_param or d.dim_value for d in inp.shape.dim] == ["batch", 48, 60, 3]
    assert not any(n.op_type == "Resize" for n in mi.graph.node)  # resize as MatMuls (TensorRT-friendly)


def test_export_errors_and_atomic_replace(synthetic_ckpt, tmp_path):
    with pytest.raises(ValueError, match="precision"):
        onnx_bytes(synthetic_ckpt, precision="int8")
    with pytest.raises(ValueError, match="include_backbone"):
        build_graph(synthetic_ckpt, include_backbone=False, image_size=(32, 32))
    with pytest.raises(ValueError, match="opset"):
        onnx_bytes(synthetic_ckpt, opset=13)
    with pytest.raises(ValueError, match="image_size"):
        build_graph(synthetic_ckpt, include_backbone=True, image_size=(0, 32))
    with pytest.raises(FileNotFoundError):
        export_onnx(tmp_path / "missing.pt", tmp_path / "x.onnx")
    target = tmp_path / "model.onnx"
    target.write_bytes(b"old")
    export_onnx(synthetic_ckpt, target)
    assert onnx.load(str(target)).graph.input[0].name == "features"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]  # no temporary files left

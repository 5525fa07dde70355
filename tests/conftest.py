"""Shared fixtures: a small real subset of the offline fmnist-ood benchmark and its Lite0 features."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

SMALL = {"size": 64, "n_train": 800, "n_cal": 300, "n_test": 400, "n_ood": 200, "seed": 0}


@dataclass
class RealFeatures:
    layout: object
    feature_config: object
    train: np.ndarray
    cal: np.ndarray
    test: np.ndarray
    ood: dict
    far_ood: tuple
    bench: object


@pytest.fixture(scope="session")
def small_benchmark():
    from lfdn_edge.data import load_benchmark

    return load_benchmark("fmnist-ood", size=SMALL["size"], n_train=SMALL["n_train"], n_cal=SMALL["n_cal"],
                          n_test=SMALL["n_test"], n_ood=SMALL["n_ood"], seed=SMALL["seed"])


@pytest.fixture(scope="session")
def feature_cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("feature-cache")


@pytest.fixture(scope="session")
def lite0():
    from lfdn_edge.features import FeatureConfig, MultiLayerFeatures

    return MultiLayerFeatures(FeatureConfig(backbone="efficientnet-lite0", input_size=SMALL["size"]))


@pytest.fixture(scope="session")
def real_features(small_benchmark, lite0, feature_cache_dir):
    from lfdn_edge.feature_cache import cached_features

    def f(s):
        return cached_features(lite0, s.images, feature_cache_dir, progress=False)

    b = small_benchmark
    return RealFeatures(lite0.layout, lite0.config, f(b.train), f(b.cal), f(b.test),
                        {k: f(v) for k, v in b.ood.items()}, tuple(b.far_ood), b)

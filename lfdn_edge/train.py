"""Training the LFDN on cached features (x0-parameterisation), with EMA, resumable per-epoch checkpoints,
an early-epoch EMA snapshot for the LR score, and threshold calibration on held-out ID features.
"""

from __future__ import annotations

import copy
import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .checkpoint import Checkpoint, load_checkpoint_dict, preprocessing_dict, save_checkpoint
from .diffusion import DiffusionConfig, Schedule, q_sample
from .features import FeatureConfig, FeatureLayout
from .metrics import threshold_at_tpr
from .model import LFDN, LFDNConfig
from .reference import ScoreConfig, check_features, id_spread_weights
from .errors import TrainingDiverged
from . import defaults


MIN_SNAPSHOT_STEPS = 100
EXPERIMENTAL_SCORES = ("lr",)
LR_WARNING = ("the LR score is experimental: its direction depends on the data (fmnist-ood: far-OOD AUROC 97; a small "
              "user folder: below 50 on every OOD set), so its calibrated threshold is stored but never used by "
              "default; check LR's AUROC on your own OOD data before relying on it, or use mfsim/mse")


@dataclass(frozen=True)
class TrainConfig:
    """Optimiser and schedule. Paper: AdamW lr 1e-4, wd 1e-4, batch 128, 150 epochs, EMA 0.9999.

    The EMA decay is warmed up as min(ema_decay, (1 + step) / (10 + step)): with the short CPU runs used
    here (about 1-2 k steps) a fixed 0.9999 would leave the EMA at its random initialisation.
    early_epoch: the epoch whose EMA weights are kept for the LR score (0: automatic, see
    ``snapshot_epoch``).
    """

    epochs: int = defaults.EPOCHS
    batch_size: int = defaults.BATCH_SIZE
    lr: float = defaults.LR
    weight_decay: float = defaults.WEIGHT_DECAY
    ema_decay: float = defaults.EMA_DECAY
    early_epoch: int = defaults.EARLY_EPOCH
    seed: int = defaults.TRAIN_SEED

    def __post_init__(self):
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs and batch size must be >= 1, got {self.epochs}, {self.batch_size}")
        if not 0.0 < self.lr < 1.0 or self.weight_decay < 0.0 or not 0.0 <= self.ema_decay < 1.0:
            raise ValueError("need 0 < lr < 1, weight_decay >= 0 and 0 <= ema_decay < 1")
        if not 0 <= self.early_epoch <= self.epochs:
            raise ValueError(f"early_epoch must be in [0, epochs], got {self.early_epoch}")

    def snapshot_epoch(self, steps_per_epoch: int) -> int:
        """The early-snapshot epoch: ``early_epoch`` if set, else the first epoch that is both at least
        a tenth of the run and at least MIN_SNAPSHOT_STEPS optimiser steps in.

        Why the step floor: an EMA that has seen only a few steps is still close to its random
        initialisation, and LR's sign then flips. Measured on fmnist-ood (800 training images, 25 epochs of
        7 steps): far-OOD LR AUROC 30.9 with the snapshot after 14 steps, 80.4 after 35, 82.4 after 70.
        """
        if self.early_epoch:
            return self.early_epoch
        by_steps = -(-MIN_SNAPSHOT_STEPS // max(1, steps_per_epoch))
        return min(self.epochs, max(1, self.epochs // 10, by_steps))

    def to_dict(self) -> dict:
        return asdict(self)


def check_scoring_setup(diffusion_config: DiffusionConfig, score_config: ScoreConfig, tpr: float) -> None:
    """Reject scoring settings that would only fail at calibration, after all the training."""
    Schedule(diffusion_config).check_level(score_config.t)
    if not 0.0 < float(tpr) <= 1.0:
        raise ValueError(f"tpr (the ID acceptance rate of the threshold) must be in (0, 1], got {tpr}")
    if not 0 <= int(score_config.seed) < 2**64:
        raise ValueError(f"the noise seed must be in [0, 2**64), got {score_config.seed}")


@torch.no_grad()
def ema_update(ema: LFDN, model: LFDN, decay: float) -> None:
    for e, p in zip(ema.parameters(), model.parameters()):
        e.mul_(decay).add_(p.detach(), alpha=1.0 - decay)


def _epoch_generator(seed: int, epoch: int) -> torch.Generator:
    # One generator per epoch: a resumed run draws exactly what an uninterrupted run would have drawn.
    return torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))


def _fresh_state(model_cfg: LFDNConfig, train_cfg: TrainConfig):
    torch.manual_seed(train_cfg.seed)
    model = LFDN(model_cfg)
    ema = copy.deepcopy(model)
    opt = torch.optim.AdamW(model.parameters(), lr=train_cfg.lr, weight_decay=train_cfg.weight_decay)
    return model, ema, opt


def train_lfdn(features: np.ndarray, layout: FeatureLayout, feature_config: FeatureConfig, out: str | os.PathLike,
               model_config: LFDNConfig | None = None, train_config: TrainConfig = TrainConfig(),
               diffusion_config: DiffusionConfig = DiffusionConfig(), score_config: ScoreConfig = ScoreConfig(),
               cal_features: np.ndarray | None = None, tpr: float = defaults.TPR, resume: bool = True,
               progress: bool = True, data_info: dict | None = None, dist=None) -> Checkpoint:
    """Train on ``features`` (N, C) and write ``out`` after every epoch; returns the final checkpoint.

    With ``resume`` and an existing ``out`` from the same configuration, training continues from its last
    finished epoch. With ``cal_features`` the thresholds are calibrated at ID acceptance rate ``tpr``.
    ``data_info`` (where the features came from) is stored in the checkpoint and must match to resume.
    ``dist``: a :class:`lfdn_edge.distributed.DistContext` under torchrun (DDP; ``batch_size`` is the global
    batch; rank 0 writes ``out``), None for one process.
    """
    from tqdm.auto import tqdm

    check_scoring_setup(diffusion_config, score_config, tpr)
    if score_config.stage_weights == "id-spread" and cal_features is None:
        raise ValueError("'id-spread' stage weights are learned from calibration features: pass cal_features")
    z = torch.as_tensor(np.asarray(features, dtype=np.float32))
    check_features(z, layout.dim)
    model_config = model_config or LFDNConfig(in_dim=layout.dim)
    if model_config.in_dim != layout.dim:
        raise ValueError(f"model in_dim {model_config.in_dim} != feature size {layout.dim}")
    out = Path(out)
    schedule = Schedule(diffusion_config)
    ab = schedule.torch_alpha_bar()
    model, ema, opt = _fresh_state(model_config, train_config)
    header = {
        "feature": feature_config.to_dict(), "preprocessing": preprocessing_dict(feature_config),
        "layout": layout.to_dict(), "model": model_config.to_dict(), "diffusion": diffusion_config.to_dict(),
        "score": score_config.to_dict(), "train": train_config.to_dict(), "num_train": int(z.shape[0]),
        "data": dict(data_info or {}),
    }
    start_epoch, step, history, early_state = 0, 0, [], None
    if resume and out.is_file():
        old = load_checkpoint_dict(out)
        same = all(old.get(k) == header[k] for k in header)
        if not same:
            raise ValueError(f"{out} exists from a different configuration or data; use another --out or "
                             "--no-resume to overwrite it")
        ts = old.get("train_state") or {}
        if int(ts.get("epoch", 0)) >= train_config.epochs:  # finished: only (re)calibrate
            ckpt = Checkpoint(old, out)
            if cal_features is not None and (dist is None or dist.is_main):
                calibrate(ckpt, cal_features, tpr=tpr)
                ckpt.save()
            if dist is not None:
                dist.barrier()
                ckpt = Checkpoint(load_checkpoint_dict(out), out)
            return ckpt
        if "model" not in ts or "optimizer" not in ts:
            raise ValueError(f"{out} has no training state to resume from; use --no-resume to start over")
        model.load_state_dict(ts["model"])
        ema.load_state_dict(old["ema"])
        opt.load_state_dict(ts["optimizer"])
        start_epoch, step, history = int(ts["epoch"]), int(ts["ema_step"]), list(ts["history"])
        early_state = old.get("early_ema")

    net = model
    if dist is not None:  # DDP: same start on every rank (same seed), gradients averaged across ranks
        from .distributed import ddp_model

        model, ema, opt, net, z, ab = ddp_model(dist, model, ema, opt, z, ab)
        progress = progress and dist.is_main
    n = z.shape[0]
    snapshot_epoch = train_config.snapshot_epoch(-(-n // train_config.batch_size))
    if snapshot_epoch >= train_config.epochs and (dist is None or dist.is_main):
        warnings.warn(f"the early snapshot for the LR score is the final epoch ({snapshot_epoch}): LR will be 0 "
                      "for every input; train for more epochs or set an earlier early_epoch", stacklevel=2)
    bar = tqdm(range(start_epoch, train_config.epochs), desc="train LFDN", unit="epoch", disable=not progress,
               initial=start_epoch, total=train_config.epochs)
    for epoch in bar:
        model.train()
        g = _epoch_generator(train_config.seed, epoch)
        perm = torch.randperm(n, generator=g)
        total, count = 0.0, 0
        for s in range(0, n, train_config.batch_size):
            z0 = z[perm[s:s + train_config.batch_size]]
            t = torch.randint(0, schedule.T, (z0.shape[0],), generator=g)
            eps = torch.randn(z0.shape, generator=g)
            if dist is not None:  # this rank's slice of the global batch, drawn exactly as by one process
                from .distributed import ddp_loss

                loss, batch_sum = ddp_loss(dist, net, z0, t, eps, ab)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                step += 1
                ema_update(ema, model, min(train_config.ema_decay, (1.0 + step) / (10.0 + step)))
                total += batch_sum
                count += z0.shape[0]
                continue
            zt = q_sample(z0, ab[t][:, None], eps)
            loss = F.mse_loss(model(zt, t), z0)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            ema_update(ema, model, min(train_config.ema_decay, (1.0 + step) / (10.0 + step)))
            total += float(loss.detach()) * z0.shape[0]
            count += z0.shape[0]
        if dist is not None:
            total = dist.all_sum(total)
        if not np.isfinite(total):
            raise TrainingDiverged(f"training diverged at epoch {epoch + 1} (loss is not finite); lower --lr")
        history.append(total / count)
        bar.set_postfix(loss=f"{history[-1]:.4f}")
        if epoch + 1 == snapshot_epoch:
            early_state = copy.deepcopy(ema.state_dict())
        state = {"epoch": epoch + 1, "ema_step": step, "history": history}
        if epoch + 1 < train_config.epochs:  # what resuming needs; dropped from the finished checkpoint
            state.update(model=model.state_dict(), optimizer=opt.state_dict())
        data = dict(header, ema=ema.state_dict(), early_ema=early_state, early_epoch=snapshot_epoch,
                    calibration=None, train_state=state)
        if dist is None:
            save_checkpoint(data, out)
        elif dist.is_main:
            state["world_size"] = dist.world_size
            save_checkpoint(_cpu(data), out)
    if dist is not None:
        dist.barrier()  # rank 0 has written the last epoch
    ckpt = Checkpoint(load_checkpoint_dict(out), out)
    if cal_features is not None and (dist is None or dist.is_main):
        calibrate(ckpt, cal_features, tpr=tpr)
        ckpt.save()
    if dist is not None:
        dist.barrier()
        ckpt = Checkpoint(load_checkpoint_dict(out), out)
    return ckpt


def _cpu(obj):
    """Tensors moved to the CPU (a no-op for CPU training: the same objects come back)."""
    if isinstance(obj, torch.Tensor):
        return obj if obj.device.type == "cpu" else obj.cpu()
    if isinstance(obj, dict):
        return {k: _cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_cpu(v) for v in obj)
    return obj


def calibrate(ckpt: Checkpoint, cal_features: np.ndarray, tpr: float = defaults.TPR) -> dict:
    """Score held-out ID features and store per-score thresholds at ID acceptance rate ``tpr``.

    The LR threshold is stored too, but LR is EXPERIMENTAL (its direction depends on the data, see
    :func:`lfdn_edge.reference.lr_score`): it is listed under ``calibration["experimental"]``, a warning says
    so, and nothing uses it by default (engines and the Scorer use MFsim or MSE).
    """
    learned = None
    if ckpt.data["score"].get("stage_weights") == "id-spread":
        # MFsim stage weights from the ID calibration split only (reference.id_spread_weights); the stage
        # cosines do not depend on the weights
        probe = ScoreConfig(**{"convention": "project", **ckpt.data["score"], "stage_weights": "uniform"})
        learned = id_spread_weights(ckpt.reference_scorer(probe).scores(cal_features)["stage_cos"])
        ckpt.data["calibration"] = {"stage_weights": list(learned)}
    scores = ckpt.reference_scorer().scores(cal_features)
    names = [k for k in scores if k != "stage_cos"]
    if "lr" in names:
        warnings.warn(LR_WARNING, stacklevel=2)
    cal = {"tpr": float(tpr), "n": int(len(cal_features)),
           "experimental": [k for k in names if k in EXPERIMENTAL_SCORES],
           "thresholds": {k: threshold_at_tpr(scores[k], tpr) for k in names},
           "id_mean": {k: float(np.mean(scores[k])) for k in names},
           "id_std": {k: float(np.std(scores[k])) for k in names}}
    if learned is not None:
        cal["stage_weights"] = list(learned)
    ckpt.data["calibration"] = cal
    return cal

"""Train a DLSR model (LFDN on multi-layer features) and write a calibrated checkpoint.

Examples:
    lfdn-edge train --data fmnist-ood --out runs/demo/ckpt.pt
    lfdn-edge train --data /path/to/id_images --out ckpt.pt --epochs 60 --width 1024 --depth 8
    torchrun --nproc_per_node 4 tools/train.py --data /path/to/id_images --out ckpt.pt     (4 GPUs, DDP)
(``python tools/train.py ...`` is the same command.) Under torchrun every process extracts a shard of the
features and trains with DistributedDataParallel (NCCL, one GPU per process; gloo on the CPU without CUDA);
--batch-size is the global batch; rank 0 writes the checkpoint.
"""

from __future__ import annotations

import sys
import time

from .. import defaults
from ..backbones import BACKBONES
from .common import add_common_options, check_output_path, check_positive, parser, run_cli



def build_parser(prog: str = "lfdn-edge train"):
    p = parser(prog, __doc__)
    p.add_argument("--data", default=defaults.DATA,
                   help="ID data: 'fmnist-ood', 'digits-ood' or 'sprites-ood' (offline benchmarks), an image folder, cifar10:ROOT, "
                        "cifar100:ROOT, svhn:ROOT (default: %(default)s)")
    p.add_argument("--out", required=True, help="checkpoint path to write (resumed if it exists)")
    g = p.add_argument_group("features")
    g.add_argument("--backbone", default=defaults.BACKBONE, choices=sorted(BACKBONES), help="(default: %(default)s)")
    g.add_argument("--backbone-weights", default=None, help="state-dict file (required for torchvision backbones)")
    g.add_argument("--input-size", type=int, default=defaults.INPUT_SIZE,
                   help="square input size in pixels (default: %(default)s)")
    counts = ((defaults.N_TRAIN, defaults.N_CAL, defaults.N_TEST), defaults.DIGITS_OOD_SPLIT,
              defaults.SPRITES_OOD_SPLIT)
    for i, (opt, what) in enumerate((("--n-train", "ID training images"),
                                     ("--n-cal", "held-out ID images for the threshold"),
                                     ("--n-test", "ID test images kept out of training for evaluation"))):
        g.add_argument(opt, type=int, default=None,
                       help=f"{what} (default: the data's own split: {counts[0][i]} for fmnist-ood and any other "
                            f"source, {counts[1][i]} for digits-ood, {counts[2][i]} for sprites-ood)")
    g.add_argument("--data-seed", type=int, default=defaults.DATA_SEED,
                   help="seed of the data subsampling (default: %(default)s)")
    g = p.add_argument_group("model (paper: width %(width)d, depth %(depth)d, emb %(emb_dim)d)" % defaults.PAPER_MODEL)
    g.add_argument("--width", type=int, default=defaults.WIDTH, help="(default: %(default)s)")
    g.add_argument("--depth", type=int, default=defaults.DEPTH, help="residual blocks (default: %(default)s)")
    g.add_argument("--emb-dim", type=int, default=defaults.EMB_DIM, help="timestep embedding size (default: %(default)s)")
    g = p.add_argument_group("training")
    g.add_argument("--epochs", type=int, default=defaults.EPOCHS, help="(default: %(default)s)")
    g.add_argument("--batch-size", type=int, default=defaults.BATCH_SIZE, help="(default: %(default)s)")
    g.add_argument("--lr", type=float, default=defaults.LR, help="AdamW learning rate (default: %(default)s)")
    g.add_argument("--weight-decay", type=float, default=defaults.WEIGHT_DECAY, help="(default: %(default)s)")
    g.add_argument("--ema-decay", type=float, default=defaults.EMA_DECAY, help="(default: %(default)s, warmed up)")
    g.add_argument("--early-epoch", type=int, default=defaults.EARLY_EPOCH,
                   help="EMA snapshot epoch for the LR score (0: automatic, the first epoch that is at least a "
                        "tenth of the run and at least 100 optimiser steps in)")
    g.add_argument("--seed", type=int, default=defaults.TRAIN_SEED, help="training seed (default: %(default)s)")
    g.add_argument("--no-resume", action="store_true", help="start over even if --out exists")
    g.add_argument("--dist-backend", choices=("auto", "nccl", "gloo"), default="auto",
                   help="under torchrun: the process-group backend (auto: nccl with CUDA, else gloo)")
    g = p.add_argument_group("scoring")
    g.add_argument("--t", type=int, default=defaults.T,
                   help="noise level of the reconstruction, 0..T-1 (default: %(default)s)")
    g.add_argument("--steps", type=int, default=defaults.STEPS, help="DDIM steps (default: %(default)s)")
    g.add_argument("--eta", type=float, default=defaults.ETA, help="DDIM eta (default: %(default)s)")
    g.add_argument("--noise-seed", type=int, default=defaults.NOISE_SEED,
                   help="seed of the counter-based noise (default: %(default)s)")
    g.add_argument("--convention", choices=("project", "authors"), default=defaults.CONVENTION,
                   help="scoring convention: the project's DDIM chain and MFsim over all stages, or the authors' "
                        "(lfdn_edge.diffusion; docs/QUALITY.md 'Defaults and why') (default: %(default)s)")
    g.add_argument("--stage-weights", choices=("convention", "uniform", "skip-first", "id-spread"),
                   default=defaults.STAGE_WEIGHTS or "convention",
                   help="MFsim stage weights: the convention's (project: uniform, authors: skip-first), 1/M each, "
                        "0 for stage 1 and 1/(M-1) for the others, or id-spread: learned from the ID calibration "
                        "split (each stage weighted by the inverse of its ID spread; measured best on colour "
                        "sprites, worse on grey images: docs/QUALITY.md) (default: %(default)s)")
    g.add_argument("--tpr", type=float, default=defaults.TPR,
                   help="ID acceptance rate of the threshold (default: %(default)s)")
    add_common_options(p)
    return p


def main(argv=None, prog: str = "lfdn-edge train") -> int:
    args = build_parser(prog).parse_args(argv)

    def body() -> int:
        from ..features import FeatureConfig
        from ..reference import ScoreConfig
        from ..train import TrainConfig
        from ..workflow import train_from_data

        check_output_path(args.out, "--out")
        for opt in ("n_train", "n_cal", "n_test"):
            check_positive(getattr(args, opt), "--" + opt.replace("_", "-"))
        feature = FeatureConfig(args.backbone, args.input_size, args.backbone_weights)
        train_cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                                weight_decay=args.weight_decay, ema_decay=args.ema_decay,
                                early_epoch=args.early_epoch, seed=args.seed)
        score_cfg = ScoreConfig(t=args.t, steps=args.steps, eta=args.eta, seed=args.noise_seed,
                                convention=args.convention,
                                stage_weights=None if args.stage_weights == "convention" else args.stage_weights)
        t0 = time.time()
        from ..distributed import env_world_size, from_env

        dist = from_env(args.dist_backend) if env_world_size() > 1 else None  # torchrun, several processes
        try:
            ckpt = train_from_data(args.data, args.out, feature, args.width, args.depth, args.emb_dim, train_cfg,
                                   score_cfg, n_train=args.n_train, n_cal=args.n_cal, n_test=args.n_test,
                                   data_seed=args.data_seed, tpr=args.tpr, cache_root=args.cache_dir,
                                   resume=not args.no_resume, progress=not args.quiet, dist=dist,
                                   advise=lambda hint: print(hint, file=sys.stderr, flush=True))
        finally:
            if dist is not None:
                dist.close()
        if dist is None or dist.is_main:
            report(ckpt, time.time() - t0, dist.world_size if dist else 1)
        return 0

    return run_cli(args, body)


def report(ckpt, seconds: float, processes: int = 1) -> None:
    cal = ckpt.calibration or {}
    hist = ckpt.data["train_state"]["history"]
    where = f" ({processes} processes)" if processes > 1 else ""
    print(f"wrote {ckpt.path}{where} in {seconds:.0f} s: final loss {hist[-1]:.4f}, thresholds at "
          f"{100 * cal.get('tpr', 0):.0f}% ID acceptance: " +
          ", ".join(f"{k}={v:.4g}" for k, v in cal.get("thresholds", {}).items()))


if __name__ == "__main__":
    sys.exit(main())

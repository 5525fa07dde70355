#!/usr/bin/env python3
"""Evaluate a checkpoint: AUROC / FPR95 / AUPR per OOD set for DLSR (mfsim, mse, lr) and the kNN and
Mahalanobis baselines on the same features; prints a table, writes JSON and PNG plots.

Examples:
    lfdn-edge evaluate --ckpt runs/demo/ckpt.pt --data fmnist-ood --json runs/demo/report.json
    lfdn-edge evaluate --ckpt ckpt.pt --ood /path/to/ood_a --ood /path/to/ood_b --json report.json
(``python tools/evaluate.py ...`` is the same command.) The far-OOD mean covers only sets known to be
far-OOD (the far sets of fmnist-ood, digits-ood or sprites-ood); with your own OOD folders the table shows the mean over all OOD sets.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .. import defaults
from .common import add_common_options, check_output_path, check_positive, parser, run_cli


def build_parser(prog: str = "lfdn-edge evaluate"):
    p = parser(prog, __doc__)
    p.add_argument("--ckpt", required=True, help="checkpoint written by lfdn-edge train")
    p.add_argument("--data", default=None,
                   help="'fmnist-ood', 'digits-ood', 'sprites-ood' or an ID source (folder, cifar10:ROOT, ...); default: the checkpoint's own")
    p.add_argument("--ood", action="append", default=[],
                   help="OOD source (repeatable): a folder, cifar10:ROOT, svhn:ROOT, ...; with an offline benchmark "
                        "a subset of its set names")
    p.add_argument("--n-test", type=int, default=None,
                   help="ID test images (default: the count recorded in the checkpoint; for another source than "
                        "the checkpoint's, that source's own split)")
    p.add_argument("--n-ood", type=int, default=defaults.N_OOD, help="images per OOD set, at most (default: %(default)s)")
    p.add_argument("--knn-k", type=int, default=defaults.KNN_K, help="k of the kNN baseline (default: %(default)s)")
    p.add_argument("--json", default=None, help="write the report here")
    p.add_argument("--plots", default=None, help="folder for PNG plots (default: next to --json)")
    p.add_argument("--no-plots", action="store_true", help="do not draw plots")
    add_common_options(p)
    return p


def main(argv=None, prog: str = "lfdn-edge evaluate") -> int:
    args = build_parser(prog).parse_args(argv)

    def body() -> int:
        from .._atomic import atomic_write
        from ..checkpoint import Checkpoint
        from ..evaluate import format_table
        from ..workflow import evaluate_on_data

        check_output_path(args.json, "--json")
        check_positive(args.n_test, "--n-test")
        check_positive(args.n_ood, "--n-ood")
        ckpt = Checkpoint.load(args.ckpt)
        ev = evaluate_on_data(ckpt, args.data, args.ood, n_test=args.n_test, n_ood=args.n_ood, knn_k=args.knn_k,
                              cache_root=args.cache_dir, progress=not args.quiet)
        print(format_table(ev.report))
        if args.json:
            atomic_write(args.json, lambda tmp: tmp.write_text(json.dumps(ev.report, indent=2)))
            print(f"wrote {args.json}")
        if not args.no_plots and (args.plots or args.json):
            from ..plots import save_plots

            folder = Path(args.plots) if args.plots else Path(args.json).parent / "plots"
            paths = save_plots(ev, folder)
            print(f"wrote {len(paths)} plots to {folder}")
        return 0

    return run_cli(args, body)


if __name__ == "__main__":
    sys.exit(main())

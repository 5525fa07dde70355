"""Score images or feature vectors with an engine (or a checkpoint) and flag the out-of-distribution ones.

Inputs: image files or folders (scored through the engine's backbone if it includes one, else features are
computed with the engine's backbone in PyTorch first), or .npy arrays of feature vectors (N, C). Prints one
line per item (score, and OOD or ok against the threshold) and a summary; --json writes every score.

Examples:
    lfdn-edge score runs/demo/ckpt.native.fp32.engine /path/to/frames/
    lfdn-edge score cam.onnx.fp32.image.engine shot1.jpg shot2.jpg --threshold -0.9 --json scores.json
    lfdn-edge score runs/demo/ckpt.pt features.npy --score-type mse
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .common import add_common_options, check_output_path, check_positive, parser, run_cli

FEATURE_SUFFIXES = (".npy",)


def build_parser(prog: str = "lfdn-edge score"):
    p = parser(prog, __doc__)
    p.add_argument("engine", help="engine file (lfdn-edge build) or checkpoint (lfdn-edge train)")
    p.add_argument("inputs", nargs="+", help="image files, folders of images, or .npy feature arrays (N, C)")
    p.add_argument("--backend", default="auto", help="runtime backend (default: the one the engine needs)")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: the backend's default)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads of the native / onnxruntime backend")
    p.add_argument("--score-type", choices=("mfsim", "mse"), default=None,
                   help="score to report (default: the engine's)")
    p.add_argument("--threshold", type=float, default=None,
                   help="OOD threshold on the score (default: the engine's calibrated one)")
    p.add_argument("--batch-size", type=int, default=64, help="images decoded and scored per call (default: %(default)s)")
    p.add_argument("--json", default=None, help="write every item's score and flag here")
    p.add_argument("--max-lines", type=int, default=50, help="items printed one per line, at most (default: %(default)s)")
    add_common_options(p)
    return p


def _image_files(inputs: list[str]) -> list[Path]:
    from ..data.folder import list_images

    files = []
    for item in inputs:
        path = Path(item).expanduser()
        if path.is_dir():
            found = list_images(path)
            if not found:
                raise ValueError(f"{path} holds no image files")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"no such file or folder: {path}")
    return files


def _feature_rows(inputs: list[str]):
    import numpy as np

    names, arrays = [], []
    for item in inputs:
        path = Path(item)
        if not path.is_file():
            raise FileNotFoundError(f"no such file: {path}")
        try:
            a = np.load(path, allow_pickle=False)
        except ValueError as exc:
            raise ValueError(f"{path} is not a readable .npy array: {exc}") from exc
        if a.ndim != 2:
            raise ValueError(f"{path}: expected feature vectors of shape (N, C), got {a.shape}")
        arrays.append(a)
        names.extend(f"{path.name}[{i}]" for i in range(a.shape[0]))
    return names, arrays


def _frames(files: list[Path], shape: tuple[int, int]):
    """uint8 (N, H, W, 3) frames at the engine's frame size (RGB; EXIF rotation applied; stretched)."""
    import numpy as np
    from PIL import Image, ImageOps

    h, w = shape
    out = np.empty((len(files), h, w, 3), dtype=np.uint8)
    for i, f in enumerate(files):
        try:
            with Image.open(f) as img:
                img = ImageOps.exif_transpose(img).convert("RGB").resize((w, h), Image.BILINEAR)
                out[i] = np.asarray(img)
        except OSError as exc:
            raise ValueError(f"{f} is not a readable image: {exc}") from exc
    return out


def score_inputs(scorer, inputs: list[str], batch_size: int, progress: bool):
    """(item names, scores) for the inputs, in order."""
    import numpy as np

    from ..progress import bar, progress_enabled

    if all(Path(i).suffix.lower() in FEATURE_SUFFIXES for i in inputs):
        if scorer.includes_backbone:
            raise ValueError("this engine takes images (it includes the backbone), not feature arrays")
        names, arrays = _feature_rows(inputs)
        return names, np.concatenate([scorer.score(a) for a in arrays])
    if any(Path(i).suffix.lower() in FEATURE_SUFFIXES for i in inputs):
        raise ValueError("give either .npy feature arrays or images, not both")
    files = _image_files(inputs)
    extractor = None
    if scorer.includes_backbone:
        shape = scorer.input_shape[1:3]
    else:
        import torch

        from ..features import FeatureConfig, MultiLayerFeatures

        extractor = MultiLayerFeatures(FeatureConfig(**scorer.header["feature"])).eval()
        size = extractor.config.input_size
        shape = (size, size)
    scores = []
    with progress_enabled(progress):
        for start in bar(range(0, len(files), batch_size), "scoring", "batch", min_items=2):
            frames = _frames(files[start:start + batch_size], shape)
            if extractor is None:
                scores.append(scorer.score(frames))
            else:
                with torch.inference_mode():
                    feats = extractor(torch.from_numpy(frames)).numpy()
                scores.append(scorer.score(feats))
    return [str(f) for f in files], np.concatenate(scores)


def main(argv=None, prog: str = "lfdn-edge score") -> int:
    args = build_parser(prog).parse_args(argv)

    def body() -> int:
        from .._atomic import atomic_write
        from ..runtime.scorer import Scorer

        check_output_path(args.json, "--json")
        check_positive(args.batch_size, "--batch-size")
        scorer = Scorer(args.engine, args.backend, args.device, threshold=args.threshold,
                        score_type=args.score_type, threads=args.threads)
        names, scores = score_inputs(scorer, args.inputs, args.batch_size, not args.quiet)
        t = scorer.threshold
        flags = [None if t is None else bool(s > t) for s in scores]
        for name, s, f in list(zip(names, scores, flags))[:max(0, args.max_lines)]:
            print(f"{s:+.6f}  {'' if f is None else ('OOD' if f else 'ok ')}  {name}")
        if len(names) > args.max_lines:
            print(f"... {len(names) - args.max_lines} more (--json writes all)")
        summary = (f"{len(names)} items scored by {scorer.backend_name} ({scorer.score_type}); " +
                   ("no threshold (pass --threshold)" if t is None else
                    f"{sum(flags)} flagged OOD at threshold {t:.6g}"))
        print(summary)
        if args.json:
            doc = {"engine": str(args.engine), "backend": scorer.backend_name, "score_type": scorer.score_type,
                   "threshold": t, "items": [{"item": n, "score": float(s), "is_ood": f}
                                             for n, s, f in zip(names, scores, flags)]}
            atomic_write(args.json, lambda tmp: tmp.write_text(json.dumps(doc, indent=1) + "\n"))
            print(f"wrote {args.json}")
        return 0

    return run_cli(args, body)


if __name__ == "__main__":
    sys.exit(main())

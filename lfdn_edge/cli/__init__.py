"""The ``lfdn-edge`` command: ``lfdn-edge train | evaluate | build | bench | score | serve | export-triton | stream | probe [options]``.

Each subcommand is a module of this package with ``main(argv, prog)``; ``lfdn-edge SUB --help`` shows its
options. tools/*.py are thin wrappers around the same functions (``python tools/build_engine.py ckpt.pt``).
"""

from __future__ import annotations

import importlib
import sys

from .._version import __version__

COMMANDS = {
    "train": ("train", "train the LFDN on ID images and write a calibrated checkpoint"),
    "evaluate": ("evaluate", "AUROC / FPR95 / AUPR of a checkpoint on OOD sets, with baselines"),
    "build": ("build", "build an engine file (tensorrt, native, onnx) from a checkpoint"),
    "bench": ("bench", "throughput, latency and parity of scoring backends"),
    "score": ("score", "score images or feature arrays with an engine and flag OOD items"),
    "serve": ("serve", "serve an engine over HTTP/gRPC through NVIDIA Triton (PyTriton), with dynamic batching"),
    "export-triton": ("export_triton", "write a Triton model repository (ONNX model or TensorRT plan + config)"),
    "stream": ("stream", "score cameras, streams, videos and test:// sources; JSON lines of results and events"),
    "probe": ("probe", "say what a source is (codec, size, fps) and which decoder would open it"),
}


def usage() -> str:
    lines = [f"usage: lfdn-edge {{{','.join(COMMANDS)}}} [options]   (lfdn-edge {__version__})", "",
             "Unsupervised OOD detection of images (DLSR) for edge devices.", "", "commands:"]
    lines += [f"  {name:<15}{text}" for name, (_, text) in COMMANDS.items()]
    lines += ["", "lfdn-edge COMMAND --help shows the options of a command."]
    return "\n".join(lines)


def run(command: str, argv: list[str]) -> int:
    """Run one subcommand with its arguments (what the console script and tools/*.py call)."""
    module = importlib.import_module(f".{COMMANDS[command][0]}", __name__)
    return module.main(argv, prog=f"lfdn-edge {command}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    if argv[0] == "--version":
        print(f"lfdn-edge {__version__}")
        return 0
    if argv[0] not in COMMANDS:
        print(f"lfdn-edge: unknown command {argv[0]!r}\n\n{usage()}", file=sys.stderr)
        return 2
    return run(argv[0], argv[1:])


if __name__ == "__main__":
    sys.exit(main())

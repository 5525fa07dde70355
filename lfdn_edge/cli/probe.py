"""Say what a source is: its kind, which decoder would open it, codec, size and fps (and decode one frame).

Examples:
    lfdn-edge probe cam.mp4
    lfdn-edge probe "rtsp://user:pw@10.0.0.5/s1?transport=udp" --json
    lfdn-edge probe "test://pattern?size=640x480&fps=15"
"""

from __future__ import annotations

import json
import sys

from .common import add_common_options, parser, run_cli


def build_parser(prog: str = "lfdn-edge probe"):
    p = parser(prog, __doc__)
    p.add_argument("uri", help="source URI (docs/STREAMS.md): a webcam index, v4l2://, rtsp://, http(s)://, "
                               "file:// or a path, csi://, gst://, test://")
    p.add_argument("--json", action="store_true", help="print the description as JSON")
    p.add_argument("--no-decode", action="store_true", help="open the source only, decode no frame")
    p.add_argument("--read-timeout", type=float, default=5.0, help="seconds to wait for the source (default: "
                                                                    "%(default)s)")
    add_common_options(p, cache=False, quiet=False)
    return p


def main(argv=None, prog: str = "lfdn-edge probe") -> int:
    args = build_parser(prog).parse_args(argv)

    def body() -> int:
        from ..stream import probe, redact

        info = probe(args.uri, args.read_timeout, not args.no_decode)
        if "pipeline" in info:
            info["pipeline"] = redact(info["pipeline"])
        if args.json:
            print(json.dumps(info, indent=1))
        else:
            for k, v in info.items():
                print(f"{k:>12}: {v}")
        return 0

    return run_cli(args, body)


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""`python tools/train.py ...` = `lfdn-edge train ...` (see lfdn_edge/cli/train.py; --help lists the options)."""

import sys

from lfdn_edge.cli import run

if __name__ == "__main__":
    sys.exit(run("train", sys.argv[1:]))

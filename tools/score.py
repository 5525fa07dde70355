#!/usr/bin/env python3
"""`python tools/score.py ...` = `lfdn-edge score ...` (see lfdn_edge/cli/score.py; --help lists the options)."""

import sys

from lfdn_edge.cli import run

if __name__ == "__main__":
    sys.exit(run("score", sys.argv[1:]))

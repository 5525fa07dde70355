#!/usr/bin/env python3
"""`python tools/evaluate.py ...` = `lfdn-edge evaluate ...` (see lfdn_edge/cli/evaluate.py; --help lists the options)."""

import sys

from lfdn_edge.cli import run

if __name__ == "__main__":
    sys.exit(run("evaluate", sys.argv[1:]))

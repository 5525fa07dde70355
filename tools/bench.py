#!/usr/bin/env python3
"""`python tools/bench.py ...` = `lfdn-edge bench ...` (see lfdn_edge/cli/bench.py; --help lists the options)."""

import sys

from lfdn_edge.cli import run

if __name__ == "__main__":
    sys.exit(run("bench", sys.argv[1:]))

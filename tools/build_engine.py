#!/usr/bin/env python3
"""`python tools/build_engine.py ...` = `lfdn-edge build ...` (see lfdn_edge/cli/build.py; --help lists the options)."""

import sys

from lfdn_edge.cli import run

if __name__ == "__main__":
    sys.exit(run("build", sys.argv[1:]))

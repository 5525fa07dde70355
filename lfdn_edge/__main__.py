"""``python -m lfdn_edge ...`` is the ``lfdn-edge`` command."""

import sys

from .cli import main

sys.exit(main())

"""``python -m setforge`` is the ``setforge`` command (and what torchrun launches)."""

import sys

from .tools.cli import main

sys.exit(main())

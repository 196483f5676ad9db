"""``python -m setforge`` is the ``setforge`` command (and what torchrun launches)."""

import sys

from .cli import main

sys.exit(main())

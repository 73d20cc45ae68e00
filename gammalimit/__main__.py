"""``python -m gammalimit`` (and ``torchrun ... -m gammalimit``): the command line, :func:`gammalimit.cli.main`."""

import sys

from .cli import main

sys.exit(main())

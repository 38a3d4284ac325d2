"""``python -m psample.cli``: the ``psample`` command."""

import sys

from psample.cli.commands import main

sys.exit(main())

"""``python -m psample.cli``: the ``psample`` command."""

import sys

from psample.cli.main import main

sys.exit(main())

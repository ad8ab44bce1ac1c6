"""``python -m ld3cli``: the ``ld3`` command."""

import sys

from .main import main

sys.exit(main())

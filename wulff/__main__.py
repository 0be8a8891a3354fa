"""``python -m wulff``: the ``wulff`` command line."""
import sys

from wulff.cli import main

sys.exit(main())

"""`python -m haps_core.cli`: the `haps` command (also what torchrun workers run)."""

import sys

from haps_core.cli import main

if __name__ == "__main__":
    sys.exit(main())

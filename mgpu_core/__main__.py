"""python -m mgpu_core: one training configuration (see mgpu_core.cli)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())

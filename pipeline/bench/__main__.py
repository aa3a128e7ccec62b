"""``python -m pipeline.bench [--quick] [--out FILE]``: see pipeline.bench.runner."""

import sys

from pipeline.bench.runner import main

if __name__ == "__main__":
    sys.exit(main())

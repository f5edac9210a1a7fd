"""``python -m pycache_d``: run the daemon (:func:`pycache_d.daemon.main.main`)."""

import sys

from .daemon.main import main

if __name__ == "__main__":
    sys.exit(main())

"""``python -m pycache_client`` runs ``pycache-cli``."""

import sys

from .cli import main

sys.exit(main())

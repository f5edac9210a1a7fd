"""The HTTP API of pycache (needs ``pip install 'pycache-client[http]'``).

``create_app(Config(...))`` returns a Falcon ASGI app; ``pycache-http`` serves it with uvicorn.
"""

from .app import create_app
from .config import Config

__all__ = ["Config", "create_app"]

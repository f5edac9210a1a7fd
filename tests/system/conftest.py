"""Fixtures of the system tests: ``container``, a systemd booted for the session (see sdcontainer.py)."""

from sdcontainer import container

__all__ = ["container"]

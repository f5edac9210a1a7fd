"""The store's clock: whole seconds on a Unix-time scale that never jumps.

memcached keeps a relative clock ticked from a monotonic source and uses the wall clock only
to interpret absolute expiry times. We do the same: the reading is the wall time when the clock
was made plus the monotonic time elapsed since, so setting the system clock back or forth moves
no expiry; only absolute expiry times from the protocol refer to the wall clock.
"""

from __future__ import annotations

import time


class MonotonicClock:
    """Return Unix-scale whole seconds that advance with the monotonic clock."""

    __slots__ = ("_base",)

    def __init__(self) -> None:
        self._base = time.time() - time.monotonic()

    def __call__(self) -> int:
        return int(self._base + time.monotonic())

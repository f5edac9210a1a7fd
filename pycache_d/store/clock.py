"""The process's clock: whole seconds on a Unix-time scale that never jumps.

memcached keeps a relative clock ticked from a monotonic source and uses the wall clock only to
interpret absolute expiry times. We do the same: a reading is the wall time when the process
started plus the monotonic time elapsed since (the stores compute the same sum themselves, on
their hot path). So setting the system clock back or forth moves no relative expiry: a TTL of
60 s ends 60 s later, whatever ``date -s`` or an NTP step did meanwhile.

Absolute expiry times (over 30 days, protocol.txt) name a Unix time on the wall clock: that is
the one place the wall clock counts. The daemon's watch (:mod:`pycache_d.daemon.wallclock`)
notices a step of the wall clock (within a second), logs it once, and hands the new skew
(:func:`wall_skew`) to the store, which subtracts it when it converts an absolute time to its
own clock; a client's "now + 60" then still means 60 seconds. (memcached reads absolute times
against the wall clock as it was at start, ``process_started``, so after a step of N seconds
they land N seconds off until it restarts; we re-sync instead.) Expiry times already stored
stay where they are on the store's clock: their remaining time is what the client asked for.
The snapshot converts expiry times to the wall clock of the save, so a restart keeps every
item's remaining time.
"""

from __future__ import annotations

import time

#: Wall time minus monotonic time when the process imported this module: the origin of the
#: process's clock, which the stores read too (:func:`origin`).
_BASE = time.time() - time.monotonic()


class MonotonicClock:
    """Return Unix-scale whole seconds that advance with the monotonic clock.

    Every clock of the process, and the stores, count from the same :func:`origin`.
    """

    __slots__ = ("_base",)

    def __init__(self) -> None:
        self._base = _BASE

    def __call__(self) -> int:
        return int(self._base + time.monotonic())


def origin() -> float:
    """Return the origin of the process's clock: wall time minus monotonic time at start."""
    return _BASE


def wall_skew() -> int:
    """Return how many whole seconds the wall clock is now ahead of the process's clock.

    0 unless the wall clock was set (stepped) since the process started; negative when it was
    set back. Adding it to a time on the process's clock gives the wall-clock Unix time.
    """
    return round(time.time() - time.monotonic() - _BASE)

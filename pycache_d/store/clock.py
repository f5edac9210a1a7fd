"""The daemon's clock: whole seconds on a Unix-time scale that never jumps, and a jump detector.

memcached keeps a relative clock ticked from a monotonic source and uses the wall clock only to
interpret absolute expiry times. We do the same: a reading is the wall time when the process
started plus the monotonic time elapsed since (the stores compute the same sum themselves, on
their hot path). So setting the system clock back or forth moves no relative expiry: a TTL of
60 s ends 60 s later, whatever ``date -s`` or an NTP step did meanwhile.

Absolute expiry times (over 30 days, protocol.txt) name a Unix time on the wall clock: that is
the one place the wall clock counts. :class:`WallClockWatch` notices a step of the wall clock
(within a second), logs it once, and hands the new skew (:func:`wall_skew`) to the store, which
subtracts it when it converts an absolute time to its own clock; a client's "now + 60" then
still means 60 seconds. (memcached reads absolute times against the wall clock as it was at
start, ``process_started``, so after a step of N seconds they land N seconds off until it
restarts; we re-sync instead.) Expiry times already stored stay where they are on the store's
clock: their remaining time is what the client asked for. The snapshot converts expiry times
to the wall clock of the save, so a restart keeps every item's remaining time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from .log import log

#: Wall time minus monotonic time when the process imported this module: the origin of the
#: process's clock, which the stores read too (:func:`origin`).
_BASE = time.time() - time.monotonic()

#: A step of the wall clock at least this large (seconds) is logged. NTP's slewing never comes
#: near it between two checks; a smaller step moves nothing that whole seconds can show.
JUMP_THRESHOLD = 2.0
#: Seconds between two looks at the wall clock. PERF: two clock reads a second, nothing per request.
CHECK_INTERVAL = 1.0


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


class WallClockWatch:
    """Notice the wall clock being stepped, and log each step once.

    The daemon calls :meth:`start` on its event loop; :meth:`check` compares the wall clock with
    the monotonic one every :data:`CHECK_INTERVAL` seconds. Each check compares with the one
    before, so a slow drift never adds up to a false alarm.
    """

    def __init__(self, on_step: Callable[[int], object] | None = None) -> None:
        #: Called with :func:`wall_skew` after each step (the daemon sets the store's skew).
        self.on_step = on_step
        #: Steps seen so far.
        self.jumps = 0
        self._offset = time.time() - time.monotonic()
        self._skew = 0  # what on_step was last told: the store starts at 0
        self._handle: asyncio.TimerHandle | None = None

    def check(self) -> float:
        """Look at the clocks now; log a step and return its size in seconds (0.0 for none)."""
        offset = time.time() - time.monotonic()
        step = offset - self._offset
        self._offset = offset
        skew = round(offset - _BASE)  # wall_skew(), from the clocks just read
        if skew != self._skew:  # small steps too: they add up
            self._skew = skew
            if self.on_step is not None:
                self.on_step(skew)
        if abs(step) < JUMP_THRESHOLD:
            return 0.0
        self.jumps += 1
        log.warning(
            "wall clock jumped %s by %d s (now %+d s from the clock the daemon started with): "
            "relative expiry times are unaffected; absolute ones from now on follow the wall clock",
            "forward" if step > 0 else "back",
            round(abs(step)),
            skew,
        )
        return step

    def start(self, loop: asyncio.AbstractEventLoop, interval: float = CHECK_INTERVAL) -> None:
        """Check every ``interval`` seconds on ``loop`` until :meth:`stop`."""

        def tick() -> None:
            self.check()
            self._handle = loop.call_later(interval, tick)

        self.stop()
        self._offset = time.time() - time.monotonic()
        self._skew = wall_skew()  # a step before now (a long snapshot load) counts too
        if self.on_step is not None:
            self.on_step(self._skew)
        self._handle = loop.call_later(interval, tick)

    def stop(self) -> None:
        """Stop checking (idempotent)."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

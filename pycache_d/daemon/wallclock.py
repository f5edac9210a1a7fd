"""Watch the wall clock: notice it being stepped, log each step once, hand the store the new skew.

The process's clock (:mod:`pycache_d.store.clock`) never jumps; only absolute expiry times read
the wall clock, through the store's ``wall_skew``. This watch keeps that skew current.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from ..log import log
from ..store.clock import origin, wall_skew

#: A step of the wall clock at least this large (seconds) is logged. NTP's slewing never comes
#: near it between two checks; a smaller step moves nothing that whole seconds can show.
JUMP_THRESHOLD = 2.0
#: Seconds between two looks at the wall clock. PERF: two clock reads a second, nothing per request.
CHECK_INTERVAL = 1.0


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
        skew = round(offset - origin())  # wall_skew(), from the clocks just read
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

"""Logging: one line per event on stderr, ``pycache-d[PID]: LEVEL: message``.

Three thresholds follow ``-v``:

* 0 (default): ``notice`` and above -- startup, listeners, shutdown, reloads, rejected clients.
* 1 (``-v``): ``info`` too -- connections opening and closing, backpressure.
* 2 (``-vv``): ``debug`` too -- every read and reply. Nothing per request is formatted below this.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import TextIO

#: Between INFO and WARNING, like syslog's notice: what an operator wants to see by default.
NOTICE = 25
logging.addLevelName(NOTICE, "NOTICE")

LOGGER_NAME = "pycache_d"

_THRESHOLDS = (NOTICE, logging.INFO, logging.DEBUG)

log = logging.getLogger(LOGGER_NAME)


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        # NOTE: the pid is read per record, not cached, so a forked child would name itself.
        line = f"pycache-d[{os.getpid()}]: {record.levelname.lower()}: {record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def setup(verbosity: int = 0, stream: TextIO | None = None) -> logging.Logger:
    """Send the daemon's log to ``stream`` (stderr) at the threshold for ``verbosity``."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(_Formatter())
    # The event loop reports its own trouble (a failing callback, accept() out of file
    # descriptors) on the "asyncio" logger: give it the same one-line-per-event format.
    for logger in (log, logging.getLogger("asyncio")):
        for old in list(logger.handlers):
            logger.removeHandler(old)
        logger.addHandler(handler)
        logger.propagate = False
    set_verbosity(verbosity)
    return log


def set_verbosity(verbosity: int) -> None:
    """Apply ``-v`` levels at run time (SIGHUP reload, memcached's ``verbosity`` command)."""
    log.setLevel(_THRESHOLDS[max(0, min(verbosity, len(_THRESHOLDS) - 1))])


def notice(msg: str, *args: object) -> None:
    """Log an operator-visible event (shown without ``-v``)."""
    log.log(NOTICE, msg, *args)

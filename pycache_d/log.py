"""Logging: one line per event on stderr, ``pycache-d[PID]: LEVEL: message``.

Three thresholds follow ``-v``:

* 0 (default): ``notice`` and above -- startup, listeners, shutdown, reloads, rejected clients.
* 1 (``-v``): ``info`` too -- connections opening and closing, backpressure.
* 2 (``-vv``): ``debug`` too -- every read and reply. Nothing per request is formatted below this.

Under systemd, when stderr is the journal (``$JOURNAL_STREAM`` names its device and inode), each
line is ``<N>message`` instead: journald reads the syslog priority N and adds the time, the
program name and the pid itself.
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


#: syslog priorities (sd-daemon(3) prefixes) by level: err, warning, notice, info; below: debug.
_JOURNAL_PRIORITIES = ((logging.ERROR, 3), (logging.WARNING, 4), (NOTICE, 5), (logging.INFO, 6))


class _JournalFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        prio = next((p for level, p in _JOURNAL_PRIORITIES if record.levelno >= level), 7)
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        # NOTE: journald takes the priority per line, so a traceback's lines carry it too.
        return "\n".join(f"<{prio}>{line}" for line in text.split("\n"))


def is_journal(stream: TextIO) -> bool:
    """Return True if ``stream`` is the journal connection ``$JOURNAL_STREAM`` names (systemd.exec(5))."""
    dev, _, ino = os.environ.get("JOURNAL_STREAM", "").partition(":")
    try:
        st = os.fstat(stream.fileno())
        return (st.st_dev, st.st_ino) == (int(dev), int(ino))
    except (OSError, ValueError, AttributeError):  # unset or malformed, or no file descriptor
        return False


def setup(verbosity: int = 0, stream: TextIO | None = None) -> logging.Logger:
    """Send the daemon's log to ``stream`` (stderr) at the threshold for ``verbosity``."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(_JournalFormatter() if is_journal(handler.stream) else _Formatter())
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

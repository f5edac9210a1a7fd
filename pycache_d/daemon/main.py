"""``pycache-d`` / ``python -m pycache_d``: parse the settings, build the store, run the server.

Exit status: 0 after a clean shutdown (SIGTERM/SIGINT), 1 when a listener cannot be opened (or
a loaded snapshot cannot be consumed, see :mod:`.warmstart`), 2 for an invalid flag, environment
variable or config value (one line on stderr, no traceback). ``--check-config`` validates
everything a start would (file, TLS and auth files, backend) without opening a listener or
touching the snapshot: one line, exit 0 or 2 (the unit's ExecReload= runs it first). A
snapshot that cannot be written at shutdown (full disk) is logged as an error but still exits
0: the shutdown itself was clean, and the next start is empty.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from .. import log as logmod
from .._version import __version__
from ..log import log, notice
from ..net import streams
from ..store import NO_EXTENSIONS, NativeStore, store_class
from . import config as configmod
from . import snapshot, systemd
from .config import Config, ConfigError, ConfigSource, describe_size
from .server import ListenError, Server, run
from .snapshot import SnapshotError
from .warmstart import WarmStart

EXIT_OK = 0
EXIT_LISTEN = 1
EXIT_SNAPSHOT = 1
EXIT_USAGE = 2


def _loop_factory() -> tuple[Callable[[], asyncio.AbstractEventLoop], str]:
    """Return the event loop factory: uvloop's, or asyncio's (with a warning) if it is missing."""
    try:
        import uvloop
    except ImportError:
        log.warning("uvloop is not installed; falling back to the slower asyncio event loop")
        return asyncio.new_event_loop, "asyncio"
    return uvloop.new_event_loop, f"uvloop {uvloop.__version__}"


def _fail(message: str) -> None:
    print(f"pycache-d: error: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the daemon until it is told to stop; return the exit status."""
    args = sys.argv[1:] if argv is None else argv
    try:
        check = configmod.wants_check(args)
        source, cfg = configmod.load(args)
    except ConfigError as e:
        _fail(str(e))
        return EXIT_USAGE
    try:
        store_cls = store_class(cfg.backend)
    except ValueError as e:  # e.g. --backend native where the extension is not built
        _fail(f"--backend: {e}")
        return EXIT_USAGE
    if check:
        print(f"pycache-d: config OK{f': {source.path}' if source.path else ' (no config file)'}")
        return EXIT_OK
    logmod.setup(cfg.verbose)
    if cfg.backend == "auto" and NativeStore is None and not NO_EXTENSIONS:
        # NOTE: pip hides the build's own warning (setup.py) unless run with -v: the first
        # start says it once more, where the operator looks.
        log.warning(
            "the native backend is not built into this installation (no C compiler when it was "
            "installed): serving with the slower python backend"
        )
    store = store_cls(cfg.memory_limit, max_items=cfg.max_items, max_item_size=cfg.max_item_size)
    factory, loop_name = _loop_factory()
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(_serve(cfg, source, store, loop_name))


async def _serve(cfg: Config, source: ConfigSource, store: Any, loop_name: str) -> int:
    # Before any listener: no client sees a half-loaded store, and the snapshot is consumed
    # before anyone can write (warmstart.py). Under systemd the unit's status shows how far the
    # load has got (READY=1 comes once the listeners are up).
    warm = WarmStart(store, snapshot.default_path(cfg.snapshot, os.environ), systemd.Notifier.from_environ())
    try:
        warm.begin()
    except SnapshotError as e:
        log.error("%s", e)
        return EXIT_SNAPSHOT
    server = Server(cfg, store, source=source)

    def started() -> None:
        notice(
            "pycache-d %s started: backend %s, memory limit %s, max item size %s, max items %s, "
            "max connections %d, event loop %s, plain clients on %s%s",
            __version__,
            store.backend,
            describe_size(cfg.memory_limit),
            describe_size(cfg.max_item_size),
            cfg.max_items or "unlimited",
            cfg.max_connections,
            loop_name,
            "the compiled epoll driver" if streams.Poller is not None else "the loop's transports",
            f", config {source.path}" if source.path else "",
        )

    try:
        await warm.serve(lambda: run(server, on_started=started))
    except ListenError as e:
        log.error("%s", e)
        # NOTE: only what it consumed goes back: a daemon that could not listen must not
        # overwrite the file of the one that holds the port.
        warm.put_back()
        return EXIT_LISTEN
    warm.end()
    notice("stopped")
    return EXIT_OK

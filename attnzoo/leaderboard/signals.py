"""Ctrl-C and SIGTERM held off a short block that must not be cut in half.

The invariant: inside :func:`deferred` neither signal interrupts; the first that came is
delivered (to whatever handler was in place before) as soon as the block ends. For steps
whose half-done state nobody could clean up: a lock file created but not yet owned, a
worker process forked but not yet in its pool's list.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

__all__ = ["deferred"]


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM until the block is done, then deliver the first one that came.

    Main thread only (Python runs signal handlers there); elsewhere a no-op.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, frame: pending.append(signum))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():  # None: a handler not set from Python; the default then
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
        if pending:
            signal.raise_signal(pending[0])

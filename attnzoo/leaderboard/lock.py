"""One writer per results folder: an advisory lock on ``DIR/.attnzoo.lock``.

The invariant: at most one process appends to ``DIR/results.jsonl`` at a time, so
no cell is trained twice by two ``bench`` commands racing on one ``--out``.

``flock`` is held by the open file, so the kernel releases it when its holder
exits in any way (Ctrl-C, ``SIGKILL``, a crash): a lock file left by a dead
holder is stale and simply taken over. The holder writes its pid, host and
start time into the file, which is what a refused second command prints. The
holder removes the file when it lets go; an acquirer that locked a file that
was removed meanwhile (its inode is no longer the path's) tries again, so two
processes can never both hold "the" lock.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from attnzoo.errors import AttnzooError
from attnzoo.leaderboard.signals import deferred

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory locks, one writer is the user's job
    fcntl = None  # type: ignore[assignment]

__all__ = ["LOCK_NAME", "OutDirLocked", "OutLock"]

#: the lock file inside a results folder (``bench`` treats a folder holding only it as empty)
LOCK_NAME = ".attnzoo.lock"


class OutDirLocked(AttnzooError):
    """Another live process holds the results folder's lock."""


class OutLock:
    """Exclusive, non-blocking lock on a results folder; a context manager.

    :param directory: the results folder (created if missing).
    :param command: what the holder is doing, recorded for whoever is refused.
    :raises OutDirLocked: on :meth:`acquire`, naming the holder's pid, host and start time.
    """

    def __init__(self, directory: str | os.PathLike[str], command: str | None = None) -> None:
        self.dir = Path(directory)
        self.path = self.dir / LOCK_NAME
        self.command = command or " ".join(["attnzoo", *sys.argv[1:]])
        self._fd: int | None = None

    def holder(self) -> dict[str, Any]:
        """What the current holder wrote (empty if unreadable)."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8") or "{}")
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def acquire(self) -> "OutLock":
        if fcntl is None or self._fd is not None:
            return self
        self.dir.mkdir(parents=True, exist_ok=True)
        with deferred():  # a Ctrl-C between the file's creation and self._fd would leave a file nobody removes
            return self._acquire()

    def _acquire(self) -> "OutLock":
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise OutDirLocked(self._refusal()) from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:  # the previous holder removed it after we opened it
                same = False
            if same:
                break
            os.close(fd)
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "command": self.command}
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(info).encode("utf-8"))
        self._fd = fd
        return self

    def _refusal(self) -> str:
        h = self.holder()
        who = (f"pid {h.get('pid', '?')} on {h.get('host', '?')}, started {h.get('started', '?')}"
               + (f": {h['command']}" if h.get("command") else ""))
        return (f"{self.dir} is in use by another attnzoo process ({who}). One writer per results folder: "
                f"wait for it to finish (or stop it), or pick another --out.")

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:  # remove while still holding it, so nobody locks a file that is about to vanish
            self.path.unlink()
        except OSError:
            pass
        os.close(fd)

    def __enter__(self) -> "OutLock":
        return self.acquire()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()

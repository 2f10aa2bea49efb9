"""results.jsonl: one JSON row per finished cell, appended atomically.

Each row is written with one ``write`` of a whole line, flushed and fsynced
before the next cell is recorded, so a driver killed at any moment leaves at
most one torn last line. Reading skips a torn last line; appending first cuts
it off, so the cell it belonged to simply runs again on ``--resume``. Both say
so, once per process: a results file is read several times by one command
(resume, grid, report), and one damaged line is one warning.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from attnzoo.errors import AttnzooError

__all__ = [
    "RESULTS",
    "RETRYABLE",
    "ResultStore",
    "read_rows",
    "latest_rows",
    "finished_ids",
    "merge",
    "sanitize",
    "MixedConfigError",
    "StoreWriteError",
    "config_groups",
    "one_config",
]

RESULTS = "results.jsonl"
#: statuses that ``--retry-failed`` runs again (a diverged cell is a result, not a failure to retry)
RETRYABLE = frozenset({"failed", "oom"})


def _results_path(path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    return p / RESULTS if p.is_dir() or p.suffix != ".jsonl" else p


#: (file, line number or 0 for the torn tail, digest of the line) already warned about in this process
_warned: set[tuple[str, int, str]] = set()


def _warn_once(path: Path, lineno: int, raw: bytes, message: str) -> None:
    key = (str(path.resolve()), lineno, hashlib.sha1(raw).hexdigest())
    if key in _warned:
        return
    _warned.add(key)
    print(message, file=sys.stderr)


def _warn_torn(path: Path, tail: bytes) -> None:
    _warn_once(path, 0, tail, f"warning: {path}: the last line was cut off (a killed run); that cell will run again")


def _parse(raw: bytes) -> dict[str, Any] | None:
    try:
        row = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return row if isinstance(row, dict) else None


def read_rows(path: str | os.PathLike[str], *, warn: bool = True) -> list[dict[str, Any]]:
    """Every complete row of a results file (or of ``DIR/results.jsonl``), in file order.

    A torn last line (the driver was killed while writing it) is skipped with
    one warning; a corrupt line elsewhere is skipped with a warning naming its
    line number. Each is warned about once per process, however often the
    file is read. A last line that is whole JSON but lacks its newline (killed
    between the row and its ``\\n``) is a complete row and is kept.
    """
    p = _results_path(path)
    if not p.exists():
        return []
    rows: list[dict[str, Any]] = []
    with open(p, "rb") as fh:
        lines = fh.read().split(b"\n")
    last = len(lines) - 1  # the text after the final newline: b"" unless the write was cut
    for i, raw in enumerate(lines):
        if not raw.strip():
            continue
        row = _parse(raw)
        if row is None:
            if not warn:
                continue
            if i == last:
                _warn_torn(p, raw)
            else:
                _warn_once(p, i + 1, raw, f"warning: {p}:{i + 1}: skipping a line that is not valid JSON "
                                          f"(its cell counts as not run)")
            continue
        rows.append(row)
    return rows


def latest_rows(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per cell id: a later row replaces an earlier one (a retried cell), keeping first-seen order."""
    by_id: dict[str, dict[str, Any]] = {}
    for row in rows:
        key = row.get("cell_id") or json.dumps(row, sort_keys=True)
        by_id.pop(key, None)
        by_id[key] = row
    return list(by_id.values())


def finished_ids(rows: Iterable[dict[str, Any]], *, retry_failed: bool = False,
                 retry_diverged: bool = False) -> set[str]:
    """Ids of cells that need not run again: all rows, but failed/oom ones with ``retry_failed``
    and diverged ones with ``retry_diverged``."""
    retry = (RETRYABLE if retry_failed else frozenset()) | ({"diverged"} if retry_diverged else frozenset())
    out = set()
    for row in latest_rows(rows):
        if row.get("status") in retry:
            continue
        if row.get("cell_id"):
            out.add(row["cell_id"])
    return out


class ResultStore:
    """Append-only results file of one output directory. Only the driver writes."""

    def __init__(self, directory: str | os.PathLike[str]):
        self.dir = Path(directory)
        self.path = self.dir / RESULTS

    def rows(self) -> list[dict[str, Any]]:
        return read_rows(self.path)

    def _cut_torn_tail(self) -> None:
        if not self.path.exists():
            return
        with open(self.path, "rb+") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            if size == 0:
                return
            fh.seek(size - 1)
            if fh.read(1) == b"\n":
                return
            # find the last newline; everything after it is the unfinished row
            pos, chunk = size, 4096
            keep = 0
            while pos > 0:
                start = max(0, pos - chunk)
                fh.seek(start)
                data = fh.read(pos - start)
                idx = data.rfind(b"\n")
                if idx >= 0:
                    keep = start + idx + 1
                    break
                pos = start
            fh.seek(keep)
            tail = fh.read()
            if tail.strip() and _parse(tail) is not None:
                # Cut just before its newline: the row is whole, so finish the
                # line rather than drop a result that read_rows counted.
                fh.seek(0, os.SEEK_END)
                fh.write(b"\n")
            else:
                if tail.strip():
                    _warn_torn(self.path, tail)
                fh.truncate(keep)
            fh.flush()
            os.fsync(fh.fileno())

    def open(self) -> "ResultStore":
        """Create the directory and repair a torn last line left by a killed run."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self._cut_torn_tail()
        return self

    def append(self, row: dict[str, Any]) -> None:
        """Write one row as one line, whole or not at all: written, then fsynced.

        If the write fails (disk full, a file-size limit, Ctrl-C between two partial
        writes), the part of the line that reached the file is cut off again, so the file
        stays a list of whole rows and the cell simply runs again on ``--resume``. A line
        written whole stays, whatever happens after.

        :raises StoreWriteError: the row could not be stored (the file is as it was).
        """
        line = (json.dumps(row, default=_json_default, allow_nan=False) + "\n").encode("utf-8")
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        except OSError as exc:
            raise StoreWriteError(self.path, exc) from exc
        try:
            start = os.fstat(fd).st_size  # O_APPEND: the line goes at the end, from here
            view = memoryview(line)
            try:
                while view:
                    n = os.write(fd, view)
                    view = view[n:]
            except BaseException as exc:
                try:  # part of the line is in the file: cut it off
                    os.ftruncate(fd, start)
                    os.fsync(fd)
                except OSError:  # pragma: no cover - truncating never needs space
                    pass
                if isinstance(exc, OSError):
                    raise StoreWriteError(self.path, exc) from exc
                raise
            # the line is whole: it stays, even if the fsync fails or Ctrl-C comes now
            try:
                os.fsync(fd)
            except OSError as exc:
                raise StoreWriteError(self.path, exc) from exc
        finally:
            os.close(fd)

    def extend(self, rows: Iterable[dict[str, Any]]) -> int:
        n = 0
        for row in rows:
            self.append(row)
            n += 1
        return n


class StoreWriteError(AttnzooError):
    """A row could not be appended (no space left, a file-size limit...); the file holds whole rows only."""

    def __init__(self, path: Path, exc: OSError) -> None:
        self.path, self.errno = path, exc.errno
        super().__init__(f"cannot write a row to {path}: {exc.strerror or exc}")


class MixedConfigError(AttnzooError):
    """Rows of several configurations (config hashes) where one was expected."""


def config_groups(rows: Iterable[dict[str, Any]]) -> dict[str | None, list[dict[str, Any]]]:
    """Rows by ``config_hash`` (None: a row without one), in first-seen order."""
    out: dict[str | None, list[dict[str, Any]]] = {}
    for row in rows:
        out.setdefault(row.get("config_hash"), []).append(row)
    return out


def describe_groups(groups: dict[str | None, list[dict[str, Any]]]) -> str:
    """``dd9e43ea6b0c (237 rows), 1f2e3d4c5b6a (3 rows)``."""
    return ", ".join(f"{h or '(no hash)'} ({len(g)} row(s))" for h, g in groups.items())


def one_config(rows: Iterable[dict[str, Any]], *, where: str, config: str | None = None) -> list[dict[str, Any]]:
    """The rows of one configuration: all of them, or those of ``config``.

    Rows of different config hashes are different budgets, knobs or trainer options; a
    report that pooled them would count one configuration's cells as more seeds of the
    other (or let a later row replace a cell's row from another configuration).

    :param where: what the rows are (the message names it).
    :param config: keep only this config hash (a prefix is enough).
    :raises MixedConfigError: several hashes and no ``config``, or ``config`` matches none, naming
        every hash with its row count.
    """
    groups = config_groups(rows)
    if config is not None:
        keep = [h for h in groups if h and h.startswith(config)]
        if len(keep) != 1:
            raise MixedConfigError(f"{where}: config {config!r} matches {len(keep)} of its configurations: "
                                   f"{describe_groups(groups)}")
        return groups[keep[0]]
    if len(groups) > 1:
        first = next(h for h in groups if h) if any(groups) else None
        raise MixedConfigError(
            f"{where} mixes {len(groups)} configurations (a budget, knob, kwarg or trainer option differs): "
            f"{describe_groups(groups)}. Pooled, one's cells would count as seeds of the other's. Report one "
            f"with `attnzoo bench report DIR --config HASH` (e.g. --config {first}), or keep each run in its "
            f"own folder.")
    return next(iter(groups.values()), [])


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):  # numpy / torch scalars
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return str(obj)


def sanitize(obj: Any) -> Any:
    """NaN/inf -> None recursively (results.jsonl stays strict JSON)."""
    if isinstance(obj, float):
        return obj if obj == obj and obj not in (float("inf"), float("-inf")) else None
    if isinstance(obj, dict):
        return {k: sanitize(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [sanitize(v) for v in obj]
    return obj


_RANK = {"ok": 3, "diverged": 2, "n/a": 2, "oom": 1, "failed": 0}


def merge(out: str | os.PathLike[str], directories: Iterable[str | os.PathLike[str]]) -> dict[str, int]:
    """Join the results of several runs (shards, machines) into ``out``.

    One row per cell id: rows already in ``out`` stay; from the inputs, a
    finished row (ok, diverged, n/a) wins over a failed one for the same cell.
    Every row, those already in ``out`` included, must share one config hash.
    :returns: counts ``{"read": ..., "added": ..., "total": ...}``.
    :raises MixedConfigError: the runs are of different configurations (nothing is written).
    """
    sources = [(str(d), read_rows(d)) for d in directories
               if Path(d).resolve() != Path(out).resolve()]
    hashes: dict[str | None, list[str]] = {}
    for name, rows in [(str(out), read_rows(out)), *sources]:
        for h, group in config_groups(rows).items():
            hashes.setdefault(h, []).append(f"{len(group)} row(s) in {name}")
    if len(hashes) > 1:
        raise MixedConfigError("bench merge: the runs are of different configurations (a budget, knob, kwarg or "
                               "trainer option differs), so their cells are not seeds of one grid: "
                               + "; ".join(f"{h or '(no hash)'}: {', '.join(w)}" for h, w in hashes.items())
                               + ". Merge only runs of one config hash (nothing was written).")
    store = ResultStore(out).open()
    have = {r.get("cell_id"): r for r in latest_rows(store.rows())}
    chosen: dict[str, dict[str, Any]] = {}
    read = 0
    for _, rows in sources:
        for row in latest_rows(rows):
            read += 1
            cid = row.get("cell_id")
            if not cid:
                continue
            prev = chosen.get(cid)
            if prev is None or _RANK.get(row.get("status"), 0) > _RANK.get(prev.get("status"), 0):
                chosen[cid] = row
    added = 0
    for cid, row in chosen.items():
        old = have.get(cid)
        if old is not None and _RANK.get(old.get("status"), 0) >= _RANK.get(row.get("status"), 0):
            continue
        store.append(row)
        added += 1
    return {"read": read, "added": added, "total": len(latest_rows(store.rows()))}


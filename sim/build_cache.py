"""The build cache's size limit: least-recently-used eviction that never removes a build in use.

The cache (:func:`gateware.toolchain.cache_dir`) holds one directory per build, an *entry*,
under ``sim/`` (simulator models), ``verilog/`` (generated Verilog) and ``board/``
(simulated-board binaries). Next to each entry ``<entry>`` lie two lock files:

``<entry>.lock``
    exclusive while a process builds or looks up the entry (:func:`claim`);
``<entry>.use``
    shared by every process that uses the built entry, for as long as it holds the
    :class:`Lease` that :func:`claim` hands out; its modification time is the entry's
    last use.

The evictor removes an entry only when it gets both locks without waiting, so a build
in progress and a build in use are never removed. Limit: ``$MIXBIT_CACHE_MAX_GB``
(decimal GB, default 6; ``none`` for no limit), applied after every new build.
"""

from __future__ import annotations

import errno
import fcntl
import math
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from gateware.toolchain import cache_dir

__all__ = ["KINDS", "LIMIT_VARIABLE", "DEFAULT_MAX_GB", "Entry", "Lease", "Claim", "Pruned",
           "max_bytes", "claim", "entries", "entry_state", "prune", "clear", "format_size"]

#: The cache's subdirectories that hold entries.
KINDS = ("sim", "verilog", "board", "fast")
LIMIT_VARIABLE = "MIXBIT_CACHE_MAX_GB"
DEFAULT_MAX_GB = 6.0
_GB = 1_000_000_000
_NO_LIMIT = ("none", "inf", "infinity", "off", "unlimited")
_TRASH = ".trash-"
_BUSY = (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES)
_FROM_ENV = object()


def max_bytes() -> int | None:
    """The cache's size limit in bytes from ``$MIXBIT_CACHE_MAX_GB`` (None: no limit)."""
    raw = os.environ.get(LIMIT_VARIABLE, "").strip()
    if not raw:
        return int(DEFAULT_MAX_GB * _GB)
    if raw.lower() in _NO_LIMIT:
        return None
    try:
        gb = float(raw)
    except ValueError:
        gb = math.nan
    if not gb > 0 or math.isnan(gb):
        raise ValueError(f"{LIMIT_VARIABLE}={raw!r}: expected a size in GB above 0, or 'none' for no limit")
    return None if math.isinf(gb) else int(gb * _GB)


def format_size(size: int | None) -> str:
    """``size`` bytes for people: 0 B, 812 kB, 41.3 MB, 3.70 GB (decimal units)."""
    if size is None:
        return "none"
    if size >= _GB:
        return f"{size / _GB:.2f} GB"
    for unit, scale in (("MB", 1_000_000), ("kB", 1_000)):
        if size >= scale:
            return f"{size / scale:.{0 if size >= 100 * scale else 1}f} {unit}"
    return f"{size} B"


# Locks ----------------------------------------------------------------------------------

def _lock_path(entry: Path) -> Path:
    return entry.with_name(entry.name + ".lock")


def _use_path(entry: Path) -> Path:
    return entry.with_name(entry.name + ".use")


def _try_flock(fd: int, operation: int) -> bool:
    try:
        fcntl.flock(fd, operation)
    except OSError as error:
        if error.errno in _BUSY:
            return False
        raise
    return True


def _open_existing(path: Path) -> int | None:
    try:
        return os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return None


def _lock_exclusive(path: Path, *, wait: bool) -> int | None:
    """An fd holding ``path`` exclusively (None: someone else holds it and ``wait`` is false).

    An evictor unlinks the lock file while it holds it; a process that opened the old file
    before then gets the lock of a file that is gone, notices, and tries again.
    """
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            if not _try_flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB)):
                os.close(fd)
                return None
            held = os.fstat(fd)
            with suppress(FileNotFoundError):
                if os.path.samestat(held, os.stat(path)):
                    return fd
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)


def _probe(path: Path) -> bool:
    """Whether another open file holds a lock on ``path`` now (takes none itself)."""
    fd = _open_existing(path)
    if fd is None:
        return False
    try:
        return not _try_flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(fd)  # closing drops the probe's own lock, if it got one


class Lease:
    """A shared lock on one entry's ``.use`` file: while it is open, no evictor removes the entry.

    Released by :meth:`release` or when the lease is garbage-collected (so a
    :class:`sim.runner.Build` protects its directory for as long as it exists).
    """

    def __init__(self, entry: Path, fd: int):
        self.entry, self._fd = entry, fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def __del__(self):
        with suppress(Exception):  # at interpreter exit the process's end releases it anyway
            self.release()

    def __repr__(self) -> str:
        return f"Lease({str(self.entry)!r}{', released' if self._fd is None else ''})"


def _take_lease(entry: Path) -> Lease:
    # Called with the entry's .lock held, so no evictor holds .use or can unlink it meanwhile
    # (a `mixbit cache` probe may hold it for a moment, hence the wait).
    use = _use_path(entry)
    fd = os.open(use, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        os.utime(fd)  # the entry's last use
    except BaseException:
        os.close(fd)
        raise
    return Lease(entry, fd)


@dataclass
class Claim:
    """What :func:`claim` hands its block: call :meth:`made` after building the entry;
    after the block, :attr:`lease` protects the entry for as long as it is kept."""

    entry: Path
    new: bool = False
    lease: Lease | None = None

    def made(self) -> None:
        """The entry was (re)built in this block: prune the cache once the block ends."""
        self.new = True


@contextmanager
def claim(entry: Path) -> Iterator[Claim]:
    """Hold ``entry``'s build lock for the block (build or look it up inside), then lease it.

    Raises ValueError at once when ``$MIXBIT_CACHE_MAX_GB`` is malformed. After a block that
    called :meth:`Claim.made`, the cache is pruned to its limit (the new entry stays).
    """
    max_bytes()
    entry.parent.mkdir(parents=True, exist_ok=True)
    result = Claim(entry)
    fd = _lock_exclusive(_lock_path(entry), wait=True)
    try:
        yield result
        result.lease = _take_lease(entry)
    finally:
        os.close(fd)
    if result.new:
        prune(keep=entry, wait=False)


# Entries ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Entry:
    """One build in the cache."""

    kind: str
    name: str
    path: Path
    size: int
    last_used: float


def _size(path: Path) -> int:
    """Bytes in the files under ``path`` (symbolic links not followed); 0 if it vanished."""
    total, stack = 0, [path]
    while stack:
        try:
            with os.scandir(stack.pop()) as items:
                for item in items:
                    with suppress(FileNotFoundError):
                        if item.is_dir(follow_symlinks=False):
                            stack.append(item.path)
                        else:
                            total += item.stat(follow_symlinks=False).st_size
        except (FileNotFoundError, NotADirectoryError):
            pass
    return total


def _last_used(path: Path) -> float:
    for candidate in (_use_path(path), path):
        with suppress(FileNotFoundError):
            return candidate.stat().st_mtime
    return 0.0


def entries(root: Path | None = None) -> list[Entry]:
    """Every entry in the cache, least recently used first."""
    root = cache_dir() if root is None else root
    found = []
    for kind in KINDS:
        with suppress(FileNotFoundError, NotADirectoryError), os.scandir(root / kind) as items:
            for item in items:
                if item.name.startswith(".") or not item.is_dir(follow_symlinks=False):
                    continue
                path = Path(item.path)
                found.append(Entry(kind, item.name, path, _size(path), _last_used(path)))
    return sorted(found, key=lambda e: (e.last_used, e.kind, e.name))


def entry_state(entry: Entry) -> str:
    """``"building"``, ``"in use"`` (a lease elsewhere) or ``""`` (evictable now)."""
    if _probe(_lock_path(entry.path)):
        return "building"
    if _probe(_use_path(entry.path)):
        return "in use"
    return ""


def _evict(entry: Path) -> bool:
    """Remove ``entry`` and its lock files unless it is being built or used; True if removed."""
    lock = _lock_exclusive(_lock_path(entry), wait=False)
    if lock is None:
        return False
    use = None
    try:
        use = _open_existing(_use_path(entry))
        if use is not None and not _try_flock(use, fcntl.LOCK_EX | fcntl.LOCK_NB):
            return False
        # Renaming first makes the removal atomic for readers: a half-deleted entry is never
        # seen as a build. What rmtree leaves behind (an error) the next prune sweeps.
        trash = entry.with_name(f"{_TRASH}{entry.name}-{os.getpid()}-{time.monotonic_ns()}")
        try:
            entry.rename(trash)
        except FileNotFoundError:
            pass
        else:
            shutil.rmtree(trash, ignore_errors=True)
        for sibling in (_use_path(entry), _lock_path(entry)):
            with suppress(FileNotFoundError):
                sibling.unlink()
        return True
    finally:
        if use is not None:
            os.close(use)
        os.close(lock)


def _sweep_trash(root: Path) -> None:
    for kind in KINDS:
        with suppress(FileNotFoundError, NotADirectoryError), os.scandir(root / kind) as items:
            for item in items:
                if item.name.startswith(_TRASH):
                    shutil.rmtree(item.path, ignore_errors=True)


@dataclass
class Pruned:
    """What :func:`prune` or :func:`clear` did."""

    removed: list[Entry] = field(default_factory=list)
    skipped: list[Entry] = field(default_factory=list)  # being built or in use
    total: int = 0  # bytes left in the cache's entries
    limit: int | None = None

    @property
    def freed(self) -> int:
        return sum(e.size for e in self.removed)


@contextmanager
def _evicting(root: Path, wait: bool) -> Iterator[bool]:
    """One evictor at a time per cache (they would otherwise both remove for the same excess)."""
    root.mkdir(parents=True, exist_ok=True)
    fd = _lock_exclusive(root / "prune.lock", wait=wait)
    try:
        yield fd is not None
    finally:
        if fd is not None:
            os.close(fd)


def prune(*, limit=_FROM_ENV, keep: Path | None = None, wait: bool = True) -> Pruned:
    """Remove least-recently-used entries until the cache is within ``limit`` bytes.

    ``limit`` (bytes, None: no limit) defaults to :func:`max_bytes`; ``keep`` is never removed; entries being built
    or in use are skipped. With ``wait`` false, returns at once if another prune is running.
    """
    limit = max_bytes() if limit is _FROM_ENV else limit
    root = cache_dir()
    result = Pruned(limit=limit)
    with _evicting(root, wait) as ours:
        if not ours:
            return result
        _sweep_trash(root)
        found = entries(root)
        result.total = sum(e.size for e in found)
        for entry in found:
            if limit is None or result.total <= limit:
                break
            if keep is not None and entry.path == keep:
                continue
            if _evict(entry.path):
                result.removed.append(entry)
                result.total -= entry.size
            else:
                result.skipped.append(entry)
    return result


def clear() -> Pruned:
    """Remove every entry that is neither being built nor in use."""
    root = cache_dir()
    result = Pruned(limit=None)
    with _evicting(root, wait=True):
        _sweep_trash(root)
        for entry in entries(root):
            if _evict(entry.path):
                result.removed.append(entry)
            else:
                result.skipped.append(entry)
                result.total += entry.size
    return result

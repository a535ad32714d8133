"""The per-process journal: what makes a record survive a SIGKILL.

Theory of operation. `CaptureStore.submit` runs on the event loop right before
the last byte of a response goes out. It appends the record as one frame (see
codec.py) with a single `os.writev` to this process's journal file, opened
with O_APPEND. The write lands in the page cache, so it costs no disk wait, and
the page cache belongs to the kernel: once the call has returned, a SIGKILL of
the process cannot take the frame back. The record is then handed to the
writer thread, which commits it to LMDB later. (In process mode the worker
appends the frames of every record finished in one pass of its event loop
with one `os.writev`, holding back those responses' last bytes until it is
done; see `CaptureStore.submit`.)

Each journal file is `<data_dir>/journal/<pid>-<id>.jnl`. Its owner holds an
exclusive `flock` on it for as long as the file may hold records not yet in
LMDB; the file is created under a temporary name, locked, then renamed, so no
other process ever sees it unlocked while its owner lives. When the writer has
committed everything written to the current file it truncates it; when a file
grows past its limit while records keep coming, the writer starts a new file
and deletes the old one once its last record is committed.

Replay. A journal file whose lock can be taken belongs to no live process: its
owner died (or gave it up, see `Journal.release`). Any store that finds one, at
start-up and then periodically, writes its whole frames into LMDB (records
whose id is already stored are skipped, so a replay after a partial commit, or
two replays, are harmless) and deletes it. A frame cut short by a kill during
the write fails its length or CRC check and is ignored: its `submit` never
returned. A damaged frame elsewhere (a disk error, a flipped bit) is skipped
the same way, with one log line naming the file and the offset, and the
reading resumes at the next whole frame (codec.read_frames).
"""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Iterator

from aperture.ids import new_id

from . import codec

log = logging.getLogger("aperture.capture")

JOURNAL_DIRNAME = "journal"
SUFFIX = ".jnl"
DEFAULT_ROTATE_BYTES = 64 << 20


class JournalFile:
    """One locked, append-only journal file of this process."""

    __slots__ = ("path", "fd", "size", "last_seq", "keep")

    def __init__(self, directory: str) -> None:
        name = f"{os.getpid()}-{new_id()}"
        tmp = os.path.join(directory, name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            self.path = os.path.join(directory, name + SUFFIX)
            os.rename(tmp, self.path)
        except BaseException:
            os.close(fd)
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        self.fd = fd
        self.size = 0
        self.last_seq = 0  # sequence number of the last record written here
        self.keep = False  # holds records the writer dropped: leave for replay

    def append(self, parts: list[bytes], seq: int) -> None:
        n = os.writev(self.fd, parts)
        want = sum(map(len, parts))
        if n != want:  # a short write on a regular file: disk full
            # `size` stays at the last whole frame: the caller cuts back to it.
            raise OSError(f"short journal write ({n} of {want} bytes)")
        self.size += n
        self.last_seq = seq

    def truncate(self) -> None:
        os.ftruncate(self.fd, 0)
        self.size = 0

    def remove(self) -> None:
        """Delete the file (everything in it is committed) and drop the lock."""
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        os.close(self.fd)
        self.fd = -1

    def release(self) -> None:
        """Keep the file but drop the lock, so that a replay picks it up."""
        os.close(self.fd)
        self.fd = -1


def journal_dir(data_dir: str) -> str:
    d = os.path.join(data_dir, JOURNAL_DIRNAME)
    os.makedirs(d, exist_ok=True)
    return d


class Orphan:
    """A journal file of a dead process, locked by us while we replay it."""

    def __init__(self, path: str, fd: int) -> None:
        self.path = path
        self.fd = fd

    def read(self, pace=codec.no_pace):
        """All whole records in the file (see codec.read_frames)."""
        with open(self.fd, "rb", closefd=False) as f:
            data = f.read()
        records, damaged = codec.read_frames(data, pace)
        for offset, length in damaged:
            log.warning("journal %s: skipped %d damaged bytes at offset %d (the records "
                        "before and after them are kept)", self.path, length, offset)
        return records

    def done(self) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        os.close(self.fd)

    def give_up(self) -> None:
        os.close(self.fd)


def orphans(directory: str, own: set[str]) -> Iterator[Orphan]:
    """Journal files whose owner is gone, each locked for the caller."""
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return
    for name in names:
        path = os.path.join(directory, name)
        if not name.endswith(SUFFIX) or path in own:
            continue
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        # The owner may have deleted the file between our listdir and our lock.
        try:
            if os.fstat(fd).st_ino != os.stat(path).st_ino:
                os.close(fd)
                continue
        except FileNotFoundError:
            os.close(fd)
            continue
        yield Orphan(path, fd)

"""Files and folders: atomic writes (a reader never sees a half-written figure, JSON or checkpoint),
output folders checked before any work, and a lock so that one process writes a run folder."""

from __future__ import annotations

import errno
import fcntl
import os
import tempfile
from pathlib import Path


def write_atomic(path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; outputs are meant to be read
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def writable_folder(path, what: str = "output folder") -> Path:
    """``path`` as a folder that exists and can be written, its missing parents created.

    Checked by writing (and removing) a small temporary file, so that a run
    fails before it starts rather than when it first saves.

    Raises
    ------
    ValueError
        If ``path`` names an existing file, lies under a file, or cannot be
        created or written (the message names the path and the reason).
    """
    path = Path(path)
    try:
        if path.exists() and not path.is_dir():
            raise ValueError(f"{what} {path} is an existing file, not a folder; choose a folder")
        for parent in path.parents:
            if parent.exists():
                if not parent.is_dir():
                    raise ValueError(f"{what} {path} lies under {parent}, which is a file, not a folder; "
                                     "choose a folder elsewhere")
                break
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path, prefix=".write-test.")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise ValueError(f"{what} {path} cannot be written ({err.strerror or err}); "
                         "choose a folder you can write") from None
    return path


class FolderLocked(ValueError):
    """Another process holds the lock of a folder (:class:`FolderLock`)."""


class FolderLock:
    """An exclusive OS lock (``fcntl.flock``) on the file ``name`` in ``folder``, held until :meth:`release`.

    The operating system drops the lock when the holding process ends, crash
    included, so a stale lock cannot outlive its process. The lock file stays
    (removing it would let two processes lock two different files of one
    name); it holds the process id of the last holder.

    Raises
    ------
    FolderLocked
        If another process (or another open lock in this one) holds it.
    """

    def __init__(self, folder, name: str = ".lock", what: str = "folder"):
        self.path = Path(folder) / name
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            holder = os.read(fd, 32).decode(errors="replace").strip()
            os.close(fd)
            if err.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            pid = f" (pid {holder})" if holder.isdigit() else ""
            raise FolderLocked(f"another process{pid} is writing the {what} {Path(folder)} (it holds "
                               f"{self.path}); wait for it to finish, stop it, or choose another folder") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()

"""Write files and folders so that a crash never leaves a half-written one behind.

A folder is built under a temporary name beside its target and swapped into place in
one step. The swap holds an flock on the parent folder, so two processes writing the
same target at once each install a complete folder (the last one wins), never a mix.
Where Linux offers renameat2(RENAME_EXCHANGE) the swap is a single system call, so the
target exists at every instant; elsewhere it is two renames under the lock.
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import re
import shutil
import signal
import tempfile
import threading
from pathlib import Path
from typing import Iterator

from .errors import GencompressError

# Written into every folder we create: an existing non-empty folder is replaced only if
# it holds this file (or a bundle manifest), so `--out ~/Documents` can never be deleted.
MARKER = ".gencompress"
_REPLACEABLE = (MARKER, "manifest.json")


def _check_parent_writable(target: Path) -> Path:
    parent = target.resolve().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise GencompressError(f"cannot create output folder {parent}: {exc.strerror}") from None
    if not os.access(parent, os.W_OK):
        raise GencompressError(f"output folder {parent} is not writable")
    return parent


def _check_replaceable(target: Path) -> None:
    if target.is_symlink():  # replacing it would swap the link, not the folder it names
        raise GencompressError(f"output path {target} is a symbolic link; name the folder itself")
    if target.exists() and not target.is_dir():
        raise GencompressError(f"output path {target} exists and is not a folder")
    if target.is_dir() and any(target.iterdir()) and not any((target / m).exists() for m in _REPLACEABLE):
        raise GencompressError(
            f"output folder {target} exists and was not written by gencompress; refusing to replace it (choose another --out)"
        )


def check_output_dir(target: str | os.PathLike) -> None:
    """Fail early (before minutes of work) if `target` can never become our output folder.

    Root ignores permission bits, so besides os.access we create and remove a probe file:
    that catches read-only file systems and full disks as well.
    """
    target = Path(target)
    _check_replaceable(target)
    parent = _check_parent_writable(target)
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{target.name}.probe-", dir=parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise GencompressError(f"output folder {parent} is not writable: {exc.strerror}") from None


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside `target`; on success it replaces `target`.

    At every instant `target` is either the old complete folder or the new one. Write
    errors (a full disk, say) become a GencompressError naming the target; the old
    folder stays as it was.
    """
    target = Path(target)
    _check_replaceable(target)
    parent = _check_parent_writable(target)
    _remove_stale_temps(parent)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-{os.getpid()}-", dir=parent))
    except OSError as exc:
        raise GencompressError(f"cannot write {target}: {exc.strerror}") from None
    try:
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; a bundle is an ordinary folder
        (tmp / MARKER).write_text("written by gencompress: this folder is replaced as a whole on the next write\n")
        yield tmp
        _fsync_tree(tmp)
        _swap_into_place(tmp, target)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        where = f" ({exc.filename})" if exc.filename else ""
        raise GencompressError(f"cannot write {target}: {exc.strerror or exc}{where}") from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_tree(root: Path) -> None:
    """Flush every file to disk before the rename makes it visible (power loss safety)."""
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


@contextlib.contextmanager
def _locked(parent: Path) -> Iterator[None]:
    """Exclusive flock on the parent folder itself: no lock file is left lying around."""
    fd = os.open(parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold SIGINT/SIGTERM during the swap so an interrupt lands before or after it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held = {signal.SIGINT, signal.SIGTERM}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _swap_into_place(tmp: Path, target: Path) -> None:
    leftover = None
    with _signals_deferred(), _locked(tmp.parent):
        _check_replaceable(target)  # again: another process may have written it meanwhile
        if target.exists():
            leftover = _replace_existing(tmp, target)
        else:
            try:
                os.rename(tmp, target)
            except OSError as exc:
                if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
                leftover = _replace_existing(tmp, target)  # created without our lock
        _fsync_dir(tmp.parent)
    if leftover is not None:
        shutil.rmtree(leftover, ignore_errors=True)


def _replace_existing(tmp: Path, target: Path) -> Path:
    """Put `tmp` at `target`; return where the old folder now lies (to be removed)."""
    if _rename_exchange(tmp, target):
        return tmp
    old = target.with_name(f".{target.name}.old-{os.getpid()}-{os.urandom(4).hex()}")
    os.rename(target, old)
    try:
        os.rename(tmp, target)
    except OSError:
        os.rename(old, target)  # put the old folder back
        raise
    return old


def _rename_exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths with Linux renameat2; False where that is unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _remove_stale_temps(parent: Path) -> None:
    """Remove temp folders that killed processes (SIGKILL, power loss) left in `parent`.

    Ours are named `.<target>.tmp-<pid>-<random>` (or `.old-`); those of live processes
    are in use and stay.
    """
    for path in list(parent.glob(".*.tmp-*")) + list(parent.glob(".*.old-*")):
        match = _TEMP_NAME.match(path.name)
        if match and path.is_dir() and not _pid_alive(int(match.group(1))):
            shutil.rmtree(path, ignore_errors=True)


_TEMP_NAME = re.compile(r"^\..+\.(?:tmp|old)-(\d+)-[^-/]+$")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to a temp file beside `path`, fsync it, then rename it over `path`."""
    path = Path(path)
    if path.is_dir():
        raise GencompressError(f"output path {path} is a folder, not a file")
    parent = _check_parent_writable(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=parent)
    except OSError as exc:
        raise GencompressError(f"cannot write {path}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
        _fsync_dir(parent)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise GencompressError(f"cannot write {path}: {exc.strerror or exc}") from exc
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))

"""Write files and folders so that a crash never leaves a half-written one behind,
and never replace a folder that is not ours.

A folder is built under a temporary name beside its target and swapped into place in
one step. Where Linux offers renameat2(RENAME_EXCHANGE) the swap is a single system
call, so the target exists at every instant; elsewhere it is two renames.

Each target has a lock: an flock on the sibling file `.NAME.lock`, held from the output
check to the final rename. The CLI takes it before any work (`claim_output`) and a second
process that wants the same target is refused at once; a plain `atomic_dir` waits for it
and says so. The kernel drops an flock when its process dies, even by SIGKILL, so a crash
never leaves a target locked.

An existing folder is replaced only if gencompress wrote it: it carries the marker file
`.gencompress`, which lists every entry written, and holds nothing else (`_check_replaceable`).
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
from pathlib import Path
from typing import Iterator

from .errors import GencompressError

# Written into every folder we create, listing what we wrote: an existing non-empty folder
# is replaced only if it holds this file and nothing it does not list, so `--out ~/Documents`
# or a user's project folder that happens to hold a manifest.json is never deleted.
MARKER = ".gencompress"
_MARKER_NOTE = "written by gencompress: this folder is replaced as a whole on the next write, unless it holds files not listed here"


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
    if not target.is_dir() or not any(target.iterdir()):
        return
    if not (target / MARKER).is_file():
        raise GencompressError(
            f"output folder {target} exists and was not written by gencompress; refusing to replace it (choose another --out)"
        )
    listed = _listed(target)
    if listed is None:
        raise GencompressError(
            f"output folder {target} has a {MARKER} marker that does not list what gencompress wrote; "
            "refusing to replace it (choose another --out)"
        )
    foreign = [entry for entry in _entries(target) if entry not in listed]
    if foreign:  # name a file where there is one: "report/my-plot.png" says more than "report"
        files = [e for e in foreign if (target / e).is_symlink() or not (target / e).is_dir()]
        foreign = files[0] if files else foreign[0] + "/"
        raise GencompressError(
            f"output folder {target} holds {foreign}, which gencompress did not write; refusing to replace it "
            "(move that file out, or choose another --out)"
        )


def _entries(root: Path) -> list[str]:
    """Every file and folder under `root`, relative, '/'-separated, the marker aside."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):  # never follows links
        rel = Path(dirpath).relative_to(root)
        found += [(rel / n).as_posix() for n in dirnames + filenames]
    return sorted(e for e in found if e != MARKER)


def _write_marker(root: Path) -> None:
    (root / MARKER).write_text(json.dumps({"note": _MARKER_NOTE, "entries": _entries(root)}, indent=1) + "\n")


def _listed(root: Path) -> set[str] | None:
    """What the marker says we wrote; None if it is unreadable.

    Markers of gencompress 0.x before the listing were one line of text: for those, the
    bundle's manifest names what we wrote (a folder without a manifest cannot be vouched for).
    """
    try:
        text = (root / MARKER).read_text()
        data = json.loads(text) if text.lstrip().startswith("{") else None
        if data is None:
            manifest = json.loads((root / "manifest.json").read_text())
            names = ["manifest.json", *manifest["files"]]
        else:
            names = data["entries"]
        listed = {str(n) for n in names}
    except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError):
        return None
    return listed | {p.as_posix() for n in listed for p in Path(n).parents if p != Path(".")}


def check_output_dir(target: str | os.PathLike) -> None:
    """Fail early (before minutes of work) if `target` can never become our output folder.

    Root ignores permission bits, so besides os.access we create and remove a probe file:
    that catches read-only file systems and full disks as well.
    """
    if "\x00" in os.fspath(target):  # no file system takes it; os calls would raise ValueError
        raise GencompressError(f"output folder {os.fspath(target)!r} contains a NUL byte")
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
def claim_output(target: str | os.PathLike, what: str = "--out") -> Iterator[Path]:
    """Check that `target` can become our output and hold its lock until the block ends.

    A command wraps its whole run in this, before any work: a second process naming the
    same target is refused at once (exit 2), so neither run's result is silently lost.
    The `atomic_dir` that finally writes `target` inside the block reuses this lock.
    """
    target = Path(target)
    check_output_dir(target)
    with exclusive(target, what=what):
        _check_replaceable(target)  # again, under the lock: a run that just ended may have written it
        yield target


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside `target`; on success it replaces `target`.

    At every instant `target` is either the old complete folder or the new one. Write
    errors (a full disk, say) become a GencompressError naming the target; the old
    folder stays as it was. Another process writing `target` is waited for (and its
    result replaced, which stderr says), unless this process claimed it already.
    """
    if "\x00" in os.fspath(target):  # no file system takes it; os calls would raise ValueError
        raise GencompressError(f"output folder {os.fspath(target)!r} contains a NUL byte")
    target = Path(target)
    _check_replaceable(target)
    parent = _check_parent_writable(target)
    with exclusive(target, wait=True):
        _check_replaceable(target)  # a writer we waited for may have changed it
        _remove_stale_temps(parent)
        try:
            tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-{os.getpid()}-", dir=parent))
        except OSError as exc:
            raise GencompressError(f"cannot write {target}: {exc.strerror}") from None
        try:
            os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; a bundle is an ordinary folder
            yield tmp
            _write_marker(tmp)  # last: it lists everything the folder holds
            _fsync_tree(tmp)
            _swap_into_place(tmp, target)
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            where = f" ({exc.filename})" if exc.filename else ""
            raise GencompressError(f"cannot write {target}: {exc.strerror or exc}{where}") from exc
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


# --- one writer per target ------------------------------------------------------------

# absolute target -> (pid, fd) of the lock this process holds; the pid keeps a forked child
# from taking its parent's lock for its own
_HELD: dict[str, tuple[int, int]] = {}


def lock_path(target: str | os.PathLike) -> Path:
    target = Path(target)
    return target.parent / f".{target.name}.lock"


@contextlib.contextmanager
def exclusive(target: str | os.PathLike, wait: bool = False, what: str = "--out") -> Iterator[None]:
    """Hold the lock on `target` (an flock on `.NAME.lock` beside it) until the block ends.

    Re-entrant within a process. When another process holds it: refuse (GencompressError
    naming its pid), or with `wait` block until it lets go and say on stderr that its
    result is being replaced. The lock file is removed on the way out.
    """
    target = Path(target)
    key = str(target.parent.resolve() / target.name)
    held = _HELD.get(key)
    if held is not None and held[0] == os.getpid():
        yield
        return
    path = lock_path(target)
    fd = _lock(path, target, blocking=False)
    if fd is None:
        holder = _holder(path)
        if not wait:
            raise GencompressError(
                f"{what} {target} is being written by another gencompress process{holder}; "
                f"wait for it to finish, or choose another {what}"
            )
        print(f"gencompress: waiting for another gencompress process{holder} that is writing {target}", file=sys.stderr)
        fd = _lock(path, target, blocking=True)
        print(f"gencompress: that process has finished; this run replaces what it wrote to {target}", file=sys.stderr)
    _HELD[key] = (os.getpid(), fd)
    try:
        with contextlib.suppress(OSError):  # the pid is a courtesy for the message above
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        del _HELD[key]
        # Unlink while still holding it: a process that opened the old file meanwhile finds,
        # once it gets the lock, that the path no longer names that file, and starts over.
        with contextlib.suppress(OSError):
            os.unlink(path)
        os.close(fd)


def _lock(path: Path, target: Path, blocking: bool) -> int | None:
    """An fd holding the flock on `path`, or None if another process holds it (non-blocking)."""
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        except OSError as exc:
            raise GencompressError(f"cannot lock {target} ({path}): {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        try:
            same = os.path.samestat(os.stat(path), os.fstat(fd))
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)  # its holder removed that file as it let go: lock the new one


def _holder(path: Path) -> str:
    try:
        pid = path.read_text().strip()
    except OSError:
        return ""
    return f" (pid {pid})" if pid.isdigit() else ""


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
    with _signals_deferred():  # under the target's lock (atomic_dir)
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

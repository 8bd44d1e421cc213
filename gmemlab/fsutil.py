"""Writing files atomically: a reader never sees half a file.

What an output path may be (docs/cli.md, ``-o``):

- a regular file, or nothing yet: written to a temporary file in the same folder, then
  renamed over it, whole; an existing file keeps its mode. A regular file the user may
  not write (no write permission, or no write bit at all for root) is refused.
- a symlink: resolved, and its target written as above (the link itself stays).
- a character device or a FIFO (``/dev/null``, ``/dev/stdout``, a named pipe): written
  through, with no rename. A FIFO nobody reads is refused at once instead of blocking.
- anything else (a directory, a block device, a socket) is refused.

Every refusal and every OSError of the output is an OutputError naming the path and
the errno (exit 2 in gmemlab.cli), and the temporary file is removed whatever happens
(a signal included, once gmemlab.cli has turned SIGTERM into an exception).
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import tempfile
from contextlib import contextmanager
from typing import Iterable, Iterator

from gmemlab.errors import OutputError

# Text written to an output: UTF-8; a path decoded with surrogateescape (a non-UTF-8
# file name) is written with backslash escapes rather than failing.
ENCODING_ERRORS = "backslashreplace"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def os_problem(e: OSError) -> str:
    """'ENOSPC: No space left on device' from an OSError."""
    name = errno.errorcode.get(e.errno or 0, f"errno {e.errno}")
    return f"{name}: {e.strerror or os.strerror(e.errno or 0)}"


def _refuse(path: str, problem: str) -> OutputError:
    return OutputError(path, problem)


def check_output(path: str, inputs: Iterable[str] = ()) -> None:
    """Refuse an output path before any work is done: an input file named as the
    output (it would be destroyed), a directory, a read-only file, a block device or
    socket. Raises OutputError; a path that does not exist yet passes."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return
    except OSError as e:
        raise _refuse(path, f"cannot write ({os_problem(e)})") from None
    _check_kind(path, st)
    if not stat.S_ISREG(st.st_mode):
        return  # a terminal may well be both the input and the output
    for src in inputs:
        if src is None or src == "-":
            continue
        try:
            same = os.path.samefile(path, src)
        except OSError:
            continue
        if same:
            raise _refuse(path, f"is the input file {src}: writing it would destroy the input; "
                                "choose another output")


def _check_kind(path: str, st: os.stat_result) -> None:
    mode = st.st_mode
    if stat.S_ISDIR(mode):
        raise _refuse(path, "cannot write (EISDIR: Is a directory)")
    if stat.S_ISREG(mode):
        if not os.access(path, os.W_OK) or not mode & 0o222:
            raise _refuse(path, "cannot write (EACCES: the file is read-only)")
        return
    if not (stat.S_ISCHR(mode) or stat.S_ISFIFO(mode)):
        raise _refuse(path, "cannot write: not a regular file, character device or FIFO")


@contextmanager
def _write_through(path: str, shown: str) -> Iterator:
    """A character device or FIFO, opened for writing without a rename."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        if e.errno == errno.ENXIO:
            raise _refuse(shown, "no reader (a FIFO nobody has open for reading)") from None
        raise _refuse(shown, f"cannot write ({os_problem(e)})") from None
    try:
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        fcntl.fcntl(fd, fcntl.F_SETFL, flags & ~os.O_NONBLOCK)
        f = os.fdopen(fd, "w", encoding="utf-8", errors=ENCODING_ERRORS, newline="")
    except BaseException:
        os.close(fd)
        raise
    with f:
        try:
            yield f
            f.flush()
        except OSError as e:
            if isinstance(e, BrokenPipeError) or (e.filename not in (None, path)):
                raise
            raise _refuse(shown, f"cannot write ({os_problem(e)})") from None


@contextmanager
def atomic_open(path: str, inputs: Iterable[str] = ()) -> Iterator:
    """A text file that appears at path, whole, only when the block ends without error
    (see the module docstring for symlinks, devices and FIFOs). inputs: the input files
    of the command, which path must not be."""
    shown = path
    check_output(path, inputs)
    try:
        st = os.stat(path)  # through symlinks
    except FileNotFoundError:
        st = None
    except OSError as e:
        raise _refuse(shown, f"cannot write ({os_problem(e)})") from None
    if st is not None and not stat.S_ISREG(st.st_mode):
        # opened by its own name: /dev/stdout -> /proc/self/fd/1 -> "pipe:[...]" resolves
        # to no path, but opens
        with _write_through(path, shown) as f:
            yield f
        return
    target = os.path.realpath(path) if os.path.islink(path) else path
    folder = os.path.dirname(os.path.abspath(target))
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=folder)
    except OSError as e:
        raise _refuse(shown, f"cannot write ({os_problem(e)})") from None
    try:
        try:
            # mkstemp makes 0600: a new file is an ordinary one, an existing one keeps its mode
            os.fchmod(fd, stat.S_IMODE(st.st_mode) if st is not None else 0o666 & ~_umask())
            if st is not None and os.geteuid() == 0:
                try:
                    os.fchown(fd, st.st_uid, st.st_gid)
                except OSError:
                    pass
            f = os.fdopen(fd, "w", encoding="utf-8", errors=ENCODING_ERRORS, newline="")
        except BaseException:
            os.close(fd)
            raise
        with f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except OSError as e:
        _unlink(tmp)
        if isinstance(e, BrokenPipeError) or e.filename not in (None, tmp, target):
            raise
        raise _refuse(shown, f"cannot write ({os_problem(e)})") from None
    except BaseException:
        _unlink(tmp)
        raise


def _unlink(tmp: str) -> None:
    try:
        os.unlink(tmp)
    except OSError:
        pass


def atomic_write(path: str, data: str | bytes, inputs: Iterable[str] = ()) -> None:
    """Write data to path through a temporary file in the same folder and a rename
    (written through for a character device or FIFO)."""
    with atomic_open(path, inputs) as f:
        f.write(data.decode("utf-8") if isinstance(data, bytes) else data)

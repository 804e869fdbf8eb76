"""Crash-safe file writes: temp file in the same directory, fsync, rename.

A reader (or a job killed mid-write) therefore sees either the old or the new file, never a
truncated one. Files get the mode the user's umask gives (like `open`), except inside an
experiment, whose files are never writable by group or others (`private_mode`): on a shared
login node a group-writable record, script or pickle is code someone else can change.
"""

import contextlib
import errno
import json
import os
import tempfile
from pathlib import Path


def current_umask() -> int:
    """The process umask (read without changing it where /proc says it; else set and restore)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def user_mode(executable: bool = False) -> int:
    """What `open()` (or `chmod +x` of a new file) would give under the user's umask."""
    return (0o777 if executable else 0o666) & ~current_umask()


def private_mode(executable: bool = False) -> int:
    """A file inside an experiment: the user's umask, and never writable by group or others."""
    return user_mode(executable) & ~0o022


@contextlib.contextmanager
def no_write_for_others():
    """While it is held, this process creates nothing that group or others may write: around what
    writes an experiment (submit, resubmit, run), whose files include the pickles submitit writes
    and the output file the scheduler creates with the submitter's umask. The umask is put back
    after, so a notebook's later files are as its user's umask makes them."""
    previous = os.umask(current_umask() | 0o022)
    try:
        yield
    finally:
        os.umask(previous)


def write_new(path, data: bytes, mode: int) -> None:
    """Create a file that must not exist yet (O_EXCL: never through a planted link or over
    another file) and write it, without a temp file or fsync: for the many files of a folder
    just created, where a crash leaves an experiment no record points to (submit writes
    experiment.json, atomically, last). 20,000 fsyncs were most of a 10,000-trial submit."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


NO_SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT)  # a full file system, or a quota reached


class NoSpace(OSError):
    """A write that found no space (or no quota) left; says the folder, which write() alone does
    not. The file it replaced, if any, is as it was."""

    def __str__(self):
        path = Path(self.filename)
        return f"no space left on {path.parent} ({self.strerror}) while writing {path.name}"


def atomic_write_bytes(path, data: bytes, mode: int | None = None) -> None:
    """Write `data` to `path` atomically; mode None: what the user's umask gives. Out of space
    (or quota): NoSpace, with `path` whole as it was."""
    path = Path(path)
    mode = user_mode() if mode is None else mode
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        _raise_if_no_space(exc, path)
        raise
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        _raise_if_no_space(exc, path)
        raise
    _fsync_dir(path.parent)


def _raise_if_no_space(exc: BaseException, path: Path) -> None:
    if isinstance(exc, OSError) and exc.errno in NO_SPACE_ERRNOS and not isinstance(exc, NoSpace):
        raise NoSpace(exc.errno, os.strerror(exc.errno), str(path)) from exc


def atomic_write_text(path, text: str, mode: int | None = None) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), mode)


def atomic_write_json(path, obj, mode: int | None = None) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n", mode)


def append_line_atomic(path, line: str) -> None:
    """Append one line so that a crash leaves either the old content or old + the full line.

    metrics.jsonl is small (one line per epoch), so rewriting it whole keeps the guarantee simple.
    """
    path = Path(path)
    old = path.read_bytes() if path.exists() else b""
    if old and not old.endswith(b"\n"):
        old = old[: old.rfind(b"\n") + 1]  # drop a torn last line left by an older writer
    atomic_write_bytes(path, old + line.rstrip("\n").encode("utf-8") + b"\n")


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read_json(path, default=None):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return default


TRIAL_SPEC_MAX_BYTES = 4 * 1024 * 1024  # as a spec file (spec/yamlsource.py): far above any trial's


def read_trial_spec(path: Path) -> dict:
    """A trial's spec.yaml: JSON behind a comment line (dump_trial_spec), read without a YAML
    library (a container image may have none); anything else through the spec loader's budgeted
    YAML reader (a planted file of nested aliases is refused in milliseconds, not 2 GB later).
    UserError (one line naming the file) for a file that is neither."""
    from dlhpc.errors import UserError

    with open(path, "rb") as f:
        raw = f.read(TRIAL_SPEC_MAX_BYTES + 1)
    if len(raw) > TRIAL_SPEC_MAX_BYTES:
        raise UserError(f"{path}: larger than {TRIAL_SPEC_MAX_BYTES >> 20} MiB: not a trial spec dlhpc wrote")
    text = raw.decode("utf-8", errors="replace")
    try:
        data = json.loads("".join(line for line in text.splitlines(keepends=True) if not line.startswith("#")))
    except (ValueError, RecursionError):
        from dlhpc.spec.yamlsource import load_text

        data, _origins = load_text(text, str(path))
    return data if isinstance(data, dict) else {}


def is_there(path: Path, kind: str) -> bool:
    """path.is_file() (kind "file") or is_dir(), where a name too long for the filesystem, or
    one behind a folder we may not enter, is simply not there."""
    try:
        return path.is_file() if kind == "file" else path.is_dir()
    except OSError:
        return False

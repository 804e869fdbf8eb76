"""Who may have written a file: the checks that keep other users' code out of your jobs.

On a shared login node and in group-writable project folders, a file another user could have
replaced is code they could run as you (a pickle, a job script, a record naming a process to
signal). These checks refuse such files and folders with the command that fixes them
(docs/security.md).
"""

import os
import pwd
import stat
from pathlib import Path

from dlhpc.errors import UserError

OTHERS_WRITE = stat.S_IWGRP | stat.S_IWOTH


class UntrustedFile(UserError):
    """A file or folder someone other than the user could have written."""


def _owner(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def others_can_replace(st: os.stat_result) -> bool:
    """Group or others may write it, and (for a folder) no sticky bit keeps them to their own files."""
    return bool(st.st_mode & OTHERS_WRITE) and not (stat.S_ISDIR(st.st_mode) and st.st_mode & stat.S_ISVTX)


def require_own_file(path, what: str) -> None:
    """Refuse `path` unless the user owns it and nobody else can write it; not a symlink."""
    path = Path(path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise UntrustedFile(f"{what} {path} does not exist") from None
    if stat.S_ISLNK(st.st_mode):
        raise UntrustedFile(f"{what} {path} is a symbolic link; dlhpc only reads its own files here")
    if st.st_uid != os.getuid():
        raise UntrustedFile(
            f"{what} {path} belongs to {_owner(st.st_uid)}, not to you ({_owner(os.getuid())}): "
            "refusing to load a file someone else wrote"
        )
    if st.st_mode & OTHERS_WRITE:
        raise UntrustedFile(
            f"{what} {path} is writable by {'group and others' if st.st_mode & stat.S_IWOTH else 'its group'} "
            f"(mode {stat.filemode(st.st_mode)}): refusing to load a file someone else could have replaced; "
            f"if you trust its content, `chmod go-w {path}`"
        )


def check_runs_folder(root: Path, created_into: Path | None = None) -> None:
    """The folder experiments are created in must be one others cannot rearrange: owned by the
    user (or sticky, like /tmp), and not group- or world-writable without the sticky bit. The
    same for the existing folder dlhpc created it in, if it did."""
    for folder in filter(None, (root, created_into)):
        st = folder.stat()
        if others_can_replace(st):
            raise UserError(
                f"runs folder {root}: {folder} is writable by others ({stat.filemode(st.st_mode)}), who could "
                f"replace your experiments there. Fix: `chmod go-w {folder}` (or `chmod +t {folder}` in a shared "
                "project folder), or set runs_dir (--runs-dir) to a folder of your own"
            )
    st = root.stat()
    if st.st_uid != os.getuid() and not st.st_mode & stat.S_ISVTX:
        raise UserError(
            f"runs folder {root} belongs to {_owner(st.st_uid)}, who could change it under your experiments. "
            f"Fix: set runs_dir (--runs-dir) to a folder of your own, e.g. {root}/{_owner(os.getuid())}"
        )

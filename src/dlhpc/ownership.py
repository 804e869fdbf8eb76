"""Whose experiment a folder is. dlhpc acts only on the caller's own experiments: a reference by
name resolves only among them, and whatever writes into an experiment, signals its jobs or runs
its `env.setup` (resubmit, cancel, summary --save, report, plot, tensorboard's event files, the
W&B export) checks first (docs/security.md). A colleague's `share: group` experiment may be read,
never written into.

An experiment is yours when you own both its folder and its `experiment.json` (a regular file,
not a link): in a shared runs folder anyone can make a folder of any name, and a record inside a
folder of yours that someone else owns was not written by dlhpc for you.
"""

import os
import pwd
import stat
from pathlib import Path

from dlhpc.errors import UserError

RECORD = "experiment.json"


class NotYours(UserError):
    """An experiment folder that belongs to someone else (exit 2, one line)."""


def owner_uid(folder: Path) -> int | None:
    """Who owns this experiment (None if its folder and record disagree, or it cannot be read)."""
    try:
        folder_uid = os.stat(folder).st_uid
        record = os.lstat(Path(folder) / RECORD)
    except OSError:
        return None
    if not stat.S_ISREG(record.st_mode) or record.st_uid != folder_uid:
        return None
    return folder_uid


def is_own(folder: Path) -> bool:
    return owner_uid(folder) == os.getuid()


def user_name(uid: int | None) -> str:
    if uid is None:
        return "someone else (its folder and its experiment.json have different owners)"
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def require_own(folder: Path, doing: str = "act on it") -> None:
    """Raise NotYours, naming the owner, unless the caller owns this experiment."""
    if not is_own(folder):
        raise NotYours(not_yours_words(folder, doing))


def not_yours_words(folder: Path, doing: str = "act on it") -> str:
    try:
        folder_uid = os.stat(folder).st_uid
    except OSError:
        folder_uid = None
    uid = owner_uid(folder) if folder_uid == os.getuid() else folder_uid
    return f"{folder} belongs to {user_name(uid)}; dlhpc acts only on your own experiments (cannot {doing})"

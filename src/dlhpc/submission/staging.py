"""`dlhpc data fetch`: put MNIST under a shared root, checksummed, idempotent, safe to run twice at once."""

import errno
import fcntl
import os

from dlhpc.errors import UserError
from dlhpc.train import data as mnist


def fetch(root=None):
    root = mnist.resolve_root(root).absolute()
    root.mkdir(parents=True, exist_ok=True)
    # Two fetches at once (two attendees, one shared root) take turns; the second finds the data.
    # O_NOFOLLOW: in a shared root, a lock "file" someone made a symlink must not truncate or
    # create whatever it points to
    lock_path = root / ".dlhpc-fetch.lock"
    try:
        fd = os.open(lock_path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o666)
    except OSError as exc:
        if exc.errno != errno.ELOOP:
            raise UserError(f"{lock_path}: cannot open the fetch lock ({exc.strerror})") from None
        raise UserError(
            f"{lock_path} is a symbolic link, not dlhpc's lock file: someone put it there. Remove it "
            f"(rm {lock_path}) and run again"
        ) from None
    with os.fdopen(fd, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not mnist.is_present(root):
            mnist.fetch(root)
        try:
            os.chmod(root, 0o755)
        except OSError:
            pass
    return root

"""`dlhpc data fetch`: put MNIST under a shared root, checksummed, idempotent, safe to run twice at once."""

import fcntl
import os

from dlhpc.train import data as mnist


def fetch(root=None):
    root = mnist.resolve_root(root).absolute()
    root.mkdir(parents=True, exist_ok=True)
    # Two fetches at once (two attendees, one shared root) take turns; the second finds the data.
    # O_NOFOLLOW: in a shared root, a lock "file" someone made a symlink must not truncate or
    # create whatever it points to
    fd = os.open(root / ".dlhpc-fetch.lock", os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o666)
    with os.fdopen(fd, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not mnist.is_present(root):
            mnist.fetch(root)
        try:
            os.chmod(root, 0o755)
        except OSError:
            pass
    return root

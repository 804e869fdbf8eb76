"""`dlhpc data fetch`: put MNIST under a shared root, checksummed, idempotent, safe to run twice at once."""

import fcntl
import os

from dlhpc.train import data as mnist


def fetch(root=None):
    root = mnist.resolve_root(root).absolute()
    root.mkdir(parents=True, exist_ok=True)
    # Two fetches at once (two attendees, one shared root) take turns; the second finds the data.
    with open(root / ".dlhpc-fetch.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not mnist.is_present(root):
            mnist.fetch(root)
        try:
            os.chmod(root, 0o755)
        except OSError:
            pass
    return root

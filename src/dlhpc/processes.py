"""Which process a recorded PID really is: never signal a process dlhpc did not start.

A PID read back from a run folder may be stale (reused by the system for something else), or
written by someone else (0, -1, another user's process). dlhpc records a process by its PID, its
start time since boot (/proc/PID/stat field 22) and its owner, and signals only a live process
whose three match (docs/security.md).
"""

import os
import signal


def _stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: split after its last ')'
    return text[text.rfind(")") + 2 :].split()


def identity(pid: int | None = None) -> dict | None:
    """{pid, start, uid} of a live process (this one by default); None if it cannot be read."""
    pid = os.getpid() if pid is None else pid
    now = _observe(pid)
    return None if now is None else {k: now[k] for k in ("pid", "start", "uid")}


def _observe(pid: int) -> dict | None:
    """What /proc says of a process now: pid, start, uid and state (one read of its stat)."""
    fields = _stat_fields(pid)
    if not fields:
        return None
    try:
        uid = os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None
    return {"pid": pid, "start": int(fields[19]), "uid": uid, "state": fields[0]}  # field 22: the 20th after ')'


def _valid_pid(pid) -> int | None:
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 1:
        return None  # 0 is the caller's group, -1 every process of the user, 1 is init
    return pid


def is_running(recorded: dict | None) -> bool:
    """The recorded process still runs: same PID, same start time, same owner (the caller), not a zombie."""
    if not isinstance(recorded, dict):
        return False
    pid = _valid_pid(recorded.get("pid"))
    if pid is None or recorded.get("uid") != os.getuid():
        return False
    now = _observe(pid)
    if now is None or now["start"] != recorded.get("start") or now["uid"] != os.getuid():
        return False
    return now["state"] != "Z"


def signal_if_running(recorded: dict | None, signum: int = signal.SIGTERM) -> bool:
    """Send `signum` to the recorded process if, and only if, it is still that process. A pidfd
    pins the process between the check and the signal, so a PID reused in between is not hit."""
    pid = _valid_pid(recorded.get("pid")) if isinstance(recorded, dict) else None
    if pid is None:
        return False
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        pidfd = None  # no pidfd (old kernel, not Linux): check, then signal at once
    try:
        if not is_running(recorded):
            return False
        if pidfd is not None:
            signal.pidfd_send_signal(pidfd, signum)
        else:
            os.kill(pid, signum)
        return True
    except ProcessLookupError:
        return False
    finally:
        if pidfd is not None:
            os.close(pidfd)

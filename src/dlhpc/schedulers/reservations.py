"""`resources.reservation`: checked before anything is queued, the same way on every scheduler
(each backend lists its reservations: SLURM's `scontrol show reservation`, PBS's `pbs_rstat`).
A workshop's allocation is usually a reservation; a wrong name, one that has ended, one too short
for the job's walltime, or one the user may not use would otherwise leave the jobs pending with
a reason few can read."""

import getpass
import math
import time
from dataclasses import dataclass, field

from dlhpc.spec.schema import parse_time


@dataclass
class Reservation:
    name: str
    state: str  # the scheduler's word
    usable: bool  # jobs may be queued into it now (it may still start later)
    start: float  # epoch seconds
    end: float
    users: list = field(default_factory=list)  # who may use it (empty: anyone); "-name" excludes
    accounts: list = field(default_factory=list)
    other_names: tuple = ()  # what else it answers to (PBS: its id R123 and queue)
    queue: str = ""  # PBS: the queue its jobs go to


def find(name: str, found: list[Reservation]) -> Reservation | None:
    return next((r for r in found if name == r.name or name in r.other_names), None)


def problems(res: dict, found: list[Reservation], user: str | None = None, now: float | None = None) -> list[str]:
    """What would keep a job with these resources from running in its reservation."""
    name = res.get("reservation")
    if not name:
        return []
    user, now = user or getpass.getuser(), now or time.time()
    chosen = find(name, found)
    if chosen is None:
        names = ", ".join(sorted(r.name for r in found)) or "none"
        return [f"reservation {name!r} does not exist (reservations: {names}); set resources.reservation to one"]
    if not chosen.usable:
        return [f"reservation {name!r} is {chosen.state}: it cannot take jobs; ask its owner, or use another"]
    if chosen.end <= now:
        return [f"reservation {name!r} ended at {_when(chosen.end)}; use another, or leave resources.reservation out"]
    # (a start the scheduler printed that does not parse is taken as now: the check stays, and
    # says nothing it cannot know)
    begin = max(chosen.start, now) if math.isfinite(chosen.start) else now
    left, wanted = chosen.end - begin, parse_time(res["time"])
    found_problems = []
    if wanted > left:
        found_problems.append(
            f"resources.time {res['time']} is longer than reservation {name!r} has left ({_span(left)}, "
            f"{_when(begin)} to {_when(chosen.end)}); ask for at most {_span(left)}"
        )
    if not may_use(chosen, user, res.get("account")):
        who = ", ".join(chosen.users + [f"account {a}" for a in chosen.accounts])
        you = user + (f" (account {res['account']})" if res.get("account") else "")
        found_problems.append(
            f"reservation {name!r} is for {who}, not {you}; ask its owner to add you, or set resources.account to one "
            "it names"
        )
    return found_problems


def may_use(r: Reservation, user: str, account: str | None) -> bool:
    """SLURM's and PBS's rule: listed (or not excluded) by user, or by the job's account."""
    excluded = {u[1:] for u in r.users if u.startswith("-")}
    included = {u for u in r.users if not u.startswith("-")}
    if user in excluded:
        return False
    if not included and not r.accounts:
        return True
    return user in included or "*" in included or (account is not None and account in r.accounts)


def _when(t: float) -> str:
    if not math.isfinite(t):
        return "a time the scheduler did not say"
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t))


def _span(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "unknown" if seconds != seconds or seconds > 0 else "00:00:00"
    seconds = max(0, int(seconds))
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"

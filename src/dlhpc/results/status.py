"""What is happening to an experiment: the run directory (free to read) joined with what the
scheduler says (one batched query for the whole experiment, and not often).

Watching is gentle on the scheduler: the trial files are re-read every refresh, while the
scheduler is asked at most once per Backoff delay: 5 s at first and after anything changes,
doubling while nothing does, up to 2 minutes (submitit's InfoWatcher backs off the same way).
"""

import time
from pathlib import Path

from dlhpc.results import rows as results
from dlhpc.schedulers.base import Unreachable
from dlhpc.states import BAD, FINISHED, IN_FLIGHT, JobStatus, State


class Backoff:
    MIN_S, MAX_S = 5.0, 120.0

    def __init__(self, clock=time.monotonic):
        self.clock, self.delay, self.next_at = clock, self.MIN_S, float("-inf")

    def due(self) -> bool:
        return self.clock() >= self.next_at

    def asked(self, changed: bool):
        self.delay = self.MIN_S if changed else min(self.delay * 2, self.MAX_S)
        self.next_at = self.clock() + self.delay


def job_ids(record: dict) -> list[str]:
    """The jobs that hold the trials now (a resubmitted trial's earlier jobs are history); only
    ids of the scheduler's shape (Backend.valid_job_id)."""
    from dlhpc.schedulers import backend

    sched = backend(record["scheduler"])
    return sorted({j for j in results.latest_jobs(record).values() if sched.valid_job_id(j)})


def recovery_job(record: dict) -> str | None:
    """The recovery job queued to follow the trials' jobs (resources.retry.automatic), if any."""
    from dlhpc.schedulers import backend

    job = (record.get("recovery") or {}).get("job")
    return str(job) if job and backend(record["scheduler"]).valid_job_id(str(job)) else None


def scheduler_info(exp_dir: Path, only=None, details=True) -> tuple[dict, list]:
    """({job_id: states.JobStatus}, warnings) from one batched query; `only` limits it to some
    job ids; details adds pending jobs' expected start.
    None instead of the dict when the scheduler did not answer at all (schedulers.base.Unreachable)."""
    from dlhpc.schedulers import backend

    record = results.read_record(exp_dir)
    ids = [j for j in job_ids(record) + [recovery_job(record)] if j and (only is None or j in only)]
    if not ids:
        return {}, []
    sched = backend(record["scheduler"])
    info, warnings = sched.states(ids, exp_dir, details)
    if unanswered(warnings):
        return None, warnings  # nothing known of any job (not "missing"): the files' last word stands
    return Answers(info, record), warnings


class Answers(dict):
    """{job_id: JobStatus} from one query, with the record it asked from: rows are made from that
    same record, so a job recorded after the query (a retry the recovery job just queued) is not
    read as missing, nor the recovery job that queued it as gone; the next refresh sees both."""

    def __init__(self, info: dict, record: dict):
        super().__init__(info)
        self.record = record


def unanswered(warnings) -> bool:
    """Whether the scheduler's answer was that it does not answer (schedulers.base.Unreachable)."""
    return any(isinstance(w, Unreachable) for w in warnings or [])


def collect(exp_dir: Path, info: dict | None = None, warnings=None) -> dict:
    """The status report; asks the scheduler unless its answer (`info`) is given."""
    if info is None:
        info, warnings = scheduler_info(exp_dir)
    unreachable = unanswered(warnings)
    record, rows = results.experiment_rows(exp_dir, info)
    recovering = _recovering(record, info)
    trials = []
    for r in rows:
        sched = (info or {}).get(r.get("job_id")) or JobStatus(State.UNKNOWN)  # (not reported)
        pending = r["state"] == "PENDING"
        if unreachable and r["state"] not in FINISHED:
            r["flags"] = "; ".join(f for f in (r.get("flags"), "last known: the scheduler does not answer") if f)
        if recovering and r["state"] in BAD:
            said = f"the recovery job {recovering} decides whether it is retried (resources.retry.automatic)"
            r["flags"] = "; ".join(f for f in (said, r.get("flags")) if f)
        trials.append(
            {
                "trial": r["trial"],
                "job_id": r.get("job_id"),
                "state": r["state"],
                "elapsed": sched.elapsed,
                "epoch": r.get("epochs_done"),
                "epochs": r.get("epochs"),
                "test_acc": r.get("test_acc"),
                "params": {k: r[k] for k in record.get("swept_keys", []) if k in r},
                "flags": r.get("flags") or None,
                "why_pending": (r.get("why_pending") or sched.pending_reason or None) if pending else None,
                "est_start": sched.est_start if pending else None,
                "stalled": r.get("stalled"),  # (which rank, where, for how long: a STALLED trial)
                "requeues": r.get("requeues") or 0,  # (time limit, preemption, a node lost under it)
            }
        )
    any_bad = any(t["state"] in BAD for t in trials)
    return {
        "experiment": str(exp_dir),
        "name": record.get("name"),
        "scheduler": record.get("scheduler"),
        # (the recovery job matters only while a trial failed: one that finds nothing to retry changes nothing)
        "finished": all(t["state"] in FINISHED for t in trials) and not (recovering and any_bad),
        "recovery_job": recovering,
        "scheduler_answers": not unreachable,
        "trials": trials,
        "warnings": warnings or [],
    }


def _recovering(record: dict, info: dict | None) -> str | None:
    """The recovery job, while the scheduler holds it: the experiment is not over until it ran."""
    job = recovery_job(record)
    status = info.get(job) if job and info is not None else None
    return job if status is not None and status.state in IN_FLIGHT else None


def exit_code(report: dict) -> int:
    """1 when a trial failed, was cancelled or timed out; the same with and without --watch."""
    return 1 if any(t["state"] in BAD for t in report["trials"]) else 0


SHOWN_ROWS = 40  # past this, status shows counts and the trials that need attention first
# which trials a user needs to see first: failures, then unknown, running, waiting, finished
ATTENTION = {
    "FAILED": 0, "TIMEOUT": 0, "STALLED": 0, "CANCELLED": 1, "UNKNOWN": 1, "RUNNING": 2, "REQUEUED": 2, "PREEMPTED": 2,
}  # fmt: skip


def state_counts(trials: list) -> dict:
    """{state word: how many trials are in it}, in the order states first appear."""
    counts: dict = {}
    for t in trials:
        counts[str(t["state"])] = counts.get(str(t["state"]), 0) + 1
    return counts


def count_line(trials: list) -> str:
    """'10,000 trials: 9,990 COMPLETED, 10 FAILED' (most common state first)."""
    counts = state_counts(trials)
    parts = ", ".join(f"{n:,} {state}" for state, n in sorted(counts.items(), key=lambda kv: -kv[1]))
    return f"{len(trials):,} trial{'s' if len(trials) != 1 else ''}: {parts}"


def attention_first(trials: list, limit: int = SHOWN_ROWS) -> list:
    """All trials when they fit; else the ones that need attention first, up to `limit`, in the
    experiment's order within each kind."""
    if len(trials) <= limit:
        return trials
    ranked = sorted(range(len(trials)), key=lambda i: (ATTENTION.get(str(trials[i]["state"]), 3), i))
    return [trials[i] for i in ranked[:limit]]


def report_table(report: dict, all_rows: bool = False, watching: bool = False):
    from rich.markup import escape
    from rich.table import Table

    # every cell is the user's or the scheduler's text: escaped, so "[/x]" prints as written
    title = escape(f"{report['name']}  ({report['scheduler']})  {report['experiment']}")
    shown = report["trials"] if all_rows else attention_first(report["trials"])
    left = len(report["trials"]) - len(shown)
    caption = f"{len(shown):,} of {len(report['trials']):,} trials shown: all with --all" if left else None
    if watching and not report.get("scheduler_answers", True):  # (status says it once, after the table)
        caption = "; ".join(c for c in (caption, unreachable_words(report)) if c)
    table = Table(title=f"{title}\n{escape(count_line(report['trials']))}", caption=caption, header_style="bold")
    for col in ("trial", "job", "state", "elapsed", "epoch", "test acc %", "notes"):
        table.add_column(col)
    for t in shown:
        acc = f"{100 * t['test_acc']:.2f}" if isinstance(t.get("test_acc"), (int, float)) else "-"
        cells = (
            t["trial"],
            str(t["job_id"] or "-"),
            t["state"],
            t["elapsed"] or "-",
            f"{t['epoch'] or 0}/{t['epochs'] or '?'}",
            acc,
            _notes(t),
        )
        table.add_row(*(escape(str(c)) for c in cells))
    return table


def _notes(t: dict) -> str:
    if t.get("why_pending"):
        return t["why_pending"] + (f"; expected to start {t['est_start']}" if t.get("est_start") else "")
    return t.get("flags") or ""


def print_report(report: dict, console, all_rows: bool = False) -> None:
    from rich.markup import escape

    for w in report["warnings"]:
        console.print(f"[yellow]warning:[/] {escape(str(w))}")
    console.print(report_table(report, all_rows))


def _file_states(exp_dir: Path, record: dict) -> dict:
    from dlhpc.fsutil import read_json

    return {
        t["id"]: (read_json(exp_dir / t["id"] / "result.json", {}) or {}).get("state") for t in record.get("trials", [])
    }


class Watcher:
    """Refresh from the trial files every `refresh_s`; ask the scheduler when the Backoff says so,
    sooner again whenever a trial or job changed state."""

    DETAILS_EVERY = 4  # pending jobs' expected start is asked for on every 4th poll (it may cost a query)

    def __init__(self, exp_dir: Path, clock=time.monotonic):
        self.exp_dir, self.backoff = exp_dir, Backoff(clock)
        self.info, self.warnings = {}, []
        self._seen, self.polls = None, 0

    def report(self) -> dict:
        record = results.read_record(self.exp_dir)
        files = _file_states(self.exp_dir, record)
        if self.backoff.due():
            self.info, self.warnings = scheduler_info(self.exp_dir, details=self.polls % self.DETAILS_EVERY == 0)
            self.polls += 1
            seen = ({j: status.state for j, status in (self.info or {}).items()}, files)
            self.backoff.asked(changed=self._seen is not None and seen != self._seen)
            self._seen = seen
        elif self._seen is not None and files != self._seen[1]:
            self.backoff.next_at = min(self.backoff.next_at, self.backoff.clock() + Backoff.MIN_S)
        return collect(self.exp_dir, self.info, self.warnings)


def watch(
    exp_dir: Path, refresh_s: float = 2.0, clock=time.monotonic, sleep=time.sleep, console=None, all_rows=False
) -> int:
    from rich.console import Console
    from rich.live import Live
    from rich.markup import escape

    console = console or Console()
    watcher = Watcher(exp_dir, clock)
    report = watcher.report()
    if not console.is_terminal:  # (a pipe or a log file: a line for each change, not a redrawn table)
        return _watch_lines(watcher, report, console, refresh_s, sleep)
    with Live(report_table(report, all_rows, True), console=console, refresh_per_second=2) as live:
        while not report["finished"]:
            sleep(refresh_s)
            report = watcher.report()
            live.update(report_table(report, all_rows, True))
    for w in report["warnings"]:
        console.print("[yellow]warning:[/]", escape(str(w)))
    return exit_code(report)


def _watch_lines(watcher: "Watcher", report: dict, console, refresh_s: float, sleep) -> int:
    """status --watch into a pipe: the counts whenever they change, and once each when the
    scheduler stops answering (the states are then the last known, from the files) and again."""
    from rich.markup import escape

    said, answers = None, True
    while True:
        line = count_line(report["trials"])
        if line != said:
            console.print(escape(f"{time.strftime('%H:%M:%S')} {line}"), soft_wrap=True)
            said = line
        if report["scheduler_answers"] != answers:
            answers = report["scheduler_answers"]
            words = unreachable_words(report) if not answers else "the scheduler answers again"
            console.print(escape(f"{time.strftime('%H:%M:%S')} {words}"), soft_wrap=True)
        if report["finished"]:
            return exit_code(report)
        sleep(refresh_s)
        report = watcher.report()


def unreachable_words(report: dict) -> str:
    said = next((str(w) for w in report["warnings"] if isinstance(w, Unreachable)), "the scheduler does not answer")
    return f"{said} (watching on; asked again with back-off)"


def follow_logs(
    exp_dir: Path, trial: str, write, refresh_s: float = 1.0, clock=time.monotonic, sleep=time.sleep
) -> int:
    """Print the trial's job.out/job.err as they grow, until its job ends. The end is read from
    result.json where the trainer wrote it; the scheduler is asked (backing off) only to learn
    that a job ended without one (killed, out of memory, out of time)."""

    tdir = exp_dir / trial
    files = [tdir / "job.out", tdir / "job.err"]
    offsets = {f: 0 for f in files}
    backoff = Backoff(clock)
    backoff.asked(changed=True)  # the files answer first; the scheduler only after MIN_S
    answers = True
    job_id = results.latest_jobs(results.read_record(exp_dir)).get(trial)
    while True:
        for f in files:
            if f.exists():
                with open(f, errors="replace") as fh:
                    fh.seek(offsets[f])
                    chunk = fh.read()
                    offsets[f] = fh.tell()
                if chunk:
                    write(chunk)
        state = (results.read_result(tdir) or {}).get("state")
        if state in FINISHED:
            return 1 if state in BAD else 0
        if job_id and backoff.due():
            info, warnings = scheduler_info(exp_dir, only={job_id}, details=False)
            sched_state = (info or {}).get(job_id, JobStatus(State.UNKNOWN)).state
            backoff.asked(changed=False)
            if sched_state in FINISHED:
                return 1 if sched_state in BAD else 0
            if unanswered(warnings) == answers:  # said once each way, between the lines of the logs
                answers = not answers
                said = next((str(w) for w in warnings if isinstance(w, Unreachable)), "")
                write(f"dlhpc: {said}; following the files on\n" if said else "dlhpc: the scheduler answers again\n")
        sleep(refresh_s)


def efficiency_info(exp_dir: Path) -> dict:
    """What accounting says each job used (one query): see Backend.efficiency."""
    from dlhpc.schedulers import backend

    record = results.read_record(exp_dir)
    ids = job_ids(record)
    return backend(record["scheduler"]).efficiency(ids, exp_dir) if ids else {}


def live_jobs(exp_dir: Path) -> list[str]:
    """Job ids of an experiment that the scheduler still holds (one query)."""
    from dlhpc.states import IN_FLIGHT

    info, _ = scheduler_info(exp_dir, details=False)
    return [j for j, status in (info or {}).items() if status.state in IN_FLIGHT]


def cancel(exp_dir: Path) -> list:
    from dlhpc.ownership import require_own
    from dlhpc.schedulers import backend

    require_own(exp_dir, "cancel its jobs")
    record = results.read_record(exp_dir)
    # the recovery job first: the trials' jobs ending by the cancel must not set it off
    return backend(record["scheduler"]).cancel([j for j in (recovery_job(record), *job_ids(record)) if j], exp_dir)

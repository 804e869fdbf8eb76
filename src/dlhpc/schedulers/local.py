"""The local backend: the rendered job scripts run on this machine, one trial after another.

`dlhpc submit` with scheduler local starts a detached runner (`python -m dlhpc.schedulers.local
EXP_DIR`) and returns; `dlhpc run` runs the same loop in the foreground. Either way each trial
is `bash job-N.sh` with DLHPC_ARRAY_INDEX choosing its trial: exactly the script `dlhpc render`
prints, env.vars and env.setup included. With no scheduler to ask, the runner keeps each job's
state in EXP_DIR/logs/local-jobs.json, and states() reads it.

Job ids have the scheduler's shape: `local-<runner pid>.<script>` for a script of one trial,
`..._<index>` for each trial of an array script.
"""

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import dlhpc.processes as processes
from dlhpc.errors import CommandError, UserError
from dlhpc.fsutil import atomic_write_json, current_umask, private_mode, read_json, read_trial_spec
from dlhpc.schedulers.base import Backend, Check
from dlhpc.shell import run_command
from dlhpc.spec.load import tasks_per_node
from dlhpc.spec.schema import format_time
from dlhpc.states import JobStatus, State

JOBS_FILE = Path("logs") / "local-jobs.json"
FINAL = {"COMPLETED", "FAILED", "CANCELLED"}


class Cancelled(Exception):
    """SIGTERM reached the runner (`dlhpc cancel`)."""


def plan_jobs(plan, runner_pid: int) -> list[dict]:
    """The job entries of experiment.json for a plan run by this runner."""
    jobs = []
    for i, script in enumerate(plan.scripts):
        base = f"local-{runner_pid}.{plan.first_script + i}"
        for k, tid in enumerate(script.trial_ids):
            job_id = f"{base}_{k}" if len(script.trial_ids) > 1 else base
            jobs.append({"job_id": job_id, "trial": tid, "script": plan.script_name(i)})
    return jobs


def array_index(job_id: str) -> int:
    return int(job_id.rsplit("_", 1)[1]) if "_" in job_id else 0


class Runner:
    """Runs an experiment's jobs in order; on_epoch(trial, metrics) as epochs finish."""

    def __init__(self, exp_dir: Path, jobs: list, on_epoch=None, on_trial_end=None, poll_s: float = 0.25):
        self.exp_dir, self.jobs, self.poll_s = Path(exp_dir), jobs, poll_s
        self.on_epoch, self.on_trial_end = on_epoch, on_trial_end
        # a resubmission's runner keeps what earlier runners of the experiment recorded
        earlier = read_json(self.exp_dir / JOBS_FILE, {}) or {}
        self.book = {"runner_pid": os.getpid(), "runner": processes.identity(), "jobs": earlier.get("jobs", {})}

    def _write(self):
        atomic_write_json(self.exp_dir / JOBS_FILE, self.book, mode=private_mode())

    def _set(self, job_id, **fields):
        self.book["jobs"].setdefault(job_id, {}).update(fields)
        self._write()

    def run(self) -> dict:
        """{trial id: exit code}; a cancelled runner marks what is left CANCELLED and raises."""
        previous = signal.signal(signal.SIGTERM, _raise_cancelled)
        # nothing the runner writes in the experiment (logs, records) may be writable by others
        previous_umask = os.umask(current_umask() | 0o022)
        codes = {}
        try:
            self._write()
            for job in self.jobs:
                codes[job["trial"]] = self._run_job(job)
        except (Cancelled, KeyboardInterrupt):
            for job in self.jobs:
                if self.book["jobs"].get(job["job_id"], {}).get("state") not in FINAL:
                    self._set(job["job_id"], state="CANCELLED", end=_now())
            raise
        finally:
            signal.signal(signal.SIGTERM, previous)
            os.umask(previous_umask)
        return codes

    def _run_job(self, job) -> int:
        job_id, trial_dir = job["job_id"], self.exp_dir / job["trial"]
        resources = _resources(trial_dir)
        self._set(job_id, state="RUNNING", start=_now(), **resources)
        limit_s = _time_limit_s(trial_dir)
        env = dict(os.environ, DLHPC_JOB_ID=job_id, DLHPC_ARRAY_INDEX=str(array_index(job_id)))
        # The script sends the trial's output to its job.out/job.err; this log holds what bash says
        # before that (a script that does not even start).
        with open(self.exp_dir / "logs" / f"{job_id}.log", "ab") as log:
            proc = subprocess.Popen(
                ["bash", str(self.exp_dir / job["script"])],
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )
            try:
                code = self._follow(proc, trial_dir, job["trial"], limit_s)
            except BaseException:
                _stop(proc)
                raise
        if code is None:  # its walltime ran out, as a scheduler would end it
            reason = f"reached its time limit (resources.time, {limit_s} s) on this machine"
            state, extra = "TIMEOUT", {"reason": reason}
        else:
            state, extra = ("COMPLETED" if code == 0 else "FAILED"), {"exit_code": code}
        self._set(job_id, state=state, end=_now(), **extra)
        if self.on_trial_end:
            self.on_trial_end(job["trial"], state)
        return code

    def _follow(self, proc, trial_dir: Path, trial: str, limit_s: int | None = None) -> int | None:
        """The job's exit code; None when it ran past its time limit and was stopped."""
        seen, deadline = 0, time.monotonic() + limit_s if limit_s else None
        while True:
            code = proc.poll()
            seen = _report_new_epochs(trial_dir, seen, lambda m: self.on_epoch and self.on_epoch(trial, m))
            if code is not None:
                return code
            if deadline is not None and time.monotonic() > deadline:
                _stop(proc)
                return None
            time.sleep(self.poll_s)


def _raise_cancelled(signum, frame):
    raise Cancelled()


def _stop(proc):
    """Stop a job's whole process group (bash, python and its DDP ranks)."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass


def _report_new_epochs(trial_dir: Path, seen: int, on_epoch) -> int:
    try:
        lines = (trial_dir / "metrics.jsonl").read_text().splitlines()
    except FileNotFoundError:
        return seen
    for line in lines[seen:]:
        try:
            metrics = json.loads(line)
        except json.JSONDecodeError:
            return seen  # a line being written: read it next time
        on_epoch(metrics)
        seen += 1
    return seen


def _resources(trial_dir: Path) -> dict:
    """What the trial holds while it runs, for the accounting: CPUs and GPUs of all its ranks."""
    try:
        res = read_trial_spec(trial_dir / "spec.yaml")["resources"]
        ranks = res["nodes"] * tasks_per_node(res)
        return {"cpus": ranks * res["cpus_per_task"], "gpus": res["nodes"] * res["gpus_per_node"]}
    except (OSError, KeyError, TypeError, UserError):
        return {}


def _time_limit_s(trial_dir: Path) -> int | None:
    from dlhpc.spec.schema import parse_time

    try:
        return parse_time(read_trial_spec(trial_dir / "spec.yaml")["resources"]["time"])
    except (OSError, KeyError, TypeError, UserError):
        return None


def _now() -> str:
    return datetime.now().astimezone().isoformat(timespec="seconds")


class LocalBackend(Backend):
    name = "local"
    job_id_expr = "${DLHPC_JOB_ID:-local}"
    job_id_pattern = r"local-\d+\.\d+(_\d+)?"
    array_index_expr = "${DLHPC_ARRAY_INDEX:-0}"

    def release_command(self, job_id: str) -> str:
        return "nothing to release: the local runner holds no job"

    runs_here = True
    submitted_note = "no scheduler: the trials run one after another in the background on this machine"

    def check(self) -> None:
        return None  # this machine can always run its own scripts

    RANKS_PER_CORE = 4  # oversubscribed CPU ranks beyond this only slow each other down

    def preflight(self, plan) -> list[str]:
        """Every rank of a local trial runs on this machine: no more than it can hold."""
        from dlhpc.submission.guard import inside_allocation

        if inside_allocation():
            return []  # the ranks go to the allocation's nodes (dlhpc run checks their number)
        cores = os.cpu_count() or 1
        most = cores * self.RANKS_PER_CORE
        problems = []
        for trial in plan.trials:
            res = trial.data["resources"]
            ranks = res["nodes"] * tasks_per_node(res)
            if ranks > most:
                problems.append(
                    f"trial {trial.id} asks for {ranks:,} ranks (nodes x tasks_per_node) on this machine, which has "
                    f"{cores} cores: at most {most}. Fix: fewer resources.nodes or tasks_per_node, or submit it to "
                    "a cluster"
                )
                break
        return problems

    def test_only(self, script_text: str, workdir: Path) -> str:
        run_command(["bash", "-n"], input=script_text, timeout=30)
        return "bash -n: the script parses; it would run on this machine"

    def submit(self, plan, queued: list) -> list[dict]:
        """Start the detached runner; it works through the jobs after this command returns."""
        log_fd = os.open(
            plan.exp_dir / "logs" / "local-runner.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, private_mode()
        )
        log = os.fdopen(log_fd, "ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "dlhpc.schedulers.local", str(plan.exp_dir)],
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        jobs = plan_jobs(plan, proc.pid)
        queued.extend(jobs)
        # who the runner is (PID, start time, owner), before this command returns: status and
        # cancel trust no other PID (processes.py)
        book = read_json(plan.exp_dir / JOBS_FILE, {}) or {}
        book.update(runner_pid=proc.pid, runner=processes.identity(proc.pid))
        book.setdefault("jobs", {})
        atomic_write_json(plan.exp_dir / JOBS_FILE, book, mode=private_mode())
        # the runner reads its jobs from here; until then it waits (see main)
        atomic_write_json(plan.exp_dir / "logs" / "local-queue.json", jobs, mode=private_mode())
        return jobs

    def states(self, job_ids, exp_dir, details=False) -> tuple[dict, list]:
        book = read_json(Path(exp_dir) / JOBS_FILE, {}) or {}
        alive = processes.is_running(book.get("runner"))
        out = {}
        for job_id in job_ids:
            entry = (book.get("jobs") or {}).get(job_id)
            if entry is None:
                # never started: waiting for a live runner, or never to start (its runner is gone)
                out[job_id] = (
                    JobStatus(State.PENDING)
                    if alive
                    else JobStatus(State.FAILED, reason="the local runner stopped before the trial started")
                )
            else:
                out[job_id] = _job_status(entry, alive)
        return out, []

    def cancel(self, job_ids, exp_dir) -> list[str]:
        book = read_json(Path(exp_dir) / JOBS_FILE, {}) or {}
        unfinished = [j for j in job_ids if (book.get("jobs") or {}).get(j, {}).get("state") not in FINAL]
        runner = book.get("runner")
        # Only the runner this experiment recorded, verified still to be it (processes.py); it
        # stops its job's process group and marks what is left CANCELLED.
        if not unfinished or not processes.signal_if_running(runner, signal.SIGTERM):
            return []
        deadline = time.monotonic() + 15
        while processes.is_running(runner) and time.monotonic() < deadline:
            time.sleep(0.1)
        if not processes.is_running(runner):  # a runner stopped before it could mark its jobs
            book = read_json(Path(exp_dir) / JOBS_FILE, {}) or {}
            for job_id in unfinished:
                entry = book.setdefault("jobs", {}).setdefault(job_id, {})
                if entry.get("state") not in FINAL:
                    entry.update(state="CANCELLED", end=_now())
            atomic_write_json(Path(exp_dir) / JOBS_FILE, book, mode=private_mode())
        return unfinished

    def doctor_checks(self, spec) -> list[Check]:
        if not spec.data["env"]["modules"]:
            return []
        has_module = bool(os.environ.get("MODULESHOME") or os.environ.get("LMOD_CMD"))
        return [
            Check(
                "module command",
                True if has_module else None,
                "present" if has_module else "not found here: env.modules will be skipped, with a note in job.err",
                "",
            )
        ]

    def job_check(self, spec) -> list[Check]:
        from dlhpc.schedulers.slurm.doctor import NODE_SOFTWARE

        try:
            out = run_command([sys.executable, "-c", NODE_SOFTWARE], timeout=300).stdout.strip()
            return [Check("this machine's software", True, out)]
        except CommandError as exc:
            return [Check("this machine's software", False, str(exc).splitlines()[0], "pip install torch torchvision")]


def _iso(value):
    try:
        return datetime.fromisoformat(value) if value else None
    except ValueError:
        return None


def main(argv=None):
    """`python -m dlhpc.schedulers.local EXP_DIR`: the detached runner behind a local submit."""
    exp_dir = Path((argv or sys.argv[1:])[0])
    queue = exp_dir / "logs" / "local-queue.json"
    deadline = time.monotonic() + 30
    while not queue.is_file():  # the submitting command writes it right after starting us
        if time.monotonic() > deadline:
            raise SystemExit(f"{queue} did not appear: nothing to run")
        time.sleep(0.05)
    try:
        Runner(exp_dir, read_json(queue, [])).run()
    except Cancelled:
        return 143
    write_report_if_asked(exp_dir)
    return 0


def write_report_if_asked(exp_dir: Path) -> None:
    """resources.report: the summary files, once every trial has run (what a batch scheduler's
    afterany report job does)."""
    record = read_json(exp_dir / "experiment.json", {}) or {}
    if (record.get("spec") or {}).get("resources", {}).get("report"):
        from dlhpc.results import summaryfiles

        summaryfiles.save(exp_dir)


def _job_status(entry: dict, alive: bool) -> JobStatus:
    """One job of the runner's book as a JobStatus: the CPUs and GPUs it held x its elapsed time."""
    state, reason = entry.get("state"), entry.get("reason") or ""
    if state == "RUNNING" and not alive:
        state, reason = "FAILED", "the local runner stopped while the trial ran"
    if entry.get("exit_code") and not reason:
        reason = f"the job script exited with code {entry['exit_code']}"
    status = JobStatus(state, reason=reason, start=entry.get("start"), end=entry.get("end"))
    start = _iso(entry.get("start"))
    end = _iso(entry.get("end")) or (datetime.now().astimezone() if alive else None)
    if start and end:
        status.elapsed_s = max(0, int((end - start).total_seconds()))
        status.elapsed = format_time(status.elapsed_s)
        if entry.get("cpus") is not None:
            status.core_hours = entry["cpus"] * status.elapsed_s / 3600
            status.gpu_hours = (entry.get("gpus") or 0) * status.elapsed_s / 3600
    return status


if __name__ == "__main__":
    sys.exit(main())

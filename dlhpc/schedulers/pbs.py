"""PBS (OpenPBS / PBS Pro and Torque): a submitit plugin (executor + job environment) and the
same verbs as slurm.py — submit, states, cancel, preflight.

Registered in setup.cfg under the `submitit` entry-point group, so `submitit.AutoExecutor`
and submitit's `_submit` on the node both know the "pbs" cluster.

Job ids: dlhpc records `<base>` for a single job and `<base>_<index>` for array elements, the
same shape as SLURM's; pbs_launch computes the same id inside the job, so submitit finds each
element's pickle.
"""

import json
import os
import re
import shlex
import shutil
import sys
from pathlib import Path

from submitit.core import core, job_environment

from dlhpc.schedulers.submission import RenderedScriptMixin, submit_plan

from dlhpc.errors import CommandError, DlhpcError, UserError
from dlhpc.schema import parse_time
from dlhpc.shell import run_command

# OpenPBS / Torque one-letter states → SLURM's words.
STATES = {
    "Q": "PENDING", "H": "PENDING", "W": "PENDING", "T": "PENDING", "U": "PENDING", "M": "UNKNOWN",
    "R": "RUNNING", "E": "RUNNING", "B": "RUNNING", "S": "RUNNING",
    "C": "COMPLETED", "X": "COMPLETED", "F": "COMPLETED",
}


def map_state(letter: str, exit_status=None) -> str:
    state = STATES.get((letter or "").strip().upper()[:1], "UNKNOWN")
    if state == "COMPLETED" and exit_status not in (None, "", 0, "0"):
        try:
            code = int(exit_status)
        except (TypeError, ValueError):
            return "UNKNOWN"
        # PBS: 271 = killed by qdel (SIGTERM + 256); negative = never ran; other non-zero = failed
        return "CANCELLED" if code in (271, 265) else "FAILED"
    return state


_JOB_ID = re.compile(r"^\s*(\d+)(\[\])?(\.[^\s]+)?\s*$", re.MULTILINE)


def parse_job_id(output: str) -> str:
    """qsub prints '123.server' (OpenPBS/Torque), '123[].server' for arrays, or '123' (wrappers)."""
    m = _JOB_ID.search(output or "")
    if not m:
        raise DlhpcError(f"qsub printed something dlhpc cannot read (expected a job id like 123.server):\n"
                         f"{(output or '').strip()}")
    return m.group(1)


class PBSJobEnvironment(job_environment.JobEnvironment):
    """Rank and job identity inside a PBS job, as pbs_launch sets them for each rank."""

    _env = {
        "job_id": "DLHPC_PBS_JOB_ID",
        "num_tasks": "DLHPC_PBS_NUM_TASKS",
        "num_nodes": "DLHPC_PBS_NUM_NODES",
        "node": "DLHPC_PBS_NODE_RANK",
        "global_rank": "DLHPC_PBS_RANK",
        "local_rank": "DLHPC_PBS_LOCAL_RANK",
    }

    @property
    def hostnames(self):
        return [h for h in os.environ.get("DLHPC_PBS_NODELIST", "").split(",") if h] or [self.hostname]

    def _requeue(self, countdown: int) -> None:
        run_command(["qrerun", os.environ.get("PBS_JOBID", self.raw_job_id)], timeout=60)


class PBSInfoWatcher(core.InfoWatcher):
    def _make_command(self):
        return None  # dlhpc asks qstat itself, once per experiment (states() below)

    def get_state(self, job_id: str, mode: str = "standard") -> str:
        return "UNKNOWN"


class PBSJob(core.Job):
    _cancel_command = "qdel"
    watcher = PBSInfoWatcher(delay_s=600)


class PBSExecutor(RenderedScriptMixin, core.PicklingExecutor):
    """Submits pickled callables with qsub. The script text comes from dlhpc's template."""

    job_class = PBSJob

    def __init__(self, folder, script_text: str = "", submit_cwd=None, max_num_timeout: int = 3,
                 timeout_min: int = 60):
        super().__init__(folder, max_num_timeout=max_num_timeout)
        self._use_script(script_text, submit_cwd, timeout_min)
        self.parameters["timeout_min"] = timeout_min  # submitit's single-job path reads it here
        self.python = shlex.quote(sys.executable)

    @classmethod
    def _valid_parameters(cls):
        return {"timeout_min"}

    @property
    def _submitit_command_str(self) -> str:
        return " ".join([self.python, "-u -m submitit.core._submit", shlex.quote(str(self.folder))])

    def _num_tasks(self) -> int:
        return 1

    def _make_submission_command(self, submission_file_path):
        return ["qsub", str(submission_file_path)]

    @staticmethod
    def _get_job_id_from_submission_command(string) -> str:
        return parse_job_id(string.decode() if isinstance(string, bytes) else string)

    @classmethod
    def affinity(cls) -> int:
        return -1 if shutil.which("qsub") is None else 1


# ---- the dlhpc verbs --------------------------------------------------------------------------

def available() -> bool:
    return shutil.which("qsub") is not None


def check_submit_allowed(plan):
    if not available():
        raise UserError("qsub not found: this machine is not a PBS login node. Use `dlhpc run SPEC` to run "
                        "here, or --scheduler slurm on a SLURM cluster")


def preflight(plan) -> list[str]:
    """Queue names and walltime limits from `qstat -Q -f` when the server offers them."""
    try:
        out = run_command(["qstat", "-Q", "-f"], timeout=20, check=False).stdout
    except CommandError:
        return []
    queues, current = {}, None
    for line in out.splitlines():
        m = re.match(r"^Queue:\s*(\S+)", line)
        if m:
            current = queues.setdefault(m.group(1), {})
        elif current is not None and "resources_max.walltime" in line:
            current["max_walltime"] = line.split("=", 1)[1].strip()
    if not queues:
        return []  # a server (or wrapper) that does not list queues: let qsub decide
    problems = []
    for trial in plan.trials:
        res = trial.data["resources"]
        q = res["partition"]
        if q and q not in queues:
            problems.append(f"queue {q!r} does not exist (queues: {', '.join(sorted(queues))}); set resources.partition")
        elif q and queues[q].get("max_walltime"):
            if parse_time(res["time"]) > parse_time(queues[q]["max_walltime"]):
                problems.append(f"resources.time {res['time']} exceeds queue {q!r}'s limit {queues[q]['max_walltime']}")
    return sorted(set(problems))


def test_only(script_text: str, workdir: Path) -> str:
    # qsub has no --test-only; preflight() already checked the queue and its walltime limit
    return "rendered; PBS has no test-only submission, queue and walltime were checked with qstat -Q"


def submit(plan, queued: list | None = None) -> list[dict]:
    return submit_plan(plan, PBSExecutor, queued)


def _qstat_ids(job_ids):
    bases = sorted({j.split("_")[0] for j in job_ids})
    arrays = {j.split("_")[0] for j in job_ids if "_" in j}
    return [b + "[]" if b in arrays else b for b in bases]


def states(job_ids) -> tuple[dict, list]:
    """OpenPBS: `qstat -x -f -F json` (finished jobs too). Torque and wrappers: plain `qstat`."""
    warnings, out = [], {}
    ids = _qstat_ids(job_ids)
    try:
        proc = run_command(["qstat", "-x", "-f", "-F", "json", *ids], timeout=30, check=False)
        data = json.loads(proc.stdout) if proc.stdout.strip().startswith("{") else None
    except (CommandError, json.JSONDecodeError):
        data = None
    if data is not None:
        for full_id, job in (data.get("Jobs") or {}).items():
            m = re.match(r"(\d+)(?:\[(\d+)\])?", full_id)
            if not m:
                continue
            jid = m.group(1) + (f"_{m.group(2)}" if m.group(2) else "")
            out[jid] = {"state": map_state(job.get("job_state"), job.get("Exit_status")),
                        "raw_state": job.get("job_state"),
                        "elapsed": (job.get("resources_used") or {}).get("walltime"),
                        "alloc_tres": _pbs_tres(job)}
        return out, warnings
    try:
        proc = run_command(["qstat", *ids], timeout=30, check=False)
    except CommandError as exc:
        return {}, [f"qstat failed: {str(exc).splitlines()[0]}"]
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 6 and re.match(r"\d", parts[0]):
            m = re.match(r"(\d+)(?:\[(\d+)\]|[_-](\d+))?", parts[0])
            index = m.group(2) or m.group(3)
            jid = m.group(1) + (f"_{index}" if index else "")
            out[jid] = {"state": map_state(parts[4]), "raw_state": parts[4], "elapsed": parts[3]}
    return out, warnings


def _pbs_tres(job: dict) -> str:
    used = job.get("Resource_List") or {}
    return f"cpu={used.get('ncpus', 0)},gres/gpu={used.get('ngpus', 0)}"


def cancel(job_ids) -> list[str]:
    ids = _qstat_ids(job_ids)
    if ids:
        run_command(["qdel", *ids], timeout=60, check=False)
    return [i.replace("[]", "") for i in ids]

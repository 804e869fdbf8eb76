"""SLURM: submit through submitit with our rendered script, states from one batched sacct call.

submitit's SlurmExecutor renders its own sbatch text, and for job arrays builds a fresh
SlurmExecutor inside _internal_process_submissions, so overriding _make_submission_file_text alone
would give arrays submitit's built-in script. DlhpcSlurmExecutor overrides both paths.
"""

import re
import shutil
import uuid
from functools import lru_cache
from pathlib import Path

from dlhpc.errors import CommandError, DlhpcError, UserError
from dlhpc.schema import parse_time
from dlhpc.shell import run_command

# Every state sacct/squeue can print (slurm 22.05+), in SLURM's words; unknown → UNKNOWN.
STATES = {
    "PENDING": "PENDING", "PD": "PENDING", "CONFIGURING": "PENDING", "CF": "PENDING",
    "REQUEUE_HOLD": "PENDING", "REQUEUE_FED": "PENDING", "RESV_DEL_HOLD": "PENDING",
    "RUNNING": "RUNNING", "R": "RUNNING", "COMPLETING": "RUNNING", "CG": "RUNNING",
    "SIGNALING": "RUNNING", "STAGE_OUT": "RUNNING", "SO": "RUNNING", "STOPPED": "RUNNING", "ST": "RUNNING",
    "SUSPENDED": "RUNNING", "S": "RUNNING", "RESIZING": "RUNNING", "UPDATE_DB": "RUNNING",
    "COMPLETED": "COMPLETED", "CD": "COMPLETED",
    "FAILED": "FAILED", "F": "FAILED", "BOOT_FAIL": "FAILED", "BF": "FAILED", "NODE_FAIL": "FAILED",
    "NF": "FAILED", "OUT_OF_MEMORY": "FAILED", "OOM": "FAILED", "DEADLINE": "FAILED", "DL": "FAILED",
    "SPECIAL_EXIT": "FAILED", "SE": "FAILED", "REVOKED": "CANCELLED", "RV": "CANCELLED",
    "CANCELLED": "CANCELLED", "CA": "CANCELLED",
    "TIMEOUT": "TIMEOUT", "TO": "TIMEOUT",
    "PREEMPTED": "PREEMPTED", "PR": "PREEMPTED",
    "REQUEUED": "REQUEUED", "RQ": "REQUEUED",
}


def map_state(raw: str) -> str:
    word = (raw or "").strip().split(" ")[0].rstrip("+").upper()
    return STATES.get(word, "UNKNOWN")


def available() -> bool:
    return shutil.which("sbatch") is not None


@lru_cache(maxsize=1)
def config() -> dict:
    """`scontrol show config` as a dict; {} when SLURM is not reachable."""
    if shutil.which("scontrol") is None:
        return {}
    try:
        out = run_command(["scontrol", "show", "config"], timeout=20).stdout
    except CommandError:
        return {}
    conf = {}
    for line in out.splitlines():
        if "=" in line:
            key, value = line.split("=", 1)
            conf[key.strip()] = value.strip()
    return conf


def max_array_size() -> int | None:
    value = config().get("MaxArraySize")
    return int(value) if value and value.isdigit() else None


def partitions() -> dict:
    """{name: {"max_time_s": int|None, "default": bool, "state": str}} from `scontrol show partition -o`."""
    out = run_command(["scontrol", "show", "partition", "-o"], timeout=20).stdout
    parts = {}
    for line in out.splitlines():
        fields = dict(item.split("=", 1) for item in line.split() if "=" in item)
        name = fields.get("PartitionName")
        if not name:
            continue
        max_time = fields.get("MaxTime", "UNLIMITED")
        parts[name] = {"max_time_s": None if max_time in ("UNLIMITED", "INFINITE") else parse_time(max_time),
                       "default": fields.get("Default") == "YES", "state": fields.get("State", "UP"),
                       "max_time": max_time}
    return parts


def preflight(plan) -> list[str]:
    """Refuse what SLURM would refuse later: unknown partition, walltime above its limit."""
    problems, parts = [], partitions()
    for script in plan.scripts:
        res = _data_of(plan, script)["resources"]
        wanted = res["partition"].split(",") if res["partition"] else [n for n, p in parts.items() if p["default"]]
        for name in wanted:
            if name not in parts:
                problems.append(f"partition {name!r} does not exist on this cluster (partitions: "
                                f"{', '.join(sorted(parts)) or 'none'}); set resources.partition")
                continue
            limit = parts[name]["max_time_s"]
            if limit is not None and parse_time(res["time"]) > limit:
                problems.append(f"resources.time {res['time']} exceeds the limit of partition {name!r} "
                                f"({parts[name]['max_time']}); ask for less time")
    return sorted(set(problems))


def _data_of(plan, script):
    first = script.trial_ids[0]
    return next(t.data for t in plan.trials if t.id == first)


def test_only(script_text: str, workdir: Path) -> str:
    """`sbatch --test-only`: SLURM checks partition, account, QOS and limits, queues nothing."""
    path = workdir / f".test-only-{uuid.uuid4().hex}.sh"
    path.write_text(script_text)
    try:
        proc = run_command(["sbatch", "--test-only", str(path)], timeout=30, cwd=workdir, check=False)
    finally:
        path.unlink(missing_ok=True)
    text = (proc.stdout + proc.stderr).strip()
    if proc.returncode != 0:
        raise CommandError(["sbatch", "--test-only", "<script>"], proc.returncode, proc.stdout, proc.stderr,
                           note="SLURM would refuse this job")
    return text


_JOB_ID = re.compile(r"Submitted batch job (\d+)")


def parse_job_id(output: str) -> str:
    m = _JOB_ID.search(output or "")
    if not m:
        raise DlhpcError(f"sbatch printed something dlhpc cannot read (no 'Submitted batch job N'):\n{output.strip()}")
    return m.group(1)


def _executor_class():
    import submitit
    from submitit.core import utils as submitit_utils

    class DlhpcSlurmExecutor(submitit.SlurmExecutor):
        """submitit's executor, but every script (single or array) is our rendered template."""

        def __init__(self, folder, script_text, submit_cwd, python, max_num_timeout, timeout_min):
            super().__init__(folder, max_num_timeout=max_num_timeout, python=python)
            self._script_text, self._submit_cwd = script_text, submit_cwd
            self._throttling = 0.0  # we submit a handful of arrays, not thousands of single jobs
            self.parameters["time"] = timeout_min

        def _make_submission_file_text(self, command, uid):
            if command != self._submitit_command_str:
                raise RuntimeError("submitit asked for an unexpected command: " + command)
            return self._script_text

        def _internal_process_submissions(self, delayed_submissions):
            if len(delayed_submissions) == 1:
                return super()._internal_process_submissions(delayed_submissions)
            # submitit's array path with `self` instead of a fresh SlurmExecutor, so the array
            # script is ours too.
            folder = submitit_utils.JobPaths.get_first_id_independent_folder(self.folder)
            folder.mkdir(parents=True, exist_ok=True)
            pickle_paths = []
            for delayed in delayed_submissions:
                pickle_path = folder / f"{uuid.uuid4().hex}.pkl"
                delayed.set_timeout(self.parameters["time"], self.max_num_timeout)
                delayed.dump(pickle_path)
                pickle_paths.append(pickle_path)
            first_job = self._submit_command(self._submitit_command_str)
            jobs = [submitit.SlurmJob(folder=self.folder, job_id=f"{first_job.job_id}_{a}", tasks=[0])
                    for a in range(len(delayed_submissions))]
            for job, pickle_path in zip(jobs, pickle_paths):
                job.paths.move_temporary_file(pickle_path, "submitted_pickle")
            return jobs

        def _submit_command(self, command):
            # submitit's version, but through our shell helper: errors carry command + output.
            uid = uuid.uuid4().hex
            path = submitit_utils.JobPaths.get_first_id_independent_folder(self.folder) / f".submission_file_{uid}.sh"
            path.write_text(self._make_submission_file_text(command, uid))
            proc = run_command(["sbatch", str(path)], timeout=60, cwd=self._submit_cwd)
            job_id = parse_job_id(proc.stdout)
            job = self.job_class(folder=self.folder, job_id=job_id, tasks=[0])
            job.paths.move_temporary_file(path, "submission_file", keep_as_symlink=True)
            return job

    return DlhpcSlurmExecutor


def submit(plan) -> list[dict]:
    """Queue every script of a materialised plan; return [{job_id, trials, script}]."""
    from dlhpc.experiment import SUBMITIT_DIR
    from dlhpc.train.job import TrainJob

    executor_class = _executor_class()
    jobs = []
    for i, script in enumerate(plan.scripts):
        data = _data_of(plan, script)
        res = data["resources"]
        executor = executor_class(plan.exp_dir / SUBMITIT_DIR, script.text, plan.exp_dir / "logs", None,
                                  res["timeout_requeues"], max(1, parse_time(res["time"]) // 60))
        payloads = [TrainJob(plan.exp_dir / tid) for tid in script.trial_ids]
        if len(payloads) == 1:
            submitted = [executor.submit(payloads[0])]
        else:
            with executor.batch():
                submitted = [executor.submit(p) for p in payloads]
        for tid, job in zip(script.trial_ids, submitted):
            jobs.append({"job_id": job.job_id, "trial": tid, "script": f"job-{i}.sh"})
    return jobs


# ---- state ----------------------------------------------------------------------------------

def _expand_array_row(job_id: str) -> list[str]:
    """'123_[0-3%2]' / '123_[1,4]' → ['123_0', ...]; other ids unchanged."""
    m = re.fullmatch(r"(\d+)_\[([0-9,\-]+)(?:%\d+)?\]", job_id)
    if not m:
        return [job_id]
    out = []
    for part in m.group(2).split(","):
        lo, _, hi = part.partition("-")
        out += [f"{m.group(1)}_{i}" for i in range(int(lo), int(hi or lo) + 1)]
    return out


SACCT_FIELDS = ("JobID", "State", "Elapsed", "Submit", "Start", "End", "AllocTRES", "NodeList", "ExitCode")


def sacct_rows(job_ids, timeout=30) -> dict:
    """One batched sacct call → {job_id: {field: value}} for allocations (not steps)."""
    bases = sorted({j.split("_")[0] for j in job_ids})
    if not bases:
        return {}
    proc = run_command(["sacct", "-X", "-n", "-P", "-j", ",".join(bases), "-o", ",".join(SACCT_FIELDS)],
                       timeout=timeout)
    rows = {}
    for line in proc.stdout.splitlines():
        values = line.split("|")
        if len(values) != len(SACCT_FIELDS):
            continue
        row = dict(zip(SACCT_FIELDS, values))
        for jid in _expand_array_row(row["JobID"]):
            rows[jid] = row  # later rows (after a requeue) replace earlier ones
    return rows


def squeue_rows(job_ids, timeout=30) -> dict:
    bases = sorted({j.split("_")[0] for j in job_ids})
    proc = run_command(["squeue", "-h", "-j", ",".join(bases), "-o", "%i|%T|%M|%N", "--states=all"], timeout=timeout)
    rows = {}
    for line in proc.stdout.splitlines():
        parts = line.split("|")
        if len(parts) == 4:
            for jid in _expand_array_row(parts[0]):
                rows[jid] = {"JobID": jid, "State": parts[1], "Elapsed": parts[2], "NodeList": parts[3]}
    return rows


def states(job_ids) -> tuple[dict, list]:
    """({job_id: {"state", "elapsed", ...}}, warnings). sacct first; squeue when sacct fails."""
    warnings, rows = [], {}
    try:
        rows = sacct_rows(job_ids)
    except (CommandError, OSError) as exc:
        warnings.append(f"sacct failed, using squeue (finished jobs may show as UNKNOWN): {str(exc).splitlines()[0]}")
    missing = [j for j in job_ids if j not in rows]
    if missing:
        try:
            for jid, row in squeue_rows(missing).items():
                rows.setdefault(jid, row)
        except (CommandError, OSError) as exc:
            warnings.append(f"squeue failed too: {str(exc).splitlines()[0]}")
    out = {}
    for jid in job_ids:
        row = rows.get(jid)
        if row is None:
            continue
        out[jid] = {"state": map_state(row.get("State", "")), "raw_state": row.get("State", ""),
                    "elapsed": row.get("Elapsed"), "submit": row.get("Submit"), "start": row.get("Start"),
                    "end": row.get("End"), "alloc_tres": row.get("AllocTRES"), "nodes": row.get("NodeList")}
    return out, warnings


def cancel(job_ids) -> list[str]:
    bases = sorted({j.split("_")[0] for j in job_ids})
    if bases:
        run_command(["scancel", *bases], timeout=60)
    return bases


def restart_count(job_id: str) -> int | None:
    try:
        out = run_command(["scontrol", "show", "job", job_id], timeout=20).stdout
    except CommandError:
        return None
    m = re.search(r"Restarts=(\d+)", out)
    return int(m.group(1)) if m else None


def check_submit_allowed(plan):
    if not available():
        raise UserError("sbatch not found: this machine is not a SLURM login node. Use `dlhpc run SPEC` to run "
                        "here, or --scheduler pbs on a PBS cluster")

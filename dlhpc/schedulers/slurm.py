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
    data_of = {t.id: t.data for t in plan.trials}
    for script in plan.scripts:
        res = data_of[script.trial_ids[0]]["resources"]  # a script's trials share their resources
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

    from dlhpc.schedulers.submission import RenderedScriptMixin

    class DlhpcSlurmExecutor(RenderedScriptMixin, submitit.SlurmExecutor):
        """submitit's SLURM executor; every script (single or array) is our rendered template."""

        def __init__(self, folder, script_text, submit_cwd, max_num_timeout, timeout_min):
            super().__init__(folder, max_num_timeout=max_num_timeout)
            self._use_script(script_text, submit_cwd, timeout_min)
            self.parameters["time"] = timeout_min  # submitit's single-job path reads it here

        @staticmethod
        def _get_job_id_from_submission_command(string) -> str:
            return parse_job_id(string.decode() if isinstance(string, bytes) else string)

    return DlhpcSlurmExecutor


def submit(plan, queued: list | None = None) -> list[dict]:
    """Queue every script of a materialised plan; return [{job_id, trial, script}]."""
    from dlhpc.schedulers.submission import submit_plan

    return submit_plan(plan, _executor_class(), queued)


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


def check_submit_allowed(plan):
    if not available():
        raise UserError("sbatch not found: this machine is not a SLURM login node. Use `dlhpc run SPEC` to run "
                        "here, or --scheduler pbs on a PBS cluster")

"""The PBS Backend: each method one scheduler call, through the concern's module."""

import os
import shutil
import sys
from pathlib import Path

from dlhpc.errors import UserError
from dlhpc.schedulers.base import Backend, Check
from dlhpc.schedulers.pbs.doctor import doctor_checks
from dlhpc.schedulers.pbs.limits import (
    flavor,
    hosts_besides_excluded,
    nodes,
    pbs_flag,
    pbs_mem,
    pbs_reservation_queue,
    pbs_walltime,
    preflight,
    server_limits,
    submission_limits,
)
from dlhpc.schedulers.pbs.queue import efficiency, qstat_ids, states
from dlhpc.schedulers.pbs_ids import parse_job_id  # noqa: F401 - also pbs.parse_job_id
from dlhpc.shell import run_command


class PBSBackend(Backend):
    name = "pbs"
    submit_command = "qsub"
    # Torque sets PBS_ARRAYID and OpenPBS PBS_ARRAY_INDEX; PBS-on-SLURM wrappers set neither.
    job_id_expr = "${PBS_JOBID:-${SLURM_JOB_ID:-}}"
    job_id_pattern = r"\d+(_\d+|\[\d*\])?(\.[A-Za-z0-9][A-Za-z0-9.-]*)?"  # 123, 123_4 (array element), 123[].srv
    array_index_expr = "${PBS_ARRAY_INDEX:-${PBS_ARRAYID:-${SLURM_ARRAY_TASK_ID:-0}}}"

    def queue_command(self, job_name: str) -> str:
        return f"qstat -u $USER  (job name {job_name})"

    def release_command(self, job_id: str) -> str:
        return f"qrls {job_id.split('_')[0]}"

    def template(self, resources: dict) -> str:
        return f"pbs/{flavor(resources)}"

    def template_filters(self) -> dict:
        return {
            "pbs_walltime": pbs_walltime,
            "pbs_mem": pbs_mem,
            "pbs_flag": pbs_flag,
            "pbs_reservation_queue": pbs_reservation_queue,
            "pbs_hosts_besides_excluded": hosts_besides_excluded,
        }

    def check(self) -> None:
        if shutil.which("qsub") is None:
            raise UserError(
                "qsub not found: this machine is not a PBS login node. Use `dlhpc run SPEC` to run "
                "here, or --scheduler slurm on a SLURM cluster"
            )

    def inside_allocation(self) -> bool:
        return bool(os.environ.get("PBS_JOBID"))

    def allocation(self) -> tuple[str, list[str]]:
        from dlhpc.schedulers.pbs_launch import node_list

        return os.environ.get("PBS_JOBID", ""), node_list()

    def launch_in_allocation(self, nodes, tasks_per_node, argv):
        if not self.inside_allocation() or not os.environ.get("PBS_NODEFILE"):
            return None
        launch = [sys.executable, "-u", "-m", "dlhpc.schedulers.pbs_launch"]
        return [*launch, "--nodes", str(nodes), "--tasks-per-node", str(tasks_per_node), "--", *argv], {}

    def preflight(self, plan) -> list[str]:
        return submission_limits(plan) + preflight(plan)

    def usable_nodes(self, resources: dict) -> list[str] | None:
        sizes = nodes()
        if sizes is None:
            return None
        return [n["name"] for n in sizes if not any(bad in n["state"] for bad in ("offline", "down", "unknown"))]

    def max_array(self) -> int | None:
        return server_limits().get("max_array_size") if self.available() else None

    def job_headroom(self, plan) -> tuple[int | None, str]:
        limit = server_limits().get("max_queued_per_user")
        return (limit, f"the PBS server queues at most {limit:,} jobs per user (max_queued)") if limit else (None, "")

    def test_only(self, script_text: str, workdir: Path) -> str:
        # qsub has no --test-only; preflight() already checked the queue and its walltime limit
        return "rendered; PBS has no test-only submission, queue and walltime were checked with qstat -Q"

    def submit(self, plan, queued: list) -> list[dict]:
        from dlhpc.schedulers.pbs_submitit import PBSExecutor
        from dlhpc.schedulers.submission import submit_plan

        return submit_plan(plan, PBSExecutor, queued)

    def states(self, job_ids, exp_dir, details=False) -> tuple[dict, list]:
        return states(job_ids)

    def dependency_args(self, kind: str, job_ids: list[str]) -> list[str]:
        return ["-W", f"depend={kind}:{':'.join(qstat_ids(job_ids))}"]

    def submit_followup(self, script, after, name, resources, exp_dir) -> str:
        argv = ["qsub", *self.dependency_args("afterany", after), "-N", name[:230]]
        if flavor(resources) == "torque":
            argv += ["-l", "nodes=1:ppn=1", "-l", "mem=2gb"]
        else:
            argv += ["-l", "select=1:ncpus=1:mem=2gb"]
        argv += ["-l", "walltime=00:15:00", "-j", "oe"]
        argv += ["-o", f"{exp_dir / 'logs'}/"]
        if resources.get("partition"):
            argv += ["-q", resources["partition"]]
        if resources.get("account"):
            argv += ["-A", resources["account"]]
        out = run_command([*argv, str(script)], timeout=60, cwd=exp_dir / "logs").stdout
        return parse_job_id(out)

    def cancel(self, job_ids, exp_dir) -> list[str]:
        ids = qstat_ids(job_ids)
        if ids:
            run_command(["qdel", "--", *ids], timeout=60, check=False)
        return [i.replace("[]", "") for i in ids]

    def start_estimates(self, resources: dict, partitions: list[str]) -> dict | None:
        from dlhpc.schedulers.pbs.limits import start_estimates

        return start_estimates(resources, partitions)

    def efficiency(self, job_ids, exp_dir) -> dict:
        return efficiency(job_ids)

    def doctor_checks(self, spec) -> list[Check]:
        return doctor_checks(spec)

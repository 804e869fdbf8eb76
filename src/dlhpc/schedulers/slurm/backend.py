"""The SLURM Backend: submit through submitit with dlhpc's rendered script; everything else
from the modules beside it."""

import os
import shutil
from pathlib import Path

from dlhpc.errors import UserError
from dlhpc.hostlist import expand_hostlist
from dlhpc.schedulers.base import Backend, Check, base_ids
from dlhpc.schedulers.slurm.accounting import efficiency, usage_rows
from dlhpc.schedulers.slurm.doctor import doctor_checks, job_check
from dlhpc.schedulers.slurm.limits import (
    job_limits,
    max_array_size,
    parse_job_id,
    preflight,
    submission_limits,
    test_only,
)
from dlhpc.schedulers.slurm.queue import states
from dlhpc.shell import run_command


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


class SlurmBackend(Backend):
    name = "slurm"
    submit_command = "sbatch"
    job_id_expr = "${SLURM_JOB_ID}"
    job_id_pattern = r"\d+(_\d+)?"
    array_index_expr = "${SLURM_ARRAY_TASK_ID:-0}"

    def queue_command(self, job_name: str) -> str:
        return f"squeue --me --name {job_name}"

    def release_command(self, job_id: str) -> str:
        return f"scontrol release {job_id.split('_')[0]}"

    def check(self) -> None:
        if shutil.which("sbatch") is None:
            raise UserError(
                "sbatch not found: this machine is not a SLURM login node. Use `dlhpc run SPEC` to run "
                "here, or --scheduler pbs on a PBS cluster"
            )

    def inside_allocation(self) -> bool:
        return bool(os.environ.get("SLURM_JOB_ID"))

    def allocation(self) -> tuple[str, list[str]]:
        return os.environ.get("SLURM_JOB_ID", ""), expand_hostlist(os.environ.get("SLURM_JOB_NODELIST", ""))

    def launch_in_allocation(self, nodes, tasks_per_node, argv):
        if not self.inside_allocation() or not shutil.which("srun"):
            return None
        srun = ["srun", "--unbuffered", "--kill-on-bad-exit=1", f"--nodes={nodes}"]
        # DLHPC_LAUNCHER: node/identity.py reads each srun task as one rank
        return [*srun, f"--ntasks-per-node={tasks_per_node}", *argv], {"DLHPC_LAUNCHER": "srun"}

    def preflight(self, plan) -> list[str]:
        return submission_limits(plan) + preflight(plan)

    def job_headroom(self, plan) -> tuple[int | None, str]:
        res = plan.trials[0].data["resources"] if plan.trials else {}
        room = [(limit - used, what.format(limit=limit, used=used)) for limit, used, what in job_limits(res)]
        return min(room) if room else (None, "")

    def test_only(self, script_text: str, workdir: Path) -> str:
        return test_only(script_text, workdir)

    def start_estimates(self, resources: dict, partitions: list[str]) -> dict | None:
        from dlhpc.schedulers.slurm.limits import start_estimates

        return start_estimates(resources, partitions)

    def usable_nodes(self, resources: dict) -> list[str] | None:
        from dlhpc.schedulers.slurm.limits import usable_nodes

        return usable_nodes(resources.get("partition"))

    def max_array(self) -> int | None:
        return max_array_size()

    def submit(self, plan, queued: list) -> list[dict]:
        from dlhpc.schedulers.submission import submit_plan

        return submit_plan(plan, _executor_class(), queued)

    def states(self, job_ids, exp_dir, details=False) -> tuple[dict, list]:
        return states(job_ids, details)

    def dependency_args(self, kind: str, job_ids: list[str]) -> list[str]:
        return [f"--dependency={kind}:{':'.join(base_ids(job_ids))}"]

    def submit_followup(self, script, after, name, resources, exp_dir) -> str:
        argv = ["sbatch", *self.dependency_args("afterany", after), f"--job-name={name}"]
        argv += ["--ntasks=1", "--cpus-per-task=1", "--mem=2G", "--time=00:15:00", "--kill-on-invalid-dep=no"]
        argv += [f"--output={exp_dir / 'logs' / (name + '-%j.out')}"]
        for key in ("partition", "account", "qos"):
            if resources.get(key):
                argv.append(f"--{key}={resources[key]}")
        return parse_job_id(run_command([*argv, str(script)], timeout=60, cwd=exp_dir / "logs").stdout)

    def cancel(self, job_ids, exp_dir) -> list[str]:
        bases = base_ids(job_ids)
        if bases:
            run_command(["scancel", "--", *bases], timeout=60)
        return bases

    def doctor_checks(self, spec) -> list[Check]:
        return doctor_checks(spec)

    def job_check(self, spec) -> list[Check]:
        return job_check(spec)

    def usage(self, since: str, account: str | None, all_users: bool) -> tuple[list, list]:
        return usage_rows(since, account, all_users)

    def efficiency(self, job_ids, exp_dir) -> dict:
        return efficiency(job_ids)

"""PBS as a submitit plugin: the executor that qsubs dlhpc's rendered script, and the job
environment each rank reads (as pbs_launch sets it).

Registered in setup.cfg under the `submitit` entry-point group, so submitit's `_submit` on the
node knows the "pbs" cluster.
"""

import os
import shutil

from submitit.core import core, job_environment

from dlhpc.plan.experiment import submitit_command
from dlhpc.schedulers.pbs_ids import parse_job_id
from dlhpc.schedulers.submission import RenderedScriptMixin
from dlhpc.shell import run_command


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
        run_command([pbs_command("qrerun"), os.environ.get("PBS_JOBID", self.raw_job_id)], timeout=60)


def pbs_command(name: str) -> str:
    """A PBS client command, as seen from inside a job: the job's PATH is the mom's, which need not
    hold PBS's bin (or may hold another tool's `qrerun`), so first the PBS_EXEC that pbs.conf
    names, as PBS's own scripts do; then PATH and the submitter's PATH (PBS_O_PATH)."""
    conf = os.environ.get("PBS_CONF_FILE", "/etc/pbs.conf")
    try:
        with open(conf) as f:
            for line in f:
                key, _, value = line.strip().partition("=")
                candidate = os.path.join(value.strip(), "bin", name)
                if key == "PBS_EXEC" and os.access(candidate, os.X_OK):
                    return candidate
    except OSError:
        pass
    search = os.pathsep.join(filter(None, (os.environ.get("PATH"), os.environ.get("PBS_O_PATH"))))
    return shutil.which(name, path=search) or name


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

    def __init__(self, folder, script_text: str = "", submit_cwd=None, max_num_timeout: int = 3, timeout_min: int = 60):
        super().__init__(folder, max_num_timeout=max_num_timeout)
        self._use_script(script_text, submit_cwd, timeout_min)
        self.parameters["timeout_min"] = timeout_min  # submitit's single-job path reads it here

    @classmethod
    def _valid_parameters(cls):
        return {"timeout_min"}

    @property
    def _submitit_command_str(self) -> str:
        return submitit_command(self.folder)

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

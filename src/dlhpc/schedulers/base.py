"""The one interface every scheduler implements, local included (docs/architecture.md).

Generic code (commands, status, doctor, results, experiment, render) talks to a scheduler only
through these methods and never asks which scheduler it is; a new scheduler is one module with
a Backend subclass, named in dlhpc.schedulers.REGISTRY. Modelled on submitit's Executor hooks
and maestrowf's ScriptAdapter: the template renders the script, the backend only moves it.

Job ids are strings shaped like SLURM's: `<base>` for a single job, `<base>_<index>` for an
element of an array. What a backend says of a job is a states.JobStatus (a State, a
reasons.Reason, exit code, nodes, accounting), whatever the scheduler says.
"""

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Check:
    """One line of `dlhpc doctor`: ok True, False (a problem, with its fix) or None (a warning)."""

    name: str
    ok: bool | None
    detail: str
    fix: str = ""


class Unreachable(str):
    """A warning from `Backend.states` that says the scheduler did not answer at all (its
    controller or accounting is down): the jobs' states are unknown, not missing, and status shows
    the last known from the trials' own files."""


class Backend(ABC):
    name: str = ""
    submit_command: str = ""  # the command that queues a job (sbatch, qsub); none for local
    # Shell expressions the job template needs: the job's id and this array element's index.
    job_id_expr: str = ""
    array_index_expr: str = "0"
    # True where the trials run on the submitting machine: it may then download missing data
    # itself, and `dlhpc run` follows the trials in the foreground.
    runs_here: bool = False
    # Said after a submission, where the scheduler's usual meaning of "submitted" does not hold.
    submitted_note: str = ""
    # What this scheduler's job ids look like: a job id read back from a run folder is used only
    # if it matches (and goes after `--`), so a record cannot smuggle options into scancel/qdel.
    job_id_pattern: str = r"\d+"

    def asked(self, question: str, ask):
        """The cluster's answer to `question`, asked once per command: the one cache every backend
        uses for what does not change while a command runs (limits, configuration), kept on the
        backend instance (one per process)."""
        answers = self.__dict__.setdefault("_answers", {})
        if question not in answers:
            answers[question] = ask()
        return answers[question]

    def template_filters(self) -> dict:
        """Jinja filters this backend's templates use (name → function), e.g. PBS's walltime form."""
        return {}

    def queue_command(self, job_name: str) -> str:
        """The command that lists the user's queued jobs of this name (said when dlhpc may have
        lost track of one)."""
        return f"your scheduler's queue, jobs named {job_name}"

    def release_command(self, job_id: str) -> str:
        """The command that lets a job held by its user run (for the fix `why` gives)."""
        return f"release job {job_id} with your scheduler's command"

    def valid_job_id(self, job_id) -> bool:
        import re

        return isinstance(job_id, str) and re.fullmatch(self.job_id_pattern, job_id) is not None

    # ---- before submitting ----
    def template(self, resources: dict) -> str:
        """The shipped template for these resources (a spec's `template:` key overrides it)."""
        return f"{self.name}/default"

    @abstractmethod
    def check(self) -> None:
        """Raise UserError, with the fix, when this machine cannot submit to this scheduler."""

    def available(self) -> bool:
        from dlhpc.errors import UserError

        try:
            self.check()
        except UserError:
            return False
        return True

    def inside_allocation(self) -> bool:
        """True inside one of this scheduler's jobs or interactive allocations."""
        return False

    def allocation(self) -> tuple[str, list[str]]:
        """(job id, node names) of the allocation this process runs in."""
        return "", []

    def launch_in_allocation(self, nodes: int, tasks_per_node: int, argv: list[str]) -> tuple[list, dict] | None:
        """Inside one of this scheduler's allocations (`dlhpc run` under salloc or qsub -I): the
        command that starts `argv` once per rank on its nodes, the way its jobs do, and the
        variables it adds; None elsewhere (node/launch.py then starts the ranks here)."""
        return None

    def preflight(self, plan) -> list[str]:
        """What the scheduler would refuse (unknown partition, walltime above its limit...), as
        messages with their fix; [] when all is well. Asks the scheduler, queues nothing."""
        return []

    @abstractmethod
    def test_only(self, script_text: str, workdir: Path) -> str:
        """Dry run of one script: the scheduler's own check where it has one. Returns what it said;
        raises CommandError/UserError with the reason when the script would be refused."""

    def max_array(self) -> int | None:
        """The largest job array the scheduler accepts (None: no limit known)."""
        return None

    # ---- submitting and afterwards ----
    @abstractmethod
    def submit(self, plan, queued: list) -> list[dict]:
        """Queue every script of a materialised plan; return [{job_id, trial, script}]. Append each
        accepted job to `queued` as it goes, so a caller can take them back if a later one fails."""

    @abstractmethod
    def states(self, job_ids: list[str], exp_dir: Path, details: bool = False) -> tuple[dict, list]:
        """({job_id: states.JobStatus}, warnings) in ONE batched scheduler query for the whole
        list, accounting figures (queue wait, core- and GPU-hours) filled in where the scheduler
        records them. A job the scheduler does not report is left out (it shows as UNKNOWN).
        Pending jobs carry `pending_reason` (plain words); with details, also `est_start` where the
        scheduler estimates one (that may cost a second query)."""

    @abstractmethod
    def cancel(self, job_ids: list[str], exp_dir: Path) -> list[str]:
        """Cancel these jobs (one scheduler call); return the ids the scheduler was asked to cancel."""

    # ---- dependencies ----
    def dependency_args(self, kind: str, job_ids: list[str]) -> list[str]:
        """Submit-command arguments that hold a job until `job_ids` end: kind "afterok" (all
        succeeded) or "afterany" (all ended, however)."""
        from dlhpc.errors import UserError

        raise UserError(f"--after needs a batch scheduler; {self.name} runs its trials in order anyway")

    def submit_followup(self, script: Path, after: list[str], name: str, resources: dict, exp_dir: Path) -> str:
        """Queue a small one-core job (the experiment's report) to run when `after` have all ended;
        returns its id."""
        raise NotImplementedError

    def job_headroom(self, plan) -> tuple[int | None, str]:
        """How many more jobs (array tasks count) the scheduler takes from this user now, and the
        limit that sets it; (None, "") where nothing is known. Submit packs trials to fit."""
        return None, ""

    def start_estimates(self, resources: dict, partitions: list[str]) -> dict | None:
        """{partition or queue: (expected start as a Unix time, None where the job cannot run
        there; the scheduler's words)} for a job with these resources, queuing nothing; None
        where the scheduler cannot tell (resources.partition as a list then needs one name)."""
        return None

    def usable_nodes(self, resources: dict) -> list[str] | None:
        """The nodes a job with these resources could run on now (its partition or queue; none
        down, drained or offline); None where the scheduler does not say. resubmit keeps a trial
        off a node lost under it only while enough of these are left."""
        return None

    def efficiency(self, job_ids: list[str], exp_dir: Path) -> dict:
        """From accounting, per job: cpus, cpus_used (average), cpu_efficiency, mem_peak_mb,
        mem_req_mb, where the scheduler records them ({} where it does not)."""
        return {}

    def usage(self, since: str, account: str | None, all_users: bool) -> tuple[list, list]:
        """`dlhpc usage`: one row per dlhpc job element since a date, from the scheduler's accounting:
        job_id, user, account, state, experiment, est_core_hours, est_gpu_hours, core_hours, gpu_hours."""
        from dlhpc.errors import UserError

        raise UserError(f"dlhpc usage does not read {self.name}'s accounting yet; it reads SLURM's (sacct)")

    # ---- dlhpc doctor ----
    def doctor_checks(self, spec) -> list[Check]:
        return []

    def job_check(self, spec) -> list[Check]:
        """`doctor --job`: what the compute nodes have (Python, torch, CUDA, NCCL)."""
        return [Check("compute node software", None, f"doctor --job is not available for {self.name}")]


def base_ids(job_ids) -> list[str]:
    """'123_4' → '123': the ids a scheduler command takes for whole jobs and arrays, sorted, unique."""
    return sorted({str(j).split("_")[0] for j in job_ids}, key=lambda b: (len(b), b))


def commands_missing(names) -> list[str]:
    import shutil

    return [c for c in names if shutil.which(c) is None]

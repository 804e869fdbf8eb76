"""What every submitit-backed scheduler shares: submit our rendered script (single job or array)
and turn a plan into queued jobs.

submitit's executors render their own batch text, and SlurmExecutor builds job arrays through a
fresh SlurmExecutor; RenderedScriptMixin replaces both paths so that the script that runs is
always the template's, and shells out through run_command so a refusal carries the command,
exit code and output.
"""

import uuid

from submitit.core import utils as submitit_utils

from dlhpc.shell import run_command
from dlhpc.spec.schema import parse_time


class RenderedScriptMixin:
    """Mix in before a submitit PicklingExecutor subclass; call _use_script() in __init__."""

    def _use_script(self, script_text: str, submit_cwd, timeout_min: int):
        self._script_text, self._submit_cwd, self._timeout_min = script_text, submit_cwd, timeout_min
        self._throttling = 0.0  # a handful of arrays, not thousands of single jobs
        self.submit_args: list[str] = []  # e.g. a dependency (submit --after), before the script

    @property
    def _submitit_command_str(self) -> str:
        from dlhpc.plan.experiment import submitit_command

        return submitit_command(self.folder)

    def _make_submission_file_text(self, command, uid):
        if command != self._submitit_command_str:
            raise RuntimeError("submitit asked for an unexpected command: " + command)
        return self._script_text

    def _internal_process_submissions(self, delayed_submissions):
        if len(delayed_submissions) == 1:
            return super()._internal_process_submissions(delayed_submissions)
        # submitit's array path, on `self`, so the array script is ours too
        folder = submitit_utils.JobPaths.get_first_id_independent_folder(self.folder)
        folder.mkdir(parents=True, exist_ok=True)
        pickle_paths = []
        for delayed in delayed_submissions:
            pickle_path = folder / f"{uuid.uuid4().hex}.pkl"
            delayed.set_timeout(self._timeout_min, self.max_num_timeout)
            delayed.dump(pickle_path)
            pickle_paths.append(pickle_path)
        first = self._submit_command(self._submitit_command_str)
        jobs = [
            self.job_class(folder=self.folder, job_id=f"{first.job_id}_{i}", tasks=[0])
            for i in range(len(delayed_submissions))
        ]
        for job, pickle_path in zip(jobs, pickle_paths, strict=True):
            job.paths.move_temporary_file(pickle_path, "submitted_pickle")
        return jobs

    def _submit_command(self, command):
        uid = uuid.uuid4().hex
        path = submitit_utils.JobPaths.get_first_id_independent_folder(self.folder) / f".submission_file_{uid}.sh"
        path.write_text(self._make_submission_file_text(command, uid))
        argv = self._make_submission_command(path)
        argv = [argv[0], *self.submit_args, *argv[1:]]
        proc = run_command(argv, timeout=60, cwd=self._submit_cwd)
        job = self.job_class(
            folder=self.folder, job_id=self._get_job_id_from_submission_command(proc.stdout), tasks=[0]
        )
        job.paths.move_temporary_file(path, "submission_file", keep_as_symlink=True)
        return job


def submit_plan(plan, make_executor, queued: list | None = None) -> list[dict]:
    """Queue every script of a materialised plan: one callable per array task (a TrainJob, or a
    PackedTrainJob running several trials in turn), an array per script.
    make_executor(folder, script_text, submit_cwd, max_num_timeout, timeout_min) → executor.
    `queued` fills as jobs are accepted, so a caller can cancel them if a later script fails."""
    from dlhpc.node.job import PackedTrainJob, TrainJob
    from dlhpc.plan.experiment import SUBMITIT_DIR
    from dlhpc.search.agent import SearchAgent
    from dlhpc.spec.search import trials_per_agent

    data_of = {t.id: t.data for t in plan.trials}
    jobs = queued if queued is not None else []
    for i, script in enumerate(plan.scripts):
        agents = script.trial_ids[0] not in data_of  # a search's agents (plan/experiment.py)
        res = data_of[script.trial_ids[0]]["resources"] if not agents else plan.trials[0].data["resources"]
        per_agent = trials_per_agent(plan.spec.search) if agents else 1
        packed = any(len(task) > 1 for task in script.tasks)
        executor = make_executor(
            plan.exp_dir / SUBMITIT_DIR,
            script.text,
            plan.exp_dir / "logs",
            res["timeout_requeues"],
            max(1, parse_time(res["time"]) * (per_agent if agents else max(len(t) for t in script.tasks)) // 60),
        )
        executor.submit_args = list(plan.submit_args)
        payloads = [
            SearchAgent(plan.exp_dir, task[0])
            if agents
            else PackedTrainJob([plan.exp_dir / tid for tid in task])
            if packed
            else TrainJob(plan.exp_dir / task[0])
            for task in script.tasks
        ]
        if len(payloads) == 1:
            submitted = [executor.submit(payloads[0])]
        else:
            with executor.batch():
                submitted = [executor.submit(p) for p in payloads]
        accepted = []
        for task, job in zip(script.tasks, submitted, strict=True):
            for position, tid in enumerate(task):
                entry = {"job_id": job.job_id, "trial": tid, "script": plan.script_name(i)}
                if packed:  # several trials, one after another, in this job
                    entry.update(task_position=position, task_size=len(task))
                accepted.append(entry)
        jobs.extend(accepted)  # one addition per accepted array: the journal is written once for it
    return jobs

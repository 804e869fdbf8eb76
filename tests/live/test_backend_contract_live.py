"""What every backend in the registry promises (issue 23), parametrized over the registry, in the
style of dask-jobqueue's per-cluster tests: its state words are dlhpc's, its reasons come with
fixes in its own commands, its default script parses."""

import pytest

from conftest import BACKENDS
from dlhpc.schedulers import backend

SLEEPER = "import time\ntime.sleep(600)\n"


@pytest.fixture(params=[pytest.param(n, marks=getattr(pytest.mark, n)) if n != "local" else n for n in BACKENDS])
def live_backend(request, monkeypatch):
    """(name, environment) of a backend whose cluster is up: local everywhere, the others on
    the test clusters (their fixtures skip, or fail under DLHPC_CLUSTERS_UP, when it is down)."""
    name = request.param
    env = {}
    if name == "slurm":
        request.getfixturevalue("slurm_cluster")
    elif name == "pbs":
        env = request.getfixturevalue("pbs_cluster")
        monkeypatch.setenv("PATH", env["PATH"])  # the backend's own calls, in this process
    return name, env


def _poll_states(sched, ids, exp, until, timeout=120):
    import time

    deadline = time.monotonic() + timeout
    while True:
        states, warnings = sched.states(ids, exp, False)
        if until(states) or time.monotonic() > deadline:
            return states, warnings
        time.sleep(0.5)


def test_submit_states_and_cancel_on_its_cluster(live_backend, dlhpc, tmp_path):
    """Every backend of the registry: its states() is a JobStatus in dlhpc's words for the job
    it queued, RUNNING once it runs, and cancel() ends it CANCELLED."""
    from pathlib import Path

    from conftest import exp_dir_from, write
    from dlhpc.results import rows, status
    from dlhpc.states import JobStatus, State

    name, env = live_backend
    write(tmp_path / "sleep.py", SLEEPER)
    spec = write(
        tmp_path / "exp.yaml",
        "name: contract\nprogram: {script: sleep.py}\n"
        f"resources: {{scheduler: {name}, cpus_per_task: 1, mem: 1G, time: '00:05:00'}}\n",
    )
    r = dlhpc("submit", spec, "--runs-dir", tmp_path / "runs", env=env)
    assert r.code == 0, r
    exp = Path(exp_dir_from(r.out))
    ids = status.job_ids(rows.read_record(exp))
    sched = backend(name)
    running, warnings = _poll_states(sched, ids, exp, lambda s: {x.state for x in s.values()} == {State.RUNNING})
    assert not warnings and set(running) == set(ids), (running, warnings)
    assert all(isinstance(s, JobStatus) and s.state == State.RUNNING for s in running.values()), running
    assert sched.cancel(ids, exp)
    ended, _ = _poll_states(sched, ids, exp, lambda s: {x.state for x in s.values()} == {State.CANCELLED})
    assert {j: s.state for j, s in ended.items()} == dict.fromkeys(ids, State.CANCELLED), ended

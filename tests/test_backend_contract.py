"""What every backend in the registry promises (issue 23), parametrized over the registry, in the
style of dask-jobqueue's per-cluster tests: its state words are dlhpc's, its reasons come with
fixes in its own commands, its default script parses."""

import subprocess

import pytest

from dlhpc.reasons import FIXES, Reason, fix
from dlhpc.schedulers import REGISTRY, backend

BACKENDS = sorted(REGISTRY)


def test_every_reason_has_a_fix():
    assert set(FIXES) == set(Reason)


@pytest.mark.parametrize("name,command", [("slurm", "scontrol release 123"), ("pbs", "qrls 123")])
def test_a_held_job_is_released_with_the_backends_own_command(name, command):
    assert fix(Reason.HELD_BY_USER, "123_4", backend(name)) == f"release it: {command}"


@pytest.mark.parametrize("name", BACKENDS)
def test_the_default_script_parses(name, tmp_path):
    from dlhpc.plan import experiment
    from dlhpc.spec.load import load_spec_text

    spec = load_spec_text(f"name: c\nresources: {{scheduler: {name}}}\nruns_dir: {tmp_path}\n")
    for script in experiment.plan(spec).scripts:
        assert subprocess.run(["bash", "-n"], input=script.text, text=True).returncode == 0


@pytest.mark.parametrize(
    "job,code",
    [
        ({"job_state": "H", "Hold_Types": "u"}, Reason.HELD_BY_USER),
        ({"job_state": "H", "Hold_Types": "s", "depend": "afterok:7.srv"}, Reason.DEPENDENCY),
        ({"job_state": "H", "Hold_Types": "o"}, Reason.HELD_BY_ADMIN),
        ({"job_state": "W"}, Reason.BEGIN_TIME),
        ({"job_state": "F", "Exit_status": -27}, Reason.OUT_OF_MEMORY),
        ({"job_state": "F", "Exit_status": 271}, Reason.CANCELLED),
    ],
)
def test_pbs_reasons_are_dlhpc_reason_codes(job, code):
    from dlhpc.schedulers.pbs import reason_code

    assert reason_code(job) == code


@pytest.mark.parametrize(
    "words,code",
    [("JobHeldUser", Reason.HELD_BY_USER), ("(QOSMaxJobsPerUserLimit)", Reason.LIMIT), ("Weird", None)],
)
def test_slurm_reasons_are_dlhpc_reason_codes(words, code):
    from dlhpc.schedulers.slurm.queue import explain_pending

    assert explain_pending(words)[1] == code


def test_why_says_the_fix_in_the_schedulers_own_words():
    from dlhpc.results.why import classify
    from dlhpc.states import JobStatus, State

    trial = {"state": "PENDING", "job_id": "77_1", "why_pending": "held by you"}
    held = JobStatus(State.PENDING, reason_code=Reason.HELD_BY_USER)
    pbs = classify(trial, held, {}, "", {}, backend=backend("pbs"))
    slurm = classify(trial, held, {}, "", {}, backend=backend("slurm"))
    assert pbs[1] == "release it: qrls 77" and slurm[1] == "release it: scontrol release 77"


@pytest.mark.parametrize(
    "name,recorded",
    [("slurm", ["123", "123_4"]), ("pbs", ["123", "123_4", "123[].srv"]), ("local", ["local-99.0", "local-99.1_3"])],
)
def test_the_job_ids_a_backend_records_are_valid_by_its_own_pattern(name, recorded):
    assert all(backend(name).valid_job_id(job) for job in recorded)
    assert not any(backend(name).valid_job_id(bad) for bad in ("-1", "--all", "1;2", "", "1 2"))


def test_the_local_script_leaves_allocations_to_the_backends():
    """The local template has no scheduler branch: node/launch.py asks each backend."""
    from dlhpc.plan import experiment
    from dlhpc.spec.load import load_spec

    spec = load_spec(None, ["name=local", "resources.scheduler=local", "resources.nodes=2"])
    (script,) = experiment.plan(spec).scripts
    assert "-m dlhpc.node.launch --nodes 2 --tasks-per-node 1" in script.text
    assert not any(word in script.text for word in ("SLURM_", "PBS_", "srun", "pbs_launch"))


# ---- on each backend's live cluster: submit, states, cancel -------------------------------------

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

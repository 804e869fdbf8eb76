"""Two real users of one project group on the SLURM test cluster (issue 22): alice runs dlhpc
with umask 002 in a setgid project folder both can write; bob cannot read or replace her pickles,
checkpoints or records, a job refuses files bob planted where hers were, and alice's experiment
still runs and resumes after a requeue. The users come from scripts/testcluster.sh."""

import json
import os
import pwd
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from conftest import DATA, ROOT, release_if_requeued, scontrol_job

pytestmark = pytest.mark.slurm
ALICE, BOB, GROUP = "dlhpc-alice", "dlhpc-bob", "dlhpc-proj"


def _users_exist() -> bool:
    try:
        pwd.getpwnam(ALICE), pwd.getpwnam(BOB)
    except KeyError:
        return False
    return True


@pytest.fixture(scope="module")
def project(slurm_cluster):
    """A setgid project folder (2775, group dlhpc-proj) under a folder everyone may enter, and
    this interpreter and checkout reachable by the two users (o+x on their folders, put back after)."""
    if os.getuid() != 0 or not _users_exist():
        why = "needs root and the test users dlhpc-alice, dlhpc-bob (scripts/testcluster.sh up)"
        if os.environ.get("CI") or os.environ.get("DLHPC_CLUSTERS_UP"):
            pytest.fail(why)
        pytest.skip(why)
    opened = []
    for start in (Path(os.path.realpath(sys.executable)), ROOT, DATA):
        for folder in [start, *start.parents]:
            mode = folder.stat().st_mode if folder.exists() else 0
            if folder.is_dir() and not mode & stat.S_IXOTH:
                os.chmod(folder, mode | stat.S_IXOTH)
                opened.append((folder, mode))
    base = Path(tempfile.mkdtemp(prefix="dlhpc-multiuser-", dir="/tmp"))
    os.chmod(base, 0o755)
    proj = base / "proj"
    proj.mkdir()
    os.chown(proj, 0, pwd.getpwnam(ALICE).pw_gid)
    os.chmod(proj, 0o2775)
    for user in (ALICE, BOB):
        home = base / f"home-{user}"
        home.mkdir(mode=0o700)
        os.chown(home, pwd.getpwnam(user).pw_uid, pwd.getpwnam(user).pw_gid)
    yield base
    subprocess.run(["scancel", "-u", ALICE], capture_output=True)
    for folder, mode in reversed(opened):
        os.chmod(folder, stat.S_IMODE(mode))


def as_user(base: Path, user: str, *argv, check=False) -> subprocess.CompletedProcess:
    """Run a command as `user` with umask 002, as a member of a project group usually has."""
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(base / f"home-{user}"),
        "USER": user,
        "DLHPC_DATA": str(DATA),
        "DLHPC_SITE": "/nonexistent/site.yaml",
        "COLUMNS": "200",
    }
    cmd = ["runuser", "-u", user, "--", "bash", "-c", 'umask 002; exec "$@"', "_", *map(str, argv)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert not check or proc.returncode == 0, (argv, proc.stdout, proc.stderr)
    return proc


def dlhpc_as(base, user, *args, check=False):
    return as_user(base, user, sys.executable, "-m", "dlhpc", *args, check=check)


SPEC = f"""name: {{name}}
model: {{{{name: cnn, width: 8}}}}
train: {{{{epochs: {{epochs}}, batch_size: 64, lr: 0.1, seed: 3}}}}
data: {{{{train_subset: 3000, root: {DATA}}}}}
resources: {{{{scheduler: slurm, cpus_per_task: 1, mem: 2G, time: "00:10:00"{{extra}}}}}}
"""


def submit_as_alice(base: Path, runs: str, name: str, epochs: int, extra: str = ""):
    """Alice's spec in her home, submitted by her into her own folder of the project folder;
    returns (experiment, job id, trial folder)."""
    spec = base / f"home-{ALICE}" / f"{name}.yaml"
    spec.write_text(SPEC.format(name=name, epochs=epochs, extra=extra))
    os.chown(spec, pwd.getpwnam(ALICE).pw_uid, pwd.getpwnam(ALICE).pw_gid)
    as_user(base, ALICE, "mkdir", "-p", "-m", "700", base / "proj" / runs, check=True)  # her own folder
    dlhpc_as(base, ALICE, "submit", spec, "--runs-dir", base / "proj" / runs, check=True)
    (exp,) = (base / "proj" / runs).iterdir()
    record = json.loads((exp / "experiment.json").read_text())
    return exp, record["jobs"][0]["job_id"], exp / record["jobs"][0]["trial"]


def wait_job(job_id, states, timeout=300):
    deadline = time.monotonic() + timeout
    while scontrol_job(job_id).get("JobState") not in states:
        assert time.monotonic() < deadline, scontrol_job(job_id)
        release_if_requeued(job_id)
        time.sleep(0.5)


def test_another_group_member_can_neither_read_nor_replace_and_the_owner_resumes(project):
    exp, job_id, trial = submit_as_alice(project, "alice-a", "own", epochs=4)
    assert exp.stat().st_mode & 0o777 == 0o700 and exp.stat().st_uid == pwd.getpwnam(ALICE).pw_uid
    deadline = time.monotonic() + 240
    while not (trial / "checkpoint.pt").exists():  # epoch 1 done: a checkpoint to steal or replace
        assert time.monotonic() < deadline, scontrol_job(job_id)
        time.sleep(0.5)
    pickles = list((exp / ".submitit").glob("*.pkl"))
    for victim in [exp / "experiment.json", trial / "checkpoint.pt", *pickles]:
        assert as_user(project, BOB, "cat", victim).returncode != 0, victim  # cannot read
        assert as_user(project, BOB, "cp", "/etc/hostname", victim).returncode != 0, victim  # nor replace
        assert not victim.stat().st_mode & 0o022, victim  # nor could anyone else, whatever the umask
    subprocess.run(["scontrol", "requeue", job_id], check=True)
    wait_job(job_id, {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"})
    report = json.loads(dlhpc_as(project, ALICE, "status", exp, "--json").stdout)
    assert report["trials"][0]["state"] == "COMPLETED", report
    epochs = [json.loads(line)["epoch"] for line in (trial / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2, 3, 4] and scontrol_job(job_id).get("Restarts") == "1"  # resumed, each epoch once


def test_a_job_refuses_what_another_user_planted_in_place_of_its_experiment(project):
    # queued to start in an hour, so the folder can be swapped before it runs
    exp, job_id, trial = submit_as_alice(project, "alice-b", "later", 1, extra=', extra: {begin: "now+3600"}')
    # bob may rename entries of the group-writable project folder, and put his own in their place
    planted_exp = project / "proj" / "alice-b" / exp.name
    marker = planted_exp / trial.name / "bob-code-ran"  # a folder alice's job could write in
    as_user(project, BOB, "mv", project / "proj" / "alice-b", project / "proj" / "alice-b-moved", check=True)
    planted = [planted_exp / ".submitit", planted_exp / "logs", planted_exp / trial.name]  # all a job needs
    as_user(project, BOB, "mkdir", "-p", "-m", "777", *planted, check=True)
    evil = (
        "import pickle, sys; "
        f"sys.stdout.buffer.write(pickle.dumps(eval(\"type('E', (), {{'__reduce__': lambda s: "
        f"(__import__('os').system, ('touch {marker}',))}})()\")))"
    )
    for pkl in (exp.parent.with_name("alice-b-moved") / exp.name / ".submitit").glob("*.pkl"):
        dest = planted_exp / ".submitit" / pkl.name
        as_user(project, BOB, "bash", "-c", f"{sys.executable} -c {json.dumps(evil)} > {dest}; chmod 666 {dest}")
    subprocess.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"], check=True)
    wait_job(job_id, {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"})
    assert not marker.exists(), "the job ran code another user planted"
    err = (planted_exp / trial.name / "job.err").read_text()
    assert "refused to start the trial" in err and f"belongs to {BOB}" in err, err

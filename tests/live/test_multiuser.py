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

from conftest import DATA, ROOT, exp_dir_from, release_if_requeued, scontrol_job

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


# ---- issue 33: the second audit, tried as bob (same group) against alice on one login node ------
# Each test reproduced its finding on the main before the fix (noted in each docstring).

PROGRAM = "raise SystemExit(3)\n"  # (a failed trial: something for resubmit to do)


def owned_by(user: str, path: Path, mode: int) -> Path:
    os.chown(path, pwd.getpwnam(user).pw_uid, pwd.getpwnam(user).pw_gid)
    os.chmod(path, mode)
    return path


def spec_of(base: Path, user: str, name: str, text: str, folder: Path | None = None) -> Path:
    """A spec file and its program, written as `user` would have (their own files)."""
    folder = folder or base / f"home-{user}" / name
    if not folder.exists():
        folder.mkdir(parents=True)
        owned_by(user, folder, 0o775)
    owned_by(user, write_file(folder / "train.py", PROGRAM), 0o664)
    return owned_by(user, write_file(folder / f"{name}.yaml", text), 0o664)


def write_file(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def shared_runs(base: Path) -> Path:
    """A sticky runs folder both may create experiments in (dlhpc allows it, like /tmp)."""
    runs = base / "proj" / "shared-runs"
    if not runs.exists():
        runs.mkdir()
        os.chmod(runs, 0o1777)
    return runs


def submitted(base: Path, user: str, spec: Path, runs: Path) -> Path:
    """`user` submits `spec` to the local backend; their experiment, once its trial has ended."""
    proc = dlhpc_as(base, user, "submit", spec, "--runs-dir", runs, check=True)
    exp = Path(exp_dir_from(proc.stdout))
    deadline = time.monotonic() + 120
    while True:
        report = json.loads(dlhpc_as(base, user, "status", exp, "--json", "--runs-dir", runs).stdout)
        if report["finished"]:
            return exp
        assert time.monotonic() < deadline, report
        time.sleep(0.5)


def test_a_reference_by_name_resolves_only_to_your_own_experiment(project):
    """Finding 1: in a sticky shared runs folder, `resubmit NAME`, `status NAME`, `cancel NAME` and
    dlhpc.load(NAME) picked the newest experiment of that name, bob's, and alice's resubmit ran
    bob's env.setup as alice."""
    runs = shared_runs(project)
    marks = project / "marks"
    marks.mkdir(exist_ok=True)
    os.chmod(marks, 0o1777)
    quick = 'program: {script: train.py}\nresources: {scheduler: local, cpus_per_task: 1, time: "00:05:00"}\n'
    alice_exp = submitted(project, ALICE, spec_of(project, ALICE, "mnist", "name: mnist\n" + quick), runs)
    time.sleep(1.1)  # (bob's is the newer one, by its folder name and mtime)
    # bob's is readable by the group (share: group), so the name could reach it
    setup = f'share: group\nenv: {{setup: ["touch {marks}/setup-ran-as-$(id -un)"]}}\n'
    bob_exp = submitted(project, BOB, spec_of(project, BOB, "mnist", "name: mnist\n" + quick + setup), runs)
    (marks / f"setup-ran-as-{BOB}").unlink()
    as_user(project, BOB, "touch", bob_exp, check=True)  # bob's is the newest of that name, whatever alice's did
    status = json.loads(dlhpc_as(project, ALICE, "status", "mnist", "--json", "--runs-dir", runs).stdout)
    assert status["experiment"] == str(alice_exp), status
    load = "import dlhpc, sys; print(dlhpc.load('mnist', runs_dir=sys.argv[1]).path)"
    assert as_user(project, ALICE, sys.executable, "-c", load, runs).stdout.strip() == str(alice_exp)
    dlhpc_as(project, ALICE, "resubmit", "mnist", "--runs-dir", runs)
    assert not (marks / f"setup-ran-as-{ALICE}").exists(), "bob's env.setup ran as alice"
    for command in ("cancel", "resubmit"):
        r = dlhpc_as(project, ALICE, command, bob_exp, "--runs-dir", runs)
        assert r.returncode == 2 and f"belongs to {BOB}; dlhpc acts only on your own experiments" in r.stderr, r
    only_bobs = spec_of(project, BOB, "bobs", "name: bobs\n" + quick)
    submitted(project, BOB, only_bobs, runs)
    r = dlhpc_as(project, ALICE, "cancel", "bobs", "--runs-dir", runs)
    assert r.returncode == 2 and f"belongs to {BOB}" in r.stderr, r
    dlhpc_as(project, ALICE, "cancel", "mnist", "--runs-dir", runs)


def test_validate_and_dry_run_never_run_the_interpreter_a_spec_names(project):
    """Finding 2: validate and submit --dry-run ran program.python to ask its version; bob's spec
    naming a script of his ran it as alice."""
    marks = project / "marks-python"
    marks.mkdir(exist_ok=True)
    os.chmod(marks, 0o1777)
    folder = project / "proj" / "bob-python"
    folder.mkdir()
    owned_by(BOB, folder, 0o775)
    fake = owned_by(BOB, write_file(folder / "python", f"#!/bin/sh\ntouch {marks}/ran-as-$(id -un)\n"), 0o755)
    spec = spec_of(project, BOB, "py", f"name: py\nprogram: {{script: train.py, python: {fake}}}\n", folder)
    for argv in (("validate", spec), ("submit", spec, "--dry-run", "--runs-dir", project / "proj" / "nowhere")):
        r = dlhpc_as(project, ALICE, *argv)
        assert r.returncode == 2 and f"belongs to {BOB}" in r.stderr, (argv, r)
    assert dlhpc_as(project, ALICE, "render", spec, "--runs-dir", project / "proj" / "nowhere").returncode == 0
    assert list(marks.iterdir()) == [], "the interpreter bob named ran as alice"


def test_the_snapshot_copies_your_code_and_nothing_else(project):
    """Findings 3, 8, 10: links a group member planted in a shared code folder (to alice's
    ~/.ssh/id_rsa, to /proc/self/environ) were copied as the files they point to and, with
    share: group, readable by the group; hidden and 0600 files became group-readable copies."""
    home = project / f"home-{ALICE}"
    ssh = home / ".ssh"
    ssh.mkdir(exist_ok=True)
    owned_by(ALICE, ssh, 0o700)
    owned_by(ALICE, write_file(ssh / "id_rsa", "ALICE-PRIVATE-KEY\n"), 0o600)
    code = project / "proj" / "alice-code"
    code.mkdir()
    owned_by(ALICE, code, 0o2775)  # the group may write it, as a shared project folder
    owned_by(ALICE, write_file(code / ".env", "TOKEN=ALICE-DOTENV\n"), 0o600)
    owned_by(ALICE, write_file(code / "notes.txt", "ALICE-NOTES\n"), 0o600)
    owned_by(ALICE, write_file(code / "id_ed25519", "ALICE-KEY-COPY\n"), 0o600)
    as_user(project, BOB, "ln", "-s", ssh / "id_rsa", code / "model_utils.txt", check=True)
    as_user(project, BOB, "ln", "-s", "/proc/self/environ", code / "environ.txt", check=True)
    runs = project / "proj" / "alice-runs"
    as_user(project, ALICE, "mkdir", "-m", "750", runs, check=True)
    spec = spec_of(
        project,
        ALICE,
        "snap",
        'name: snap\nshare: group\nprogram: {script: train.py}\nresources: {scheduler: local, time: "00:05:00"}\n',
        code,
    )
    exp = submitted(project, ALICE, spec, runs)
    copied = sorted(p.name for p in (exp / "code").iterdir())
    assert copied == ["notes.txt", "snap.yaml", "train.py"], copied
    record = json.loads(as_user(project, ALICE, "cat", exp / "code.json", check=True).stdout)
    skipped = {s["path"]: s["why"] for s in record["skipped"]}
    assert skipped == {
        ".env": "hidden",
        "id_ed25519": "a credential file",
        "model_utils.txt": "a link that leaves the code folder",
        "environ.txt": "a link to proc",
    }, skipped
    assert as_user(project, BOB, "cat", exp / "code" / "notes.txt").returncode != 0  # 0600 stays alice's
    assert as_user(project, BOB, "cat", exp / "code" / "train.py").returncode == 0  # (share: group works)
    in_home = spec_of(project, ALICE, "home", 'name: home\nprogram: {script: train.py, code: "~"}\n')
    r = as_user(project, ALICE, "env", f"HOME={home}", sys.executable, "-m", "dlhpc", "submit", in_home, "--dry-run")
    assert r.returncode == 2 and f"program.code: {home} is your home folder" in r.stderr, r


def test_an_unreadable_file_in_the_code_folder_is_one_line_at_validate(project):
    """Finding 11: a file alice cannot read in her code folder: validate said ok, submit ended in
    internal error: PermissionError."""
    code = project / "proj" / "alice-unreadable"
    code.mkdir()
    owned_by(ALICE, code, 0o2775)
    spec = spec_of(project, ALICE, "unread", "name: unread\nprogram: {script: train.py}\n", code)
    owned_by(BOB, write_file(code / "data.csv", "bob's\n"), 0o600)  # planted by bob, his alone
    runs = project / "proj" / "alice-unread-runs"
    as_user(project, ALICE, "mkdir", "-m", "700", runs, check=True)
    for argv in (("validate", spec), ("submit", spec, "--runs-dir", runs)):
        r = dlhpc_as(project, ALICE, *argv)
        assert r.returncode == 2 and f"{code / 'data.csv'} in the code folder cannot be read by you" in r.stderr, r
    assert list(runs.iterdir()) == []  # nothing half-written


def test_tensorboard_skips_experiments_that_are_not_yours(project):
    """Finding 9: `dlhpc tensorboard` over a shared runs folder wrote event files into alice's
    finished trials as bob (internal error: PermissionError)."""
    runs = project / "proj" / "tb-runs"
    runs.mkdir()
    os.chmod(runs, 0o1777)
    spec = spec_of(
        project,
        ALICE,
        "tb",
        'name: tb\nshare: group\nprogram: {script: train.py}\nresources: {scheduler: local, time: "00:05:00"}\n',
    )
    exp = submitted(project, ALICE, spec, runs)
    trial = next(d for d in exp.iterdir() if (d / "trial.json").is_file())
    owned_by(ALICE, write_file(trial / "metrics.jsonl", '{"epoch": 1, "test_acc": 0.5}\n'), 0o640)
    r = dlhpc_as(project, BOB, "tensorboard", "--runs-dir", runs)
    assert r.returncode == 2 and "skipped 1 experiment(s) of other users" in r.stdout, r
    assert "no experiments of yours" in r.stderr and not list(trial.glob("events.out.tfevents.*")), r

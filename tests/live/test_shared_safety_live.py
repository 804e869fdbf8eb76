"""Safe on a shared login node (issue 22): values reach the script exactly as typed, templates
render in a sandbox, hostile input is refused with exit 2 and one clear line."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from conftest import QUICK_SPEC, fake_commands, policy_env, write


def finished_local_experiment(dlhpc, tmp_path, text=QUICK_SPEC):
    spec = write(tmp_path / "quick.yaml", text)
    r = dlhpc("submit", spec, "--runs-dir", tmp_path / "runs")
    assert r.code == 0, r
    (exp,) = (tmp_path / "runs").iterdir()
    watch = dlhpc("status", exp, "--watch", timeout=180)
    assert watch.code == 0, watch
    # the trials' results say COMPLETED a moment before the runner has recorded their jobs ended
    deadline = time.monotonic() + 60
    while not all(j.get("state") == "COMPLETED" for j in local_jobs(exp).values()):
        assert time.monotonic() < deadline, local_jobs(exp)
        time.sleep(0.1)
    return exp


def local_jobs(exp) -> dict:
    return json.loads((exp / "logs" / "local-jobs.json").read_text())["jobs"]


def test_cancel_of_a_finished_local_experiment_signals_nobody(dlhpc, tmp_path):
    exp = finished_local_experiment(dlhpc, tmp_path)
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        book_path = exp / "logs" / "local-jobs.json"
        book = json.loads(book_path.read_text())
        book["runner_pid"] = bystander.pid  # the record now names an unrelated process
        book["runner"] = {"pid": bystander.pid, "start": 0, "uid": os.getuid()}
        book_path.write_text(json.dumps(book))
        r = dlhpc("cancel", exp)
        assert r.code == 0 and "nothing to cancel" in r.out, r
        assert bystander.poll() is None  # still alive
    finally:
        bystander.kill()
        bystander.wait()


@pytest.mark.parametrize("ref", ["", "*", "quick-2*", "qui", "../runs"])
def test_an_experiment_reference_is_exact(dlhpc, tmp_path, ref):
    exp = finished_local_experiment(dlhpc, tmp_path)
    r = dlhpc("cancel", ref, "--runs-dir", tmp_path / "runs")
    assert r.code == 2, r
    assert f"no experiment {ref!r}" in r.err and exp.name in r.err and "Traceback" not in r.err


def test_an_experiment_is_private_to_its_owner_under_a_group_umask(dlhpc, tmp_path):
    old = os.umask(0o002)
    try:
        exp = finished_local_experiment(dlhpc, tmp_path)
    finally:
        os.umask(old)
    assert exp.stat().st_mode & 0o777 == 0o700
    writable = [p for p in exp.rglob("*") if p.stat().st_mode & 0o022]
    assert writable == [], writable


def test_share_group_lets_the_group_read_but_never_write(dlhpc, tmp_path):
    old = os.umask(0o002)
    try:
        exp = finished_local_experiment(dlhpc, tmp_path, QUICK_SPEC + "share: group\n")
    finally:
        os.umask(old)
    assert exp.stat().st_mode & 0o777 == 0o750
    assert [p for p in exp.rglob("*") if p.stat().st_mode & 0o022] == []


def test_read_only_commands_ignore_a_required_key(dlhpc, tmp_path):
    exp = finished_local_experiment(dlhpc, tmp_path)
    env = policy_env(tmp_path)
    for command in ("status", "summary", "cancel"):
        r = dlhpc(command, exp.name, "--runs-dir", tmp_path / "runs", env=env)
        assert r.code == 0, (command, r)


def test_two_resubmits_at_once_queue_the_failed_trial_once(dlhpc, tmp_path):
    failing = QUICK_SPEC + "env: {setup: ['sleep 4; exit 3']}\n"
    spec = write(tmp_path / "quick.yaml", failing)
    assert dlhpc("submit", spec, "--runs-dir", tmp_path / "runs").code == 0
    (exp,) = (tmp_path / "runs").iterdir()
    assert dlhpc("status", exp, "--watch", timeout=120).code == 1  # the trial failed
    argv = [sys.executable, "-m", "dlhpc", "resubmit", str(exp)]
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = sorted(p.communicate(timeout=120)[0] for p in procs)
    assert outs[0].startswith("nothing to resubmit") and outs[1].startswith("resubmitted 1 trial(s)"), outs
    assert sorted(p.name for p in exp.glob("job-*.sh")) == ["job-0.sh", "job-1.sh"]
    record = json.loads((exp / "experiment.json").read_text())
    assert len(record["jobs"]) == 2 and len({j["job_id"] for j in record["jobs"]}) == 2


@pytest.mark.slurm
def test_a_job_queued_behind_an_unreadable_answer_keeps_its_folder(slurm_cluster, dlhpc, tmp_path):
    real = shutil.which("sbatch")
    env = fake_commands(tmp_path, sbatch=f'{real} "$@" > "{tmp_path}/real-answer"; echo "sbatch: odd answer"')
    spec = write(tmp_path / "q.yaml", QUICK_SPEC + "resources: {scheduler: slurm, time: '00:02:00'}\n")
    r = dlhpc("submit", spec, "--runs-dir", tmp_path / "runs", env=env)
    try:
        assert r.code == 1, r
        (exp,) = (tmp_path / "runs").iterdir()
        assert f"so {exp} is kept" in r.err and "Traceback" not in r.err
        journal = json.loads((exp / "logs" / "submit-journal.json").read_text())
        assert journal["state"] == "uncertain"
    finally:
        job = (tmp_path / "real-answer").read_text().split()[-1]
        subprocess.run(["scancel", "--", job])


def test_env_var_values_stay_out_of_the_shared_report_and_exports(dlhpc, tmp_path):
    token = "hf_SECRET123"
    text = (
        QUICK_SPEC + f"env: {{vars: {{HF_TOKEN: {token}}}}}\n" + "sweep: {env.vars: [{RUN_TAG: a1}, {RUN_TAG: b2}]}\n"
    )
    exp = finished_local_experiment(dlhpc, tmp_path, text)
    assert dlhpc("report", exp, "-o", tmp_path / "report.html").code == 0
    summary = dlhpc("summary", exp, "--format", "json")
    page = (tmp_path / "report.html").read_text()
    assert token not in page and "&lt;redacted&gt;" in page
    assert "a1" not in summary.out and "<redacted>" in summary.out
    assert token in (exp / "experiment.json").read_text()  # the private record keeps it


@pytest.mark.slow
def test_a_local_trial_is_stopped_at_its_walltime(dlhpc, tmp_path):
    spec = write(tmp_path / "slow.yaml", QUICK_SPEC + "resources: {time: 1}\nenv: {setup: ['sleep 600']}\n")
    t0 = time.monotonic()
    r = dlhpc("run", spec, "--runs-dir", tmp_path / "runs", timeout=200)
    assert r.code == 1 and time.monotonic() - t0 < 150, r
    (exp,) = (tmp_path / "runs").iterdir()
    report = json.loads(dlhpc("status", exp, "--json").out)
    assert report["trials"][0]["state"] == "TIMEOUT", report


def test_plot_writes_through_no_planted_temp_file(dlhpc, tmp_path):
    exp = finished_local_experiment(dlhpc, tmp_path)
    victim = write(tmp_path / "victim.txt", "keep me")
    out = tmp_path / "plots" / "curves.png"
    out.parent.mkdir()
    (out.parent / ".curves.png.tmp.png").symlink_to(victim)  # the old fixed temp name
    r = dlhpc("plot", exp, "-o", out)
    assert r.code == 0, r
    assert victim.read_text() == "keep me" and out.read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize(
    "command,made",
    [
        (["render", "{spec}", "--out-dir", "{out}"], "quick-job-0.sh"),
        (["summary", "{exp}", "--format", "csv", "-o", "{out}/s.csv"], "s.csv"),
        (["report", "{exp}", "-o", "{out}/r.html"], "r.html"),
    ],
    ids=["render", "summary", "report"],
)
def test_files_written_where_asked_follow_the_umask(dlhpc, tmp_path, command, made):
    exp = finished_local_experiment(dlhpc, tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    argv = [a.format(spec=tmp_path / "quick.yaml", exp=exp, out=out) for a in command]
    old = os.umask(0o077)
    try:
        r = dlhpc(*argv)
    finally:
        os.umask(old)
    assert r.code == 0, r
    expected = 0o700 if made.endswith(".sh") else 0o600
    assert (out / made).stat().st_mode & 0o777 == expected


EVIL_PICKLE = """
import pickle, sys
class E:
    def __reduce__(self):
        return (__import__("os").system, ("touch {marker}",))
sys.stdout.buffer.write(pickle.dumps({{"epoch": 1, "model": E()}}))
"""


def test_a_checkpoint_holding_code_is_never_run(dlhpc, tmp_path):
    exp = finished_local_experiment(dlhpc, tmp_path, QUICK_SPEC.replace("epochs: 1", "epochs: 2"))
    (trial,) = [d for d in exp.iterdir() if (d / "trial.json").is_file()]
    marker = tmp_path / "checkpoint-code-ran"
    evil = EVIL_PICKLE.format(marker=marker)
    proc = subprocess.run([sys.executable, "-c", evil], capture_output=True, check=True)
    (trial / "checkpoint.pt").write_bytes(proc.stdout)
    (trial / "result.json").unlink()
    r = dlhpc("resubmit", exp, "--trials", trial.name)
    assert r.code == 0, r
    dlhpc("status", exp, "--watch", timeout=120)
    assert not marker.exists(), "loading the checkpoint ran the code in it"
    assert "Weights only load failed" in (trial / "job.err").read_text()


@pytest.mark.slurm
def test_ctrl_c_after_sbatch_queued_a_job_still_records_it(slurm_cluster, dlhpc, tmp_path):
    real = shutil.which("sbatch")
    started = tmp_path / "sbatch-queued"
    # the job is queued, then sbatch is slow to return: Ctrl-C lands between the two
    env = {**os.environ, **fake_commands(tmp_path, sbatch=f'{real} "$@"; s=$?; touch {started}; sleep 1; exit $s')}
    env.pop("DLHPC_SCHEDULER_TIMEOUT")  # sbatch is slow, not hung
    spec = write(
        tmp_path / "q.yaml", QUICK_SPEC + "resources: {scheduler: slurm, time: '00:02:00', extra: {hold: null}}\n"
    )
    argv = [sys.executable, "-m", "dlhpc", "submit", str(spec), "--runs-dir", str(tmp_path / "runs")]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not started.exists():
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (out, err)
    (exp,) = (tmp_path / "runs").iterdir()
    record = json.loads((exp / "experiment.json").read_text())
    assert len(record["jobs"]) == 1, (record["jobs"], out, err)  # the queued job is in the record, so cancel reaches it
    c = dlhpc("cancel", exp)
    assert c.code == 0 and f"cancelled 1 job(s) of {exp.name}" in c.out, c


@pytest.mark.slurm
def test_resubmit_is_held_to_the_site_policy_of_today(slurm_cluster, dlhpc, tmp_path):
    site = write(tmp_path / "site" / "site.yaml", "site: {policy: {partitions: [debug]}}\n")
    failing = (
        QUICK_SPEC + "resources: {scheduler: slurm, partition: debug, time: '00:02:00'}\nenv: {setup: ['exit 3']}\n"
    )
    spec = write(tmp_path / "f.yaml", failing)
    assert dlhpc("submit", spec, "--runs-dir", tmp_path / "runs", env={"DLHPC_SITE": str(site)}).code == 0
    (exp,) = (tmp_path / "runs").iterdir()
    assert dlhpc("status", exp, "--watch", timeout=120).code == 1  # failed
    site.write_text("site: {policy: {partitions: [short]}}\n")  # the admins changed the policy since
    r = dlhpc("resubmit", exp, env={"DLHPC_SITE": str(site)})
    assert r.code == 2, r
    assert "resources.partition 'debug' is not allowed by the site policy" in r.err
    assert len(json.loads((exp / "experiment.json").read_text())["jobs"]) == 1  # nothing was queued


def test_cancel_of_a_foreground_run_from_another_terminal(dlhpc, tmp_path):
    spec = write(tmp_path / "long.yaml", QUICK_SPEC.replace("epochs: 1", "epochs: 500"))
    argv = [sys.executable, "-m", "dlhpc", "run", str(spec), "--runs-dir", str(tmp_path / "runs")]
    run = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    deadline = time.monotonic() + 60
    while not list((tmp_path / "runs").glob("*/*/metrics.jsonl")):
        assert time.monotonic() < deadline and run.poll() is None, run.communicate()
        time.sleep(0.2)
    (exp,) = (tmp_path / "runs").iterdir()
    c = dlhpc("cancel", exp)
    out, err = run.communicate(timeout=60)
    assert c.code == 0 and "cancelled 1 job(s)" in c.out, c
    assert run.returncode == 1 and "cancelled" in out and "internal error" not in err, (out, err)

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

from conftest import fake_commands, make_experiment, write

SLURM_SPEC = "name: acct\nresources: {scheduler: slurm, account: %s}\n"


def render(dlhpc, tmp_path, text, *args):
    spec = write(tmp_path / "exp.yaml", text)
    return dlhpc("render", spec, *args)


def test_an_account_yaml_would_read_as_octal_is_refused_asking_for_quotes(dlhpc, tmp_path):
    r = render(dlhpc, tmp_path, SLURM_SPEC % "0123")
    assert r.code == 2, r
    assert "exp.yaml:2: resources.account: YAML reads 0123 as the number 83" in r.err
    assert 'put it in quotes: "0123"' in r.err and "Traceback" not in r.err


def test_a_quoted_account_reaches_the_script_exactly(dlhpc, tmp_path):
    r = render(dlhpc, tmp_path, SLURM_SPEC % '"0123"')
    assert r.code == 0, r
    assert "#SBATCH --account=0123\n" in r.out


def test_a_set_account_is_checked_like_the_file(dlhpc, tmp_path):
    r = render(dlhpc, tmp_path, SLURM_SPEC % "proj", "--set", "resources.account=0x1F")
    assert r.code == 2, r
    assert "--set resources.account=0x1F: resources.account: YAML reads 0x1F as the number 31" in r.err


def test_an_env_value_yaml_would_retype_is_refused(dlhpc, tmp_path):
    r = render(dlhpc, tmp_path, "name: a\nenv: {vars: {RUN_ID: 1_000}}\n")
    assert r.code == 2, r
    assert "env.vars: RUN_ID: YAML reads 1_000 as the number 1000" in r.err


@pytest.mark.parametrize("runs_dir", ["0755", "r #1"])
def test_runs_dir_is_taken_as_typed(dlhpc, tmp_path, runs_dir):
    spec = write(tmp_path / "exp.yaml", "name: a\ntrain: {epochs: 1}\n")
    r = dlhpc("render", spec, "--runs-dir", tmp_path / runs_dir)
    assert r.code == 0, r
    assert f"{tmp_path / runs_dir}/a-" in r.out


def test_a_template_reaching_python_internals_is_refused_and_runs_nothing(dlhpc, tmp_path):
    marker = tmp_path / "pwned"
    payload = "{{ cycler.__init__.__globals__.os.system('touch " + str(marker) + "') }}"
    write(tmp_path / "evil.sh.j2", "#!/bin/bash\n" + payload + "\n")
    r = render(dlhpc, tmp_path, "name: a\ntemplate: ./evil.sh.j2\n")
    assert r.code == 2, r
    assert "evil.sh.j2:2: template error" in r.err and "sandbox" in r.err
    assert not marker.exists()


@pytest.mark.parametrize(
    "text,needle",
    [
        ("name: a\nsweep: {train.seed: " + "[" * 3000 + "]" * 3000 + "}\n", "nested too deeply"),
        ("name: a\nresources: {time: " + "5" * 5000 + "}\n", "bad.yaml:2: invalid value"),
        ('name: a\nresources: {time: "' + "5" * 5000 + '"}\n', "resources.time: must be a walltime"),
        ('name: a\nresources: {mem: "' + "5" * 5000 + 'G"}\n', "resources.mem: must be memory"),
        ('name: a\nresources: {mem: "65T"}\n', "at most 64T"),
        ('name: a\nresources: {time: "400-00:00:00"}\n', "at most 365 days"),
    ],
    ids=["deep-nesting", "long-time-number", "long-time-text", "long-mem", "huge-mem", "year-long-time"],
)
def test_hostile_values_get_one_clear_line(dlhpc, tmp_path, text, needle):
    spec = write(tmp_path / "bad.yaml", text)
    r = dlhpc("validate", spec)
    assert r.code == 2, r
    assert needle in r.err and "Traceback" not in r.err and "internal error" not in r.err, r


def test_an_alias_bomb_through_set_is_refused(dlhpc, tmp_path):
    levels = ['&a ["x","x","x","x","x","x","x","x","x","x"]']
    levels += [f"&{chr(98 + i)} [" + ",".join([f"*{chr(97 + i)}"] * 10) + "]" for i in range(6)]
    value = "[" + ", ".join(levels) + "]"
    spec = write(tmp_path / "ok.yaml", "name: a\n")
    r = dlhpc("validate", spec, "--set", f"env.setup={value}")
    assert r.code == 2, r
    assert "expands to more than" in r.err


def test_init_into_a_missing_folder_is_refused(dlhpc, tmp_path):
    r = dlhpc("init", tmp_path / "nowhere" / "my.yaml")
    assert r.code == 2, r
    assert "nowhere" in r.err and "does not exist" in r.err and "Traceback" not in r.err


def test_init_honours_the_umask(dlhpc, tmp_path):
    old = os.umask(0o077)
    try:
        r = dlhpc("init", tmp_path / "my.yaml")
    finally:
        os.umask(old)
    assert r.code == 0, r
    assert (tmp_path / "my.yaml").stat().st_mode & 0o777 == 0o600


# ---- processes: cancel signals only the runner it verified ---------------------------------------

QUICK = "name: quick\nmodel: {name: softmax}\ntrain: {epochs: 1, batch_size: 256}\ndata: {train_subset: 512}\n"


def finished_local_experiment(dlhpc, tmp_path, text=QUICK):
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


@pytest.mark.parametrize("pid", [-1, 0, 1])
def test_a_recorded_pid_that_names_a_process_group_is_never_signalled(dlhpc, tmp_path, pid):
    from dlhpc import processes

    assert not processes.signal_if_running({"pid": pid, "start": 0, "uid": os.getuid()}, 0)


def test_a_reused_pid_is_not_the_recorded_process():
    from dlhpc import processes

    proc = subprocess.Popen(["sleep", "60"])
    try:
        me = processes.identity(proc.pid)
        assert processes.is_running(me)
        assert not processes.is_running({**me, "start": me["start"] - 1})  # same PID, another start
    finally:
        proc.kill()
        proc.wait()


def test_trials_of_a_dead_local_runner_end_as_failed(dlhpc, tmp_path):
    spec = write(tmp_path / "two.yaml", QUICK.replace("epochs: 1", "epochs: 50") + "sweep: {train.seed: [0, 1]}\n")
    r = dlhpc("submit", spec, "--runs-dir", tmp_path / "runs")
    assert r.code == 0, r
    (exp,) = (tmp_path / "runs").iterdir()
    runner = json.loads((exp / "logs" / "local-jobs.json").read_text())["runner"]
    os.kill(runner["pid"], signal.SIGKILL)
    watch = dlhpc("status", exp, "--watch", "--json", timeout=60)
    report = json.loads(dlhpc("status", exp, "--json").out)
    assert watch.code == 1 and [t["state"] for t in report["trials"]] == ["FAILED", "FAILED"], report


# ---- experiment references ----------------------------------------------------------------------


@pytest.mark.parametrize("ref", ["", "*", "quick-2*", "qui", "../runs"])
def test_an_experiment_reference_is_exact(dlhpc, tmp_path, ref):
    exp = finished_local_experiment(dlhpc, tmp_path)
    r = dlhpc("cancel", ref, "--runs-dir", tmp_path / "runs")
    assert r.code == 2, r
    assert f"no experiment {ref!r}" in r.err and exp.name in r.err and "Traceback" not in r.err


# ---- who may write an experiment ---------------------------------------------------------------


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
        exp = finished_local_experiment(dlhpc, tmp_path, QUICK + "share: group\n")
    finally:
        os.umask(old)
    assert exp.stat().st_mode & 0o777 == 0o750
    assert [p for p in exp.rglob("*") if p.stat().st_mode & 0o022] == []


def test_a_runs_folder_others_can_write_is_refused_with_a_fix(dlhpc, tmp_path):
    shared = tmp_path / "project"
    shared.mkdir()
    os.chmod(shared, 0o2775)  # a setgid, group-writable project folder
    spec = write(tmp_path / "quick.yaml", QUICK)
    r = dlhpc("submit", spec, "--runs-dir", shared / "runs")
    assert r.code == 2, r
    assert f"{shared} is writable by others" in r.err and f"chmod +t {shared}" in r.err
    assert not (shared / "runs").exists() or not any((shared / "runs").iterdir())


def test_a_job_refuses_a_pickle_others_could_have_replaced(tmp_path):
    folder = tmp_path / "exp" / ".submitit"
    folder.mkdir(parents=True, mode=0o700)
    os.chmod(tmp_path / "exp", 0o700)
    pickle = folder / "77_submitted.pkl"
    pickle.write_bytes(b"not read")
    os.chmod(pickle, 0o664)
    env = {**os.environ, "SLURM_JOB_ID": "77", "SUBMITIT_EXECUTOR": "slurm"}
    proc = subprocess.run(
        [sys.executable, "-m", "dlhpc.schedulers.job_entry", str(folder)], capture_output=True, text=True, env=env
    )
    assert proc.returncode == 3, proc.stderr
    assert f"job pickle {pickle} is writable by its group" in proc.stderr


# ---- the site policy governs every submitted script, and nothing else ---------------------------

POLICY_SITE = """resources: {scheduler: slurm}
site:
  policy:
    partitions: [debug]
    accounts: [proj]
    max_gpus_per_node: 1
    required: [resources.account]
"""


def policy_env(tmp_path):
    return {"DLHPC_SITE": str(write(tmp_path / "site" / "site.yaml", POLICY_SITE))}


@pytest.mark.parametrize(
    "extra,instead",
    [
        ("{partition: bigmem}", "Use resources.partition instead"),
        ("{A: other}", "Use resources.account instead"),
        ('{gres: "gpu:8"}', "Use resources.gpus_per_node instead"),
        ('{l: "select=2:ngpus=8"}', "Use resources.nodes instead"),
    ],
)
def test_extra_directives_cannot_override_checked_ones(dlhpc, tmp_path, extra, instead):
    spec = write(tmp_path / "x.yaml", f"name: x\nresources: {{account: proj, extra: {extra}}}\n")
    r = dlhpc("render", spec, env=policy_env(tmp_path))
    assert r.code == 2, r
    assert "x.yaml:2: resources.extra." in r.err and instead in r.err, r


def test_a_local_spec_sweeping_onto_a_cluster_is_held_to_the_policy(dlhpc, tmp_path):
    spec = write(
        tmp_path / "x.yaml",
        "name: x\nresources: {scheduler: local, account: proj, partition: bigmem}\n"
        "sweep: {resources.scheduler: [slurm]}\n",
    )
    r = dlhpc("validate", spec, env=policy_env(tmp_path))
    assert r.code == 2, r
    assert "resources.partition 'bigmem' is not allowed by the site policy" in r.err


def test_read_only_commands_ignore_a_required_key(dlhpc, tmp_path):
    exp = finished_local_experiment(dlhpc, tmp_path)
    env = policy_env(tmp_path)
    for command in ("status", "summary", "cancel"):
        r = dlhpc(command, exp.name, "--runs-dir", tmp_path / "runs", env=env)
        assert r.code == 0, (command, r)


# ---- correctness: state words and host lists -----------------------------------------------------


# where each backend keeps its tables of the scheduler's words
STATE_TABLES = {
    "slurm": "dlhpc.schedulers.slurm.queue",
    "pbs": "dlhpc.schedulers.pbs",
    "local": "dlhpc.schedulers.local",
}


def test_every_backend_has_its_state_tables_checked():
    from dlhpc.schedulers import REGISTRY

    assert set(STATE_TABLES) == set(REGISTRY)


@pytest.mark.parametrize("name", sorted(STATE_TABLES))
def test_every_state_a_backend_can_report_is_a_dlhpc_state(name):
    import importlib

    from dlhpc.states import STATES

    module = importlib.import_module(STATE_TABLES[name])
    words = set(getattr(module, "STATES", {}).values()) | set(getattr(module, "EXIT_STATES", {}).values())
    words |= set(getattr(module, "FINAL", ()))
    assert words and words <= set(STATES), words - set(STATES)


def test_a_pbs_job_killed_for_memory_is_failed_and_says_why():
    from dlhpc.schedulers.pbs import exit_reason, map_state

    assert map_state("F", "-27") == "FAILED"
    assert "out of memory" in exit_reason("-27")


@pytest.mark.parametrize(
    "text,hosts",
    [
        ("rack[1-2]n[01-02]", ["rack1n01", "rack1n02", "rack2n01", "rack2n02"]),
        ("n[1-3,7],gpu01", ["n1", "n2", "n3", "n7", "gpu01"]),
        ("a[08-10]b,c[1,3]", ["a08b", "a09b", "a10b", "c1", "c3"]),
    ],
)
def test_host_lists_expand_like_scontrol(text, hosts):
    from dlhpc.hostlist import expand_hostlist

    assert expand_hostlist(text) == hosts


# ---- races and signals: no record lost ----------------------------------------------------------


def test_two_resubmits_at_once_queue_the_failed_trial_once(dlhpc, tmp_path):
    failing = QUICK + "env: {setup: ['sleep 4; exit 3']}\n"
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
    spec = write(tmp_path / "q.yaml", QUICK + "resources: {scheduler: slurm, time: '00:02:00'}\n")
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


def test_the_record_is_completed_from_the_journal(tmp_path):
    from dlhpc.results.rows import read_record
    from dlhpc.submission.journal import Journal

    exp = tmp_path / "exp"
    (exp / "logs").mkdir(parents=True)
    (exp / "experiment.json").write_text(json.dumps({"name": "x", "scheduler": "slurm", "jobs": [], "trials": []}))
    journal = Journal(exp, ["job-0.sh"])
    journal.append({"job_id": "4242_0", "trial": "000-abc", "script": "job-0.sh"})
    # dlhpc was killed here, before experiment.json was written
    assert [j["job_id"] for j in read_record(exp)["jobs"]] == ["4242_0"]


# ---- secrets and markup -------------------------------------------------------------------------


def test_user_text_with_rich_markup_prints_as_written(dlhpc, tmp_path):
    result = {"state": "FAILED", "error": "RuntimeError: bad [/x] value"}
    make_experiment(tmp_path / "runs", [("000-aaaaaa", {"train.lr": "[/x]"}, {"result.json": json.dumps(result)})])
    for command in ("status", "summary"):
        r = dlhpc(command, "exp", "--runs-dir", tmp_path / "runs")
        assert r.code == 1 and "internal error" not in r.err, (command, r)
        assert "[/x]" in r.out, (command, r)


def test_env_var_values_stay_out_of_the_shared_report_and_exports(dlhpc, tmp_path):
    token = "hf_SECRET123"
    text = QUICK + f"env: {{vars: {{HF_TOKEN: {token}}}}}\n" + "sweep: {env.vars: [{RUN_TAG: a1}, {RUN_TAG: b2}]}\n"
    exp = finished_local_experiment(dlhpc, tmp_path, text)
    assert dlhpc("report", exp, "-o", tmp_path / "report.html").code == 0
    summary = dlhpc("summary", exp, "--format", "json")
    page = (tmp_path / "report.html").read_text()
    assert token not in page and "&lt;redacted&gt;" in page
    assert "a1" not in summary.out and "<redacted>" in summary.out
    assert token in (exp / "experiment.json").read_text()  # the private record keeps it


# ---- pbs_launch's ssh fallback ----------------------------------------------------------------

FAKE_SSH = 'while [[ "$1" == -* ]]; do shift 2; done; shift; exec bash -c "$*"  # as sshd: one line, a shell'

RANK = """import os, sys, time
out = sys.argv[1]
if os.environ["DLHPC_PBS_RANK"] == "1":
    open(out + ".pid", "w").write(str(os.getpid()))
    open(out, "w").write(sys.argv[2])
    time.sleep(float(sys.argv[3]))
"""


def ssh_launch(tmp_path, words: str, sleep_s: float):
    env = {**os.environ, **fake_commands(tmp_path, ssh=FAKE_SSH), "DLHPC_PBS_REMOTE": "ssh"}
    env["PBS_NODEFILE"] = str(write(tmp_path / "nodes", "here\nthere\n"))
    rank = write(tmp_path / "rank.py", RANK)
    out = tmp_path / "rank1.out"
    argv = [sys.executable, "-m", "dlhpc.schedulers.pbs_launch", "--", sys.executable, rank, out, words, str(sleep_s)]
    return subprocess.Popen(argv, env=env, cwd=tmp_path), out


def test_ssh_started_ranks_keep_their_arguments(tmp_path):
    launcher, out = ssh_launch(tmp_path, "two  spaces and 'quotes' $HOME", 0)
    assert launcher.wait(timeout=60) == 0
    assert out.read_text() == "two  spaces and 'quotes' $HOME"


def test_a_killed_launcher_leaves_no_rank_behind_on_other_nodes(tmp_path):
    from dlhpc import processes

    launcher, out = ssh_launch(tmp_path, "x", 300)
    pid_file = out.with_name(out.name + ".pid")
    deadline = time.monotonic() + 30
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline and launcher.poll() is None
        time.sleep(0.1)
    rank = processes.identity(int(pid_file.read_text()))
    launcher.kill()
    launcher.wait()
    deadline = time.monotonic() + 10
    while processes.is_running(rank) and time.monotonic() < deadline:
        time.sleep(0.1)
    alive = processes.is_running(rank)
    if alive:
        os.kill(rank["pid"], signal.SIGKILL)
    assert not alive, "the remote rank outlived its launcher"


# ---- a local run stays within the machine and its walltime ----------------------------------------


@pytest.mark.parametrize("command", ["run", "submit"])
def test_a_local_trial_with_more_ranks_than_the_machine_holds_is_refused(dlhpc, tmp_path, command):
    spec = write(tmp_path / "big.yaml", QUICK + "resources: {nodes: 4096, tasks_per_node: 512}\n")
    r = dlhpc(command, spec, "--runs-dir", tmp_path / "runs")
    assert r.code == 2, r
    assert "asks for 2,097,152 ranks" in r.err and f"{os.cpu_count()} cores" in r.err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


@pytest.mark.slow
def test_a_local_trial_is_stopped_at_its_walltime(dlhpc, tmp_path):
    spec = write(tmp_path / "slow.yaml", QUICK + "resources: {time: 1}\nenv: {setup: ['sleep 600']}\n")
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


# ---- files written where the user asked honour the umask; no symlink is followed ---------------


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


def test_data_fetch_does_not_follow_a_planted_lock_link(dlhpc, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(os.environ["DLHPC_DATA"], root)
    victim = write(tmp_path / "victim.txt", "keep me")
    (root / ".dlhpc-fetch.lock").symlink_to(victim)
    r = dlhpc("data", "fetch", "--root", root)
    assert r.code == 2 and "is a symbolic link" in r.err and "Traceback" not in r.err, r
    assert victim.read_text() == "keep me"


EVIL_PICKLE = """
import pickle, sys
class E:
    def __reduce__(self):
        return (__import__("os").system, ("touch {marker}",))
sys.stdout.buffer.write(pickle.dumps({{"epoch": 1, "model": E()}}))
"""


def test_a_checkpoint_holding_code_is_never_run(dlhpc, tmp_path):
    exp = finished_local_experiment(dlhpc, tmp_path, QUICK.replace("epochs: 1", "epochs: 2"))
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
    spec = write(tmp_path / "q.yaml", QUICK + "resources: {scheduler: slurm, time: '00:02:00', extra: {hold: null}}\n")
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
    failing = QUICK + "resources: {scheduler: slurm, partition: debug, time: '00:02:00'}\nenv: {setup: ['exit 3']}\n"
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
    spec = write(tmp_path / "long.yaml", QUICK.replace("epochs: 1", "epochs: 500"))
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

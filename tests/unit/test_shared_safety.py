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

from conftest import QUICK_SPEC, fake_commands, make_experiment, policy_env, write

SLURM_SPEC = "name: acct\nresources: {scheduler: slurm, account: %s}\n"


def render_spec(dlhpc, tmp_path, text, *args):
    spec = write(tmp_path / "exp.yaml", text)
    return dlhpc("render", spec, *args)


def test_an_account_yaml_would_read_as_octal_is_refused_asking_for_quotes(dlhpc, tmp_path):
    r = render_spec(dlhpc, tmp_path, SLURM_SPEC % "0123")
    assert r.code == 2, r
    assert "exp.yaml:2: resources.account: YAML reads 0123 as the number 83" in r.err
    assert 'put it in quotes: "0123"' in r.err and "Traceback" not in r.err


def test_a_quoted_account_reaches_the_script_exactly(dlhpc, tmp_path):
    r = render_spec(dlhpc, tmp_path, SLURM_SPEC % '"0123"')
    assert r.code == 0, r
    assert "#SBATCH --account=0123\n" in r.out


def test_a_set_account_is_checked_like_the_file(dlhpc, tmp_path):
    r = render_spec(dlhpc, tmp_path, SLURM_SPEC % "proj", "--set", "resources.account=0x1F")
    assert r.code == 2, r
    assert "--set resources.account=0x1F: resources.account: YAML reads 0x1F as the number 31" in r.err


def test_an_env_value_yaml_would_retype_is_refused(dlhpc, tmp_path):
    r = render_spec(dlhpc, tmp_path, "name: a\nenv: {vars: {RUN_ID: 1_000}}\n")
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
    r = render_spec(dlhpc, tmp_path, "name: a\ntemplate: ./evil.sh.j2\n")
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
    spec = write(tmp_path / "two.yaml", QUICK_SPEC.replace("epochs: 1", "epochs: 50") + "sweep: {train.seed: [0, 1]}\n")
    r = dlhpc("submit", spec, "--runs-dir", tmp_path / "runs")
    assert r.code == 0, r
    (exp,) = (tmp_path / "runs").iterdir()
    runner = json.loads((exp / "logs" / "local-jobs.json").read_text())["runner"]
    os.kill(runner["pid"], signal.SIGKILL)
    watch = dlhpc("status", exp, "--watch", "--json", timeout=60)
    report = json.loads(dlhpc("status", exp, "--json").out)
    assert watch.code == 1 and [t["state"] for t in report["trials"]] == ["FAILED", "FAILED"], report


def test_a_runs_folder_others_can_write_is_refused_with_a_fix(dlhpc, tmp_path):
    shared = tmp_path / "project"
    shared.mkdir()
    os.chmod(shared, 0o2775)  # a setgid, group-writable project folder
    spec = write(tmp_path / "quick.yaml", QUICK_SPEC)
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


def test_user_text_with_rich_markup_prints_as_written(dlhpc, tmp_path):
    result = {"state": "FAILED", "error": "RuntimeError: bad [/x] value"}
    make_experiment(tmp_path / "runs", [("000-aaaaaa", {"train.lr": "[/x]"}, {"result.json": json.dumps(result)})])
    for command in ("status", "summary"):
        r = dlhpc(command, "exp", "--runs-dir", tmp_path / "runs")
        assert r.code == 1 and "internal error" not in r.err, (command, r)
        assert "[/x]" in r.out, (command, r)


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


@pytest.mark.parametrize("command", ["run", "submit"])
def test_a_local_trial_with_more_ranks_than_the_machine_holds_is_refused(dlhpc, tmp_path, command):
    spec = write(tmp_path / "big.yaml", QUICK_SPEC + "resources: {nodes: 4096, tasks_per_node: 512}\n")
    r = dlhpc(command, spec, "--runs-dir", tmp_path / "runs")
    assert r.code == 2, r
    assert "asks for 2,097,152 ranks" in r.err and f"{os.cpu_count()} cores" in r.err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_data_fetch_does_not_follow_a_planted_lock_link(dlhpc, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(os.environ["DLHPC_DATA"], root)
    victim = write(tmp_path / "victim.txt", "keep me")
    (root / ".dlhpc-fetch.lock").symlink_to(victim)
    r = dlhpc("data", "fetch", "--root", root)
    assert r.code == 2 and "is a symbolic link" in r.err and "Traceback" not in r.err, r
    assert victim.read_text() == "keep me"


# ---- issue 33: the second audit's smaller findings and the bugs seen on the way ----------------


def test_a_planted_trial_spec_of_nested_aliases_is_refused_in_bounded_time(tmp_path, budget):
    """Finding 9: read_trial_spec fell back to plain yaml.safe_load (MemoryError after 17 s at 2 GB)."""
    from dlhpc.errors import UserError
    from dlhpc.fsutil import read_trial_spec

    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
        f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
        for i in range(8)
    )
    path = write(tmp_path / "spec.yaml", bomb)
    started = time.monotonic()
    with pytest.raises(UserError, match="expands to more than"):
        read_trial_spec(path)
    assert time.monotonic() - started < budget(1)


def test_a_uri_password_is_never_echoed(dlhpc, tmp_path):
    """Finding 12: `--to http://user:password@host/` came back in the error (and notebooks kept it)."""
    from dlhpc.results.redact import uri

    exp = make_experiment(tmp_path / "runs", [("000-aaaaaa", {}, {})])
    r = dlhpc("export", "mlflow", exp, "--to", "http://me:pa55w0rd@127.0.0.1:9/")
    assert r.code == 2 and "pa55w0rd" not in r.err + r.out and "me:***@127.0.0.1" in r.err, r
    assert uri("see https://u:p@h/x and ftp://h/") == "see https://u:***@h/x and ftp://h/"


def test_resources_sections_carry_only_their_own_defaults(dlhpc, tmp_path):
    """Other bug: schema's {"flavor": "openpbs"} landed in every nested mapping of resources."""
    from dlhpc.spec.load import load_spec

    res = load_spec(write(tmp_path / "exp.yaml", "name: x\n")).data["resources"]
    assert res["pbs"] == {"flavor": "openpbs"}
    nested = {k: v for k, v in res.items() if isinstance(v, dict) and k != "pbs"}
    assert nested and all("flavor" not in v for v in nested.values()), nested


def test_a_reservation_whose_start_does_not_parse_is_still_checked(fixed_clock):
    """Other bug: reservations._span raised OverflowError for a start the scheduler printed oddly."""
    import math

    from dlhpc.schedulers.reservations import Reservation, problems

    now = time.time()
    odd = Reservation("ws", "ACTIVE", True, start=math.inf, end=now + 600)
    (said,) = problems({"reservation": "ws", "time": "01:00:00"}, [odd], user="me", now=now)
    assert "has left (00:10:00, " in said and said.endswith("ask for at most 00:10:00"), said


@pytest.mark.parametrize(
    "text",
    [
        "name: x\nresources: {extra: {partition: big}}\n",
        "name: x\nenv: {setup: ['if then']}\n",
        "name: x\nprogram: {script: nope.py}\n",
        "name: x\nprogram: {code: ./nowhere, script: t.py}\n",
        "name: x\nprogram: {python: /usr/bin/python3}\n",
    ],
)
def test_a_message_names_its_key_once(dlhpc, tmp_path, text):
    """Other bug: `resources.extra.partition: resources.extra.partition: ...` repeated its prefix."""
    import re

    r = dlhpc("validate", write(tmp_path / "exp.yaml", text))
    assert r.code == 2, r
    assert not re.search(r"\b([a-z_]+\.[a-z_.]+): \1\b", r.err), r.err


def test_output_into_a_missing_folder_is_one_line(dlhpc, tmp_path):
    exp = make_experiment(tmp_path / "runs", [("000-aaaaaa", {}, {})])
    r = dlhpc("summary", exp, "--format", "csv", "-o", tmp_path / "no" / "such.csv", "--no-accounting")
    assert r.code == 2 and f"there is no folder {tmp_path / 'no'}" in r.err, r


def test_a_spokes_failure_is_not_overwritten_by_rank_0s_completion(tmp_path):
    """Other bug: a result.json ended COMPLETED with a lost_node and an error (rank 0 overwrote the
    FAILED the spoke's runner had recorded)."""
    from dlhpc.node.identity import Identity
    from dlhpc.node.runner import TrialRun
    from dlhpc.plan import experiment
    from dlhpc.spec.load import load_spec

    spec = write(tmp_path / "code" / "exp.yaml", f"name: t\nprogram: {{script: t.py}}\nruns_dir: {tmp_path / 'runs'}\n")
    write(tmp_path / "code" / "t.py", "pass\n")
    p = experiment.materialize(experiment.plan(load_spec(spec)))
    trial = p.exp_dir / p.trials[0].id
    run = TrialRun(trial, Identity(rank=0, world_size=2, hostnames=["n1", "n2"], job_id="9", launcher="test"))
    spoke_said = {"state": "FAILED", "lost_node": "n1", "error": "node n1 was lost: its line closed"}
    write(trial / "result.json", json.dumps(spoke_said))
    run._record_completion()
    result = json.loads((trial / "result.json").read_text())
    assert (result["state"], result["lost_node"]) == ("FAILED", "n1"), result

"""For admins, against the live SLURM cluster with a site file: no training on the login node
by accident, the site policy at validate time, templates checked in one command, usage."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import POLICY, ROOT, fake_commands, site, wait_finished, write

TINY = ("--set", "train.epochs=1", "--set", "data.train_subset=1000")


def test_login_node_runs_are_refused_where_the_site_names_a_cluster(dlhpc, tmp_path):
    env = site(tmp_path, "resources:\n  scheduler: slurm\n")
    runs = ("--runs-dir", tmp_path / "runs")
    r = dlhpc("run", ROOT / "jobs" / "mnist-softmax.yaml", *runs, *TINY, env=env)
    assert r.code == 2 and "Traceback" not in r.err, r
    assert "login node of a slurm cluster" in r.err and "site.yaml:2" in r.err
    assert "dlhpc submit SPEC" in r.err and "salloc" in r.err and "--here" in r.err
    assert not (tmp_path / "runs").exists()
    assert dlhpc("run", ROOT / "jobs" / "mnist-softmax.yaml", "--here", *runs, *TINY, env=env).code == 0
    allowed = site(tmp_path / "b", "resources:\n  scheduler: slurm\nsite:\n  allow_login_node_runs: true\n")
    assert dlhpc("run", ROOT / "jobs" / "mnist-softmax.yaml", *runs, *TINY, env=allowed).code == 0


def test_without_a_site_file_a_scheduler_on_path_only_warns(dlhpc, tmp_path):
    env = fake_commands(tmp_path, sbatch="exit 0")
    r = dlhpc("run", ROOT / "jobs" / "mnist-softmax.yaml", "--runs-dir", tmp_path / "runs", *TINY, env=env)
    assert r.code == 0, r
    assert [line for line in r.err.splitlines() if "commands are on PATH" in line]


@pytest.mark.slurm
def test_inside_an_allocation_run_is_allowed(slurm_cluster, tmp_path):
    env = {**os.environ, **site(tmp_path, "resources:\n  scheduler: slurm\n")}
    argv = [
        "salloc",
        "-N1",
        "--time=5",
        sys.executable,
        "-m",
        "dlhpc",
        "run",
        str(ROOT / "jobs" / "mnist-softmax.yaml"),
        "--runs-dir",
        str(tmp_path / "runs"),
        *TINY,
    ]
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "COMPLETED" in proc.stdout


@pytest.mark.slurm
def test_doctor_lists_the_policy_in_force(slurm_cluster, dlhpc, tmp_path):
    spec = write(tmp_path / "ok.yaml", "name: ok\nresources: {account: workshop, partition: debug}\n")
    r = dlhpc("doctor", spec, env=site(tmp_path, POLICY))
    for rule in ("partitions", "max_nodes", "max_total_gpus", "required"):
        assert f"site policy {rule}" in r.out, (rule, r.out)
    assert "site.yaml:7: site.policy.max_nodes" in r.out


OVERRIDE = """{% extends "shipped/slurm/default.sh.j2" %}
{% block extra_directives %}
{{ super() }}#SBATCH --mail-type=NONE
{% endblock %}
"""


@pytest.mark.slurm
def test_templates_check_passes_a_good_override_and_fails_broken_ones(slurm_cluster, dlhpc, tmp_path):
    good = tmp_path / "good"
    write(good / "templates" / "slurm" / "default.sh.j2", OVERRIDE)
    site_file = write(good / "site.yaml", "resources:\n  scheduler: slurm\nsite:\n  template_dir: templates\n")
    r = dlhpc("templates", "check", "--site", site_file)
    assert r.code == 0, r
    assert "all passed" in r.out and "site:slurm/default.sh.j2: extra_directives" in r.out
    assert "shipped:slurm/default.sh.j2: directives" in r.out and "sbatch: Job" in r.out

    shell = tmp_path / "shell"
    write(
        shell / "templates" / "slurm" / "default.sh.j2",
        OVERRIDE.replace(
            "#SBATCH --mail-type=NONE", "#SBATCH --mail-type=NONE\n{% endblock %}\n{% block launch %}\nif then fi\n"
        ),
    )
    write(shell / "site.yaml", "resources:\n  scheduler: slurm\nsite:\n  template_dir: templates\n")
    r = dlhpc("templates", "check", "--site", shell / "site.yaml", ROOT / "jobs" / "mnist-cnn.yaml")
    assert r.code == 1 and "failed: bash -n" in r.out and "fix: fix the shell in" in r.out, r

    refused = tmp_path / "refused"
    write(refused / "templates" / "slurm" / "default.sh.j2", OVERRIDE.replace("--mail-type=NONE", "--nodes=abc"))
    write(refused / "site.yaml", "resources:\n  scheduler: slurm\nsite:\n  template_dir: templates\n")
    r = dlhpc("templates", "check", "--site", refused / "site.yaml", ROOT / "jobs" / "mnist-cnn.yaml")
    assert r.code == 1 and "sbatch --test-only" in r.out and "the scheduler refuses the script" in r.out, r


def sacct_comment(job: str) -> str:
    return subprocess.run(
        ["sacct", "-X", "-n", "-P", "-j", job, "-o", "Comment"], capture_output=True, text=True
    ).stdout


@pytest.mark.slurm
def test_usage_reports_dlhpc_jobs_with_estimate_and_actual(slurm_cluster, dlhpc, tmp_path):
    charge = site(tmp_path, "site:\n  charge_rates: {core_hour: 2.0, unit: SU}\n")
    r = dlhpc("submit", ROOT / "jobs" / "ci-smoke.yaml", "--runs-dir", tmp_path / "runs", "--set", "train.epochs=1")
    assert r.code == 0, r
    (exp,) = (tmp_path / "runs").iterdir()
    wait_finished(dlhpc, exp)
    job = json.loads((exp / "experiment.json").read_text())["jobs"][0]["job_id"].split("_")[0]
    deadline = time.monotonic() + 60  # slurmdbd records the comment with the finished job's record
    while "dlhpc:ci-smoke:" not in sacct_comment(job):
        assert time.monotonic() < deadline, sacct_comment(job)
        time.sleep(1)
    u = dlhpc("usage", "--since", "now-1hours", "--json", "--scheduler", "slurm", env=charge)
    assert u.code == 0, u
    (root,) = [line for line in json.loads(u.out) if line["user"] == "root"]
    assert root["trials"] >= 2 and root["jobs"] >= 1 and root["unit"] == "SU"
    assert 0 < root["core_hours"] < root["est_core_hours"]  # used less than the walltime x resources estimate
    assert root["charge"] == pytest.approx(2.0 * root["core_hours"])
    table = dlhpc("usage", "--since", "now-1hours", "--scheduler", "slurm", env=charge)
    assert table.code == 0 and "root" in table.out and "SU" in table.out, table
    csv_out = dlhpc("usage", "--since", "now-1hours", "--csv", "--scheduler", "slurm")
    assert csv_out.out.splitlines()[0].startswith("user,account,jobs,experiments,trials,core_hours")
    everyone = dlhpc("usage", "--since", "now-1hours", "--all-users", "--json", "--scheduler", "slurm")
    assert everyone.code == 0 and "operator" not in everyone.err  # root may


@pytest.mark.slurm
def test_usage_all_users_says_when_it_lacks_the_rights(slurm_cluster):
    # A real unprivileged user: `nobody`, running dlhpc from a copy it can read with Debian's python3
    # (pytest's tmp folders are private to root, so the copy goes in a folder of its own).
    import tempfile

    import yaml

    if not os.path.exists("/usr/bin/python3"):
        pytest.skip("no /usr/bin/python3 for the unprivileged user")
    home = Path(tempfile.mkdtemp(prefix="dlhpc-nobody-"))
    try:
        shutil.copytree(ROOT / "src" / "dlhpc", home / "lib" / "dlhpc")
        shutil.copytree(Path(yaml.__file__).parent, home / "lib" / "yaml")
        for path in [home, *home.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        argv = [
            "runuser",
            "-u",
            "nobody",
            "--",
            "env",
            f"HOME={home}",
            f"PYTHONPATH={home / 'lib'}",
            "/usr/bin/python3",
            "-m",
            "dlhpc",
            "usage",
            "--all-users",
            "--json",
            "--scheduler",
            "slurm",
            "--since",
            "now-1hours",
        ]
        proc = subprocess.run(argv, capture_output=True, text=True, cwd=home, timeout=60)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    assert proc.returncode == 0, proc.stderr
    assert "--all-users needs the rights sacct gives an operator" in proc.stderr
    assert json.loads(proc.stdout) == []  # nobody has run no dlhpc jobs

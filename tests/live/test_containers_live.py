"""Containers for real (docs/containers.md): the test image (Debian 12 with python3-torch, built
by scripts/testcluster.sh) run by podman and by Charliecloud, on the live SLURM and PBS test
clusters: the workshop's ci-smoke, two hosts, a time-limit requeue that resumes exactly, and an
image that is not there refused at submit."""

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from conftest import DATA, ROOT, exp_dir_from, release_if_requeued, scontrol_job, wait_finished

IMAGES = Path("/var/lib/dlhpc-test/images")
PODMAN = ["--set", "env.container.image=localhost/dlhpc-torch:test", "--set", "env.container.runtime=podman"]
CHARLIECLOUD = [
    "--set",
    f"env.container.image={IMAGES / 'torch-rootfs'}",
    "--set",
    "env.container.runtime=charliecloud",
]
SMOKE = ["--set", f"data.root={DATA}"]


@pytest.fixture(scope="session")
def test_image():
    """The test image, built by scripts/testcluster.sh (containers); required wherever the
    clusters are (CI), skipped elsewhere."""
    from conftest import clusters_required

    ok = shutil.which("podman") and shutil.which("ch-run") and (IMAGES / "torch-rootfs" / "usr").is_dir()
    if not ok:
        if clusters_required():
            pytest.fail("CI must run the container tests: run scripts/testcluster.sh up (as root)")
        pytest.skip("no container runtime or test image (scripts/testcluster.sh containers)")
    return True


def submit(run, tmp_path, spec, scheduler, *sets):
    r = run("submit", spec, "--scheduler", scheduler, "--runs-dir", tmp_path / "runs", *sets)
    assert r.code == 0, r
    return Path(exp_dir_from(r.out))


def ran_in_the_image(exp: Path) -> None:
    """Each trial's program ran on the image's Python 3.11 and torch 1.13 (the host has others)."""
    for result in exp.glob("*/result.json"):
        software = json.loads(result.read_text())["software"]
        assert software["torch"].startswith("1.13"), software


@pytest.mark.slurm
def test_ci_smoke_in_podman_on_slurm(slurm_cluster, test_image, dlhpc, tmp_path):
    exp = submit(dlhpc, tmp_path, ROOT / "jobs" / "ci-smoke.yaml", "slurm", *SMOKE, *PODMAN)
    assert "podman" in (exp / "job-0.sh").read_text()
    report = wait_finished(dlhpc, exp, timeout=400)
    assert [t["state"] for t in report["trials"]] == ["COMPLETED", "COMPLETED"], report
    ran_in_the_image(exp)
    rows = json.loads(dlhpc("summary", exp, "--commit", "--format", "json").out)
    assert all(r["test_acc"] > 0.9 and r["image"].startswith("sha256:") for r in rows), rows
    # a trial is COMPLETED once its result is written; its job then removes its containers
    # (the store's too) before it ends: the check is of the ended job, not of a job still tidying
    job_ids = [j["job_id"] for j in json.loads((exp / "experiment.json").read_text())["jobs"]]
    deadline = time.monotonic() + 120
    while any(scontrol_job(j).get("JobState") in ("RUNNING", "COMPLETING") for j in job_ids):
        assert time.monotonic() < deadline, [scontrol_job(j) for j in job_ids]
        time.sleep(0.5)
    leftover = subprocess.run(["podman", "ps", "-a", "--format", "{{.Names}}"], capture_output=True, text=True).stdout
    assert "dlhpc-" not in leftover, leftover  # every rank's container removed


@pytest.mark.pbs
def test_ci_smoke_in_charliecloud_on_pbs(pbs_cluster, test_image, dlhpc, tmp_path):
    def pbs(*args, **kwargs):
        return dlhpc(*args, env=pbs_cluster, **kwargs)

    exp = submit(pbs, tmp_path, ROOT / "jobs" / "ci-smoke.yaml", "pbs", *SMOKE, *CHARLIECLOUD)
    report = wait_finished(pbs, exp, timeout=400)
    assert [t["state"] for t in report["trials"]] == ["COMPLETED", "COMPLETED"], report
    ran_in_the_image(exp)


@pytest.mark.slurm
def test_two_hosts_in_podman(slurm_cluster, test_image, dlhpc, tmp_path):
    sets = ["--set", "resources.nodes=2", "--set", "resources.tasks_per_node=1", "--set", "sweep.train.seed=[0]"]
    exp = submit(dlhpc, tmp_path, ROOT / "jobs" / "ci-smoke.yaml", "slurm", *SMOKE, *PODMAN, *sets)
    report = wait_finished(dlhpc, exp, timeout=400)
    assert report["trials"][0]["state"] == "COMPLETED", report
    (result,) = [json.loads(p.read_text()) for p in exp.glob("*/result.json")]
    assert sorted(result["rank_nodes"]) == ["n1", "n2"] and result["world_size"] == 2, result
    ran_in_the_image(exp)
    print(f"two hosts in podman: {result['rank_nodes']} via {result['rendezvous']}, "
          f"{result['images_per_s']:.0f} img/s, test acc {result['test_acc']:.4f}")  # fmt: skip


@pytest.mark.slurm
def test_a_requeue_in_the_container_resumes_exactly(slurm_cluster, test_image, dlhpc, tmp_path):
    folder = tmp_path / "own-code"
    shutil.copytree(ROOT / "examples" / "own-code", folder)
    one = ["--set", "sweep.params.lr=[0.2]", "--set", "sweep.params.seed=[1]", "--set", "params.epochs=10"]
    args = '"--epochs", "{params.epochs}", "--lr", "{params.lr}", "--seed", "{params.seed}", "--step-sleep", "0.1"'
    slow = f"program.args=[{args}]"
    limits = 'resources={time: "00:03:00", signal_margin_s: 120, timeout_requeues: 5, mem: 4G}'
    exp = submit(dlhpc, tmp_path, folder / "exp.yaml", "slurm", *one, *CHARLIECLOUD,
                 "--set", slow, "--set", "program.grace_s=20", "--set", limits)  # fmt: skip
    record = json.loads((exp / "experiment.json").read_text())
    job_id, trial = record["jobs"][0]["job_id"], exp / record["jobs"][0]["trial"]
    deadline = time.monotonic() + 600
    while scontrol_job(job_id).get("JobState") not in ("COMPLETED", "FAILED", "TIMEOUT", "CANCELLED"):
        assert time.monotonic() < deadline, scontrol_job(job_id)
        release_if_requeued(job_id)
        time.sleep(0.5)
    report = wait_finished(dlhpc, exp, timeout=60)
    assert report["trials"][0]["state"] == "COMPLETED", (report, dlhpc("why", exp).out)
    assert int(scontrol_job(job_id).get("Restarts", 0)) >= 1
    lines = [json.loads(line) for line in (trial / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in lines] == list(range(1, 11))  # every epoch once
    out = (trial / "job.out").read_text()
    assert "resuming from snapshot" in out and "asked to stop" in out
    reference = dlhpc("run", folder / "exp.yaml", "--here", "--runs-dir", tmp_path / "reference", *one, *CHARLIECLOUD)
    assert reference.code == 0, reference
    (expected,) = (tmp_path / "reference").glob("*/*/metrics.jsonl")
    final = [json.loads(line) for line in expected.read_text().splitlines()][-1]
    assert lines[-1]["test_acc"] == final["test_acc"] and lines[-1]["train_loss"] == final["train_loss"]
    print(f"requeue in charliecloud: {scontrol_job(job_id).get('Restarts')} requeue(s), final {lines[-1]}")


def test_an_image_podman_does_not_have_is_refused_at_submit(test_image, dlhpc, tmp_path):
    sets = ["--set", "env.container.image=localhost/no-such-image:1", "--set", "env.container.runtime=podman"]
    r = dlhpc("submit", ROOT / "jobs" / "ci-smoke.yaml", "--here", "--runs-dir", tmp_path / "runs", *SMOKE, *sets)
    assert r.code == 2 and "podman has no image 'localhost/no-such-image:1'" in r.err, r
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").iterdir())


def test_doctor_knows_the_container(test_image, dlhpc, tmp_path):
    r = dlhpc("doctor", ROOT / "jobs" / "ci-smoke.yaml", *PODMAN)
    assert "container runtime podman: podman version" in r.out, r
    assert "torch in the image: 1.13" in r.out, r

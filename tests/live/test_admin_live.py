"""Admin and attendee tooling: site examples, template origins, doctor, cost, data staging."""

import subprocess
import threading

import pytest

from conftest import ROOT, SLURM_SITE, render_with_site, write


@pytest.mark.slurm
def test_slurm_site_example_passes_sbatch_test_only(slurm_cluster, dlhpc, tmp_path):
    r = render_with_site(dlhpc, SLURM_SITE, "--scheduler", "slurm", "-o", tmp_path / "out")
    assert r.code == 0, r
    (script,) = (tmp_path / "out").glob("*.sh")
    proc = subprocess.run(["sbatch", "--test-only", str(script)], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "to start at" in proc.stderr + proc.stdout


@pytest.mark.slurm
def test_max_cost_refuses_before_queueing(slurm_cluster, dlhpc, tmp_path):
    r = dlhpc("submit", ROOT / "jobs" / "sweep-lr.yaml", "--max-cost", "1", "--set", f"runs_dir={tmp_path / 'runs'}")
    assert r.code == 2 and "exceeds the limit of 1" in r.err, r
    assert not (tmp_path / "runs").exists()


@pytest.mark.slurm
def test_doctor_on_the_live_cluster(slurm_cluster, dlhpc, tmp_path):
    spec = write(tmp_path / "s.yaml", "name: d\nresources: {scheduler: slurm, partition: gpu, gpus_per_node: 2}\n")
    ok = dlhpc("doctor", spec)
    assert ok.code == 0, ok
    for needle in (
        "SLURM commands",
        "accounting (sacct)",
        "MaxArraySize: 1001",
        "partition gpu",
        "GPUs in gpu",
        "MNIST data",
        "runs folder",
        "torch",
    ):
        assert needle in ok.out, (needle, ok.out)
    bad = dlhpc("doctor", spec, "--set", "resources.partition=nosuch")
    assert bad.code == 1 and "partition nosuch: does not exist" in bad.out and "fix:" in bad.out, bad
    greedy = dlhpc("doctor", spec, "--set", "resources.gpus_per_node=8")
    assert greedy.code == 1 and "2 per node available, 8 asked" in greedy.out, greedy
    job = dlhpc("doctor", spec, "--set", "resources.gpus_per_node=0", "--job")
    assert job.code == 0 and "compute node software" in job.out and "torch" in job.out, job


def test_data_fetch_twice_at_once(dlhpc, tmp_path, mnist_mirror):
    _, url = mnist_mirror
    root = tmp_path / "shared"
    results = []

    def fetch():
        results.append(dlhpc("data", "fetch", "--root", root, env={"DLHPC_MNIST_MIRROR": url}))

    threads = [threading.Thread(target=fetch) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r.code for r in results] == [0, 0], results
    from dlhpc.train.data import RAW_MD5, _md5

    for name, md5 in RAW_MD5.items():
        assert _md5(root / "MNIST" / "raw" / name) == md5

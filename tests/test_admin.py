"""Admin and attendee tooling: site examples, template origins, doctor, cost, data staging."""

import os
import subprocess
import sys
import threading

import pytest

from conftest import ROOT, write

SLURM_SITE = ROOT / "examples" / "slurm-gpu-cluster" / "site.yaml"
PBS_SITE = ROOT / "examples" / "pbs-cluster" / "site.yaml"
GOLDEN = ROOT / "tests" / "golden"


def render(dlhpc, site, *args):
    return dlhpc(
        "render", ROOT / "jobs" / "mnist-cnn.yaml", *args, env={"DLHPC_SITE": str(site), "SOURCE_DATE_EPOCH": "0"}
    )


def test_slurm_site_example_renders_its_override(dlhpc, tmp_path):
    r = render(dlhpc, SLURM_SITE, "--scheduler", "slurm", "--set", "runs_dir=/runs")
    assert r.code == 0, r
    assert "#SBATCH --gres=gpu:1" in r.out and "--gpus-per-node" not in r.out
    assert "#SBATCH --partition=gpu" in r.out and "#SBATCH --mail-type=FAIL" in r.out
    assert "module purge\nmodule load cuda/12.4" in r.out
    assert "examples/slurm-gpu-cluster/templates/slurm/default.sh.j2" in r.err
    listing = dlhpc("templates", "list", env={"DLHPC_SITE": str(SLURM_SITE)})
    assert any(line.split()[:2] == ["slurm/default", "site"] for line in listing.out.splitlines()), listing


@pytest.mark.slurm
def test_slurm_site_example_passes_sbatch_test_only(slurm_cluster, dlhpc, tmp_path):
    r = render(dlhpc, SLURM_SITE, "--scheduler", "slurm", "-o", tmp_path / "out")
    assert r.code == 0, r
    (script,) = (tmp_path / "out").glob("*.sh")
    proc = subprocess.run(["sbatch", "--test-only", str(script)], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "to start at" in proc.stderr + proc.stdout


def test_pbs_site_example_matches_golden_file(dlhpc):
    r = render(dlhpc, PBS_SITE, "--scheduler", "pbs", "--set", "runs_dir=/runs")
    assert r.code == 0, r
    text = r.out.replace(sys.executable, "<python>")
    golden = GOLDEN / "site-pbs-cluster.openpbs.sh"
    if os.environ.get("DLHPC_REGEN_GOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text(), "regenerate with DLHPC_REGEN_GOLDEN=1 pytest tests/test_admin.py"
    assert ":ngpus=1:gpu_model=v100:" in text and "#PBS -q workq" in text


def test_user_file_cannot_carry_site_settings(dlhpc, tmp_path):
    write(tmp_path / "home" / ".config" / "dlhpc" / "config.yaml", "site:\n  max_cost: 1\n")
    r = dlhpc("validate", ROOT / "jobs" / "mnist-cnn.yaml")
    assert r.code == 2 and "site settings belong in the site file" in r.err


def test_cost_is_shown_and_capped(dlhpc, tmp_path):
    site = write(
        tmp_path / "site.yaml", "site:\n  charge_rates: {core_hour: 2.0, gpu_hour: 10.0, unit: SU}\n  max_cost: 5\n"
    )
    env = {"DLHPC_SITE": str(site), "PATH": os.environ["PATH"]}
    # sweep-lr: 8 trials x 2 cpus x 20 minutes = 5.33 core-hours = 10.67 SU > 5
    r = dlhpc("submit", ROOT / "jobs" / "sweep-lr.yaml", "--dry-run", "--scheduler", "local", env=env)
    assert r.code == 2, r
    assert "5.33 core-hours" in r.out and "10.67 SU" in r.out and "exceeds the limit of 5" in r.err
    r = dlhpc(
        "submit", ROOT / "jobs" / "sweep-lr.yaml", "--dry-run", "--scheduler", "local", "--max-cost", "20", env=env
    )
    assert r.code == 0 and "10.67 SU" in r.out, r
    gpu = dlhpc(
        "submit",
        ROOT / "jobs" / "mnist-cnn.yaml",
        "--dry-run",
        "--set",
        "resources.gpus_per_node=2",
        "--max-cost",
        "1000",
        env=env,
    )
    assert "1.00 GPU-hours" in gpu.out, gpu  # 1 trial x 2 GPUs x 30 minutes


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


def test_doctor_flags_missing_data(dlhpc, tmp_path):
    spec = write(tmp_path / "s.yaml", f"name: d\ndata: {{root: {tmp_path / 'nodata'}}}\n")
    r = dlhpc("doctor", spec)
    assert r.code == 1 and "MNIST data" in r.out and "dlhpc data fetch --root" in r.out


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

"""Admin and attendee tooling: site examples, template origins, doctor, cost, data staging."""

import os
import sys

from conftest import ROOT, SLURM_SITE, render_with_site, write

PBS_SITE = ROOT / "examples" / "pbs-cluster" / "site.yaml"


GOLDEN = ROOT / "tests" / "golden"


def test_slurm_site_example_renders_its_override(dlhpc, tmp_path):
    r = render_with_site(dlhpc, SLURM_SITE, "--scheduler", "slurm", "--set", "runs_dir=/runs")
    assert r.code == 0, r
    assert "#SBATCH --gres=gpu:1" in r.out and "--gpus-per-node" not in r.out
    assert "#SBATCH --partition=gpu" in r.out and "#SBATCH --mail-type=FAIL" in r.out
    assert "module purge\nmodule load cuda/12.4" in r.out
    assert "examples/slurm-gpu-cluster/templates/slurm/default.sh.j2" in r.err
    listing = dlhpc("templates", "list", env={"DLHPC_SITE": str(SLURM_SITE)})
    assert any(line.split()[:2] == ["slurm/default", "site"] for line in listing.out.splitlines()), listing


def test_pbs_site_example_matches_golden_file(dlhpc):
    r = render_with_site(dlhpc, PBS_SITE, "--scheduler", "pbs", "--set", "runs_dir=/runs")
    assert r.code == 0, r
    text = r.out.replace(sys.executable, "<python>")
    golden = GOLDEN / "site-pbs-cluster.openpbs.sh"
    if os.environ.get("DLHPC_REGEN_GOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text(), "regenerate with DLHPC_REGEN_GOLDEN=1 pytest tests/unit/test_admin.py"
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


def test_doctor_flags_missing_data(dlhpc, tmp_path):
    spec = write(tmp_path / "s.yaml", f"name: d\ndata: {{root: {tmp_path / 'nodata'}}}\n")
    r = dlhpc("doctor", spec)
    assert r.code == 1 and "MNIST data" in r.out and "dlhpc data fetch --root" in r.out

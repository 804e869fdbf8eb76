"""Rendered job scripts: golden files, bash -n, directives first, stamps, quoting, templates."""

import subprocess

import pytest

from conftest import JOBS, rendered, write

pytestmark = pytest.mark.usefixtures("fixed_clock")  # the scripts' stamps: SOURCE_DATE_EPOCH 0


@pytest.mark.slurm
@pytest.mark.parametrize("job", JOBS)
def test_sbatch_test_only_accepts_every_slurm_script(slurm_cluster, job, tmp_path):
    p = rendered(job, "slurm")
    for script in p.scripts:
        path = write(tmp_path / "job.sh", script.text)
        proc = subprocess.run(["sbatch", "--test-only", str(path)], capture_output=True, text=True, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert "to start at" in proc.stderr + proc.stdout

"""examples/workshop.ipynb runs top to bottom through the Python API (nbclient), on this machine
and against the SLURM test cluster (issue 23)."""

import os

import pytest

from conftest import ROOT

nbclient = pytest.importorskip("nbclient")
nbformat = pytest.importorskip("nbformat")


def run_notebook(tmp_path, scheduler: str, env: dict | None = None):
    notebook = nbformat.read(ROOT / "examples" / "workshop.ipynb", as_version=4)
    saved = dict(os.environ)
    os.environ.update(DLHPC_NOTEBOOK_SCHEDULER=scheduler, DLHPC_NOTEBOOK_RUNS=str(tmp_path / "runs"), **(env or {}))
    try:
        nbclient.NotebookClient(notebook, timeout=900, resources={"metadata": {"path": str(tmp_path)}}).execute()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return notebook


def printed(notebook) -> str:
    return "".join(out.get("text", "") for cell in notebook.cells for out in cell.get("outputs", []))


def test_the_workshop_notebook_runs_on_this_machine(tmp_path):
    notebook = run_notebook(tmp_path, "local")
    lines = [line.split() for line in printed(notebook).splitlines() if "COMPLETED" in line]
    assert [line[0] for line in lines] == ["softmax", "mlp", "lenet5", "cnn"], printed(notebook)
    assert len(list((tmp_path / "runs").iterdir())) == 4
    shown = [out for cell in notebook.cells for out in cell.get("outputs", []) if "image/png" in out.get("data", {})]
    assert shown, "the last cell shows the learning curves"


@pytest.mark.slurm
def test_the_workshop_notebook_runs_on_the_slurm_cluster(slurm_cluster, tmp_path):
    notebook = run_notebook(tmp_path, "slurm")
    lines = [line.split() for line in printed(notebook).splitlines() if "COMPLETED" in line]
    assert [line[0] for line in lines] == ["softmax", "mlp", "lenet5", "cnn"], printed(notebook)
    records = [p / "experiment.json" for p in (tmp_path / "runs").iterdir()]
    assert all('"scheduler": "slurm"' in r.read_text() for r in records)

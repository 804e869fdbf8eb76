"""The Python API (docs/api.md): the CLI's use-cases from Python, on the local backend."""

from conftest import QUICK_SETS, ROOT


def test_submit_wait_and_summary(runs):
    import dlhpc

    exp = dlhpc.submit(
        ROOT / "jobs" / "mnist-softmax.yaml",
        set={**QUICK_SETS, "sweep.train.lr": [0.05, 0.1]},
        runs_dir=runs,
        quiet=True,
    )
    status = exp.wait(timeout=300, refresh_s=0.2)
    assert status.finished and status.counts == {"COMPLETED": 2}
    summary = exp.summary()
    assert [row["train.lr"] for row in summary.rows] == [0.05, 0.1]
    assert all(0.5 < row["test_acc"] <= 1 for row in summary)
    assert "<table" in summary._repr_html_() and "train.lr" in summary._repr_html_()
    assert list(summary.to_pandas()["train.lr"]) == [0.05, 0.1]
    assert [e.path for e in dlhpc.experiments(runs)] == [exp.path] and dlhpc.load(exp.name, runs).path == exp.path
    assert exp.plot()._repr_png_().startswith(b"\x89PNG")


def test_submitting_leaves_the_notebooks_umask_as_it_was(runs):
    import os

    import dlhpc
    from dlhpc.fsutil import current_umask

    old = os.umask(0o002)
    try:
        exp = dlhpc.submit(ROOT / "jobs" / "mnist-softmax.yaml", set=QUICK_SETS, runs_dir=runs, quiet=True)
        assert current_umask() == 0o002
    finally:
        os.umask(old)
    assert exp.path.stat().st_mode & 0o777 == 0o700  # the experiment is private all the same
    exp.wait(timeout=120, refresh_s=0.2)

"""The scheduler boundary: one Backend interface, local a real backend, gentle polling, and the
submitit internals dlhpc relies on."""

import json
import time

from conftest import wait_finished, write

ENV_SPEC = """
name: envcheck
model: {name: softmax}
train: {epochs: 1, batch_size: 256, lr: 0.5, momentum: 0.0}
data: {train_subset: 2000}
env:
  modules: [python/3.11]
  vars: {GREETING: "hello from env.vars", ODD: "a b $HOME"}
  setup: ['echo "setup says $GREETING / $ODD"']
"""


def test_local_submit_runs_the_rendered_script_with_env_vars_and_setup(dlhpc, tmp_path):
    spec = write(tmp_path / "env.yaml", ENV_SPEC)
    rendered = dlhpc("render", spec, "--scheduler", "local")
    assert rendered.code == 0, rendered
    r = dlhpc("submit", spec, "--scheduler", "local", "--runs-dir", tmp_path / "runs")
    assert r.code == 0, r
    (exp,) = (tmp_path / "runs").iterdir()
    report = wait_finished(dlhpc, exp)
    assert [t["state"] for t in report["trials"]] == ["COMPLETED"]
    (trial,) = [d for d in exp.iterdir() if (d / "trial.json").is_file()]
    out, err = (trial / "job.out").read_text(), (trial / "job.err").read_text()
    assert "setup says hello from env.vars / a b $HOME" in out  # vars exported verbatim, setup ran
    assert "epoch 1/1" in out
    assert "no 'module' command" in err and "python/3.11" in err  # skipped, and said so
    script = (exp / "job-0.sh").read_text()
    body = lambda text: [ln for ln in text.splitlines() if ln and not ln.startswith(("#", "export DLHPC_EXP"))]  # noqa: E731
    assert body(script) == body(rendered.out)  # what render printed is what ran


def test_local_cancel_stops_the_runner_and_marks_what_is_left(dlhpc, tmp_path):
    spec = write(tmp_path / "long.yaml", ENV_SPEC.replace("epochs: 1", "epochs: 500") + "sweep: {train.seed: [0, 1]}\n")
    r = dlhpc("submit", spec, "--runs-dir", tmp_path / "runs")
    assert r.code == 0, r
    (exp,) = (tmp_path / "runs").iterdir()
    deadline = time.monotonic() + 60
    while not list(exp.glob("*/metrics.jsonl")):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    refused = dlhpc("cancel", "--runs-dir", tmp_path / "runs")
    assert refused.code == 2 and exp.name in refused.err and "--latest" in refused.err
    c = dlhpc("cancel", "--latest", "--runs-dir", tmp_path / "runs")
    assert c.code == 0 and "cancelled 2 job(s)" in c.out, c
    report = json.loads(dlhpc("status", exp, "--json").out)
    assert [t["state"] for t in report["trials"]] == ["CANCELLED", "CANCELLED"]

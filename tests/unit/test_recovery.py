"""The rules of unattended recovery (resources.retry.automatic; submission/recovery.py): which
failed trials the recovery job retries, how, and what status says of them."""

import json

from dlhpc.results.rows import _retried
from dlhpc.submission.recovery import MEMORY, NODE, decide, entries

AUTOMATIC = {"resources": {"retry": {"automatic": True, "max_retries": 3, "exit_codes": [85]}}}


def decided(tmp_path, rule, state="FAILED", result=None, retries=(), raised=None, spec=AUTOMATIC):
    (tmp_path / "t0").mkdir(exist_ok=True)
    (tmp_path / "t0" / "result.json").write_text(json.dumps(result or {}))
    record = {"retries": list(retries)}
    diagnosed = [{"trial": "t0", "state": state, "cause": "its cause", "rule": rule}]
    (decision,) = decide(tmp_path, record, diagnosed, raised or {}, {"t0": spec})
    return decision


def test_a_lost_node_is_retried_as_the_first_attempt(tmp_path):
    d = decided(tmp_path, "lost_node")
    assert (d.why, d.attempt, d.of) == (NODE, 1, 3)


def test_out_of_memory_with_room_is_retried_with_the_raise(tmp_path):
    raised = {"t0": {"why": MEMORY, "resources": {"mem": ["2G", "4096M"]}}}
    d = decided(tmp_path, "out_of_memory", raised=raised)
    assert d.why == MEMORY
    assert entries([d], raised)["t0"]["resources"] == {"mem": ["2G", "4096M"]}


def test_out_of_memory_again_with_nothing_left_to_raise_is_not_retried(tmp_path):
    before = [{"trial": "t0", "automatic": True, "why": MEMORY, "attempt": 1, "of": 3}]
    d = decided(tmp_path, "out_of_memory", retries=before)
    assert d.why is None and "nothing is left to raise" in d.refused


def test_no_trial_is_retried_past_max_retries(tmp_path):
    before = [{"trial": "t0", "automatic": True, "why": NODE, "attempt": n, "of": 3} for n in (1, 2, 3)]
    d = decided(tmp_path, "lost_node", retries=before)
    assert d.why is None and "retried 3 time(s) already" in d.refused


def test_a_listed_exit_code_is_retried_and_another_is_not(tmp_path):
    assert decided(tmp_path, "failed_rank", result={"exit_code": 85}).why == "exit code 85"
    refused = decided(tmp_path, "failed_rank", result={"exit_code": 1})
    assert refused.why is None and "a retry cannot mend it" in refused.refused


def test_a_python_error_a_cancel_and_a_spec_without_automatic_are_never_retried(tmp_path):
    assert decided(tmp_path, "python", result={"exit_code": 1}).why is None
    assert decided(tmp_path, "cancelled", state="CANCELLED").why is None
    off = decided(tmp_path, "lost_node", spec={"resources": {"retry": {"automatic": False}}})
    assert off.why is None and off.refused == "resources.retry.automatic is off"


def test_status_says_retrying_while_the_retry_waits_and_retried_once_it_ran():
    record = {
        "retries": [
            {"trial": "t0", "automatic": True, "why": MEMORY, "attempt": 2, "of": 3, "resources": {"mem": ["2G", "4G"]}}
        ]
    }
    assert _retried(record, "t0", "PENDING") == ["retrying 2/3: out of memory, resources.mem 2G -> 4G"]
    assert _retried(record, "t0", "COMPLETED") == ["retried 2/3: out of memory, resources.mem 2G -> 4G"]


def test_a_recovery_job_refuses_an_experiment_that_is_not_its_callers(tmp_path):
    import os
    import subprocess
    import sys

    from conftest import make_experiment

    exp = make_experiment(tmp_path, [("t0", {}, {"result.json": '{"state": "FAILED", "exit_code": 85}'})])
    before = (exp / "experiment.json").read_text()
    for path in [exp, *exp.rglob("*")]:
        os.lchown(path, 65534, 65534)
    r = subprocess.run([sys.executable, "-m", "dlhpc.submission.recover_job", str(exp)], capture_output=True, text=True)
    assert r.returncode == 2 and "dlhpc acts only on your own experiments" in r.stderr, r
    assert (exp / "experiment.json").read_text() == before


def test_status_of_a_failed_trial_stays_unfinished_while_its_recovery_job_queues_the_retry(tmp_path):
    """status asks the scheduler, then makes the rows: the recovery job may record the retry and
    the next recovery job in between. The rows come from the record the query asked from, so the
    trial is not read as finished with no recovery on its way."""
    from conftest import make_experiment
    from dlhpc.results import status
    from dlhpc.states import JobStatus, State

    failed = '{"state": "FAILED", "exit_code": 85, "job_id": "4"}'
    exp = make_experiment(tmp_path, [("t0", {}, {"result.json": failed})], scheduler="slurm", jobs=[("4", "t0")])
    path = exp / "experiment.json"
    asked = json.loads(path.read_text())
    asked["recovery"] = {"job": "5", "after": ["4"]}
    answers = {"4": JobStatus(State.FAILED), "5": JobStatus(State.RUNNING)}
    now = {**asked, "jobs": asked["jobs"] + [{"job_id": "6", "trial": "t0", "script": "job-1.sh"}]}
    path.write_text(json.dumps({**now, "recovery": {"job": "7", "after": ["6"]}}))  # (recorded meanwhile)
    report = status.collect(exp, status.Answers(answers, asked), [])
    assert report["finished"] is False and report["recovery_job"] == "5", report

"""When the cluster misbehaves (issue 26), with the fault made for real: the SLURM controller and
its accounting daemon stopped while a trial trains, a full disk (a small tmpfs), a rank stopped
(SIGSTOP) mid-training, a trial killed for memory and resubmitted with more. benchmarks/faults.py
repeats them for figures, with the same helpers (conftest)."""

import json

import pytest

from conftest import (
    write,
)


@pytest.mark.parametrize(
    "resources,policy,raised",
    [
        ({"mem": "1G", "retry": {"factor": 2, "max_mem": "8G"}}, {}, {"mem": ["1G", "2048M"]}),
        ({"mem": "1G", "retry": {"factor": 4, "max_mem": "3G"}}, {}, {"mem": ["1G", "3072M"]}),  # the user's cap
        ({"mem": "1G", "retry": {"factor": 4, "max_mem": "8G"}}, {"max_mem": "1500M"}, {"mem": ["1G", "1500M"]}),
        ({"mem": "1G", "retry": {"factor": 4, "max_mem": None}}, {}, {}),  # no cap set: never raised
        ({"mem": "4G", "retry": {"factor": 2, "max_mem": "4G"}}, {}, {}),  # at its cap already
    ],
)
def test_more_memory_stays_within_the_users_cap_and_the_site_policy(resources, policy, raised):
    from dlhpc.submission.retry import _more_memory

    assert _more_memory(resources, policy) == raised


def test_more_time_stays_within_the_users_cap_and_the_site_policy():
    from dlhpc.submission.retry import _more_time

    resources = {"time": "01:00:00", "retry": {"factor": 3, "max_time": "02:30:00"}}
    assert _more_time(resources, {}) == {"time": ["01:00:00", "02:30:00"]}
    assert _more_time(resources, {"max_time": "01:30:00"}) == {"time": ["01:00:00", "01:30:00"]}


class _Nodes:
    """A backend that lists these nodes as usable (the live lists come from sinfo and pbsnodes)."""

    def __init__(self, *names):
        self.names = list(names)

    def usable_nodes(self, resources):
        return self.names


@pytest.mark.parametrize(
    ("usable", "kept_off"),
    [(("n1", "n2", "n3"), True), (("n1", "n2"), False), (("n1", "n3"), True)],
)
def test_resubmit_keeps_off_a_lost_node_while_enough_others_are_left(tmp_path, usable, kept_off):
    from dlhpc.submission import keepoff

    trial = tmp_path / "000-abc"
    trial.mkdir()
    write(trial / "spec.yaml", "resources: {nodes: 2, partition: gpu}\n")
    write(trial / "result.json", json.dumps({"state": "FAILED", "lost_node": "n2", "lost_at": 1.0}))
    planned, said = keepoff.plan(tmp_path, ["000-abc"], _Nodes(*usable))
    if kept_off:
        assert planned == {"000-abc": ["n2"]} and said == [
            "000-abc: keeps off node n2, lost under its last run (resources.exclude)"
        ]
    else:
        assert planned == {} and said == [
            "000-abc: node n2 was lost under it, but is not kept off: partition gpu has 1 usable node(s) besides "
            "it, and the trial needs 2"
        ]

"""resources.partition as a list (submission/partitions.py): accepted, checked name by name, and
the earliest start picked; the live pick is tests/live/test_partitions_live.py."""

import pytest

from dlhpc.errors import UserError
from dlhpc.spec.load import load_spec_text
from dlhpc.submission.partitions import choose


class Estimates:
    """A scheduler's answers to `start_estimates` (what sbatch --test-only said, as numbers)."""

    name, runs_here = "slurm", False

    def __init__(self, **answers):
        self.answers = answers

    def start_estimates(self, resources, names):
        return {n: self.answers[n] for n in names}


def test_a_list_of_partitions_is_kept_for_the_pick_and_joined_until_then():
    spec = load_spec_text("resources: {partition: [gpu-a100, gpu-v100]}")
    assert spec.partition_choices == ["gpu-a100", "gpu-v100"]
    assert spec.data["resources"]["partition"] == "gpu-a100,gpu-v100"


def test_the_earliest_start_is_picked_and_a_tie_goes_to_the_order_given():
    said = []
    later = Estimates(a=(200.0, "to start at 200"), b=(100.0, "to start at 100"))
    assert choose(["a", "b"], {}, later, say=said.append)["chosen"] == "b"
    assert said[0] == "partition: b, the earliest start of a, b"
    tie = Estimates(a=(100.0, "now"), b=(100.0, "now"))
    assert choose(["a", "b"], {}, tie, say=said.append)["chosen"] == "a"


def test_a_partition_that_cannot_take_the_job_is_passed_over_and_none_is_refused():
    one = Estimates(a=(None, "invalid partition specified: a"), b=(500.0, "to start at 500"))
    assert choose(["a", "b"], {}, one, say=lambda _: None)["chosen"] == "b"
    none = Estimates(a=(None, "invalid partition"), b=(None, "time limit exceeds"))
    with pytest.raises(UserError, match="none of resources.partition's a, b can take the job"):
        choose(["a", "b"], {}, none, say=lambda _: None)


def test_one_partition_asks_the_scheduler_nothing():
    assert choose(["a"], {}, Estimates(), say=lambda _: None) is None

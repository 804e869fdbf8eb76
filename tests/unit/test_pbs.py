"""PBS pieces that the PBS-on-SLURM wrappers cannot exercise: OpenPBS JSON and Torque qstat
output, qsub's id formats, and pbs_launch's ranks across the nodes of $PBS_NODEFILE."""

import json
import os
import subprocess
import sys
import time

import pytest

from conftest import fake_commands, write
from dlhpc.schedulers import pbs


def test_job_ids_from_qsub():
    assert pbs.parse_job_id("1234.pbs-server\n") == "1234"
    assert pbs.parse_job_id("1234[].pbs-server\n") == "1234"
    assert pbs.parse_job_id("77\n") == "77"
    with pytest.raises(Exception, match="cannot read"):
        pbs.parse_job_id("qsub: Unknown queue")


def test_state_table():
    assert pbs.map_state("Q") == "PENDING" and pbs.map_state("H") == "PENDING"
    assert pbs.map_state("R") == "RUNNING" and pbs.map_state("E") == "RUNNING"
    assert pbs.map_state("F", 0) == "COMPLETED" and pbs.map_state("F", "1") == "FAILED"
    assert pbs.map_state("F", 271) == "CANCELLED" and pbs.map_state("C") == "COMPLETED"
    assert pbs.map_state("Z") == "UNKNOWN" and pbs.map_state("") == "UNKNOWN"


def fake_qstat(tmp_path, monkeypatch, body):
    monkeypatch.setenv("PATH", fake_commands(tmp_path, qstat=body)["PATH"])


def test_openpbs_json_states(tmp_path, monkeypatch):
    data = {
        "Jobs": {
            "5[0].srv": {
                "job_state": "F",
                "Exit_status": 0,
                "resources_used": {"walltime": "00:01:02"},
                "Resource_List": {"ncpus": 4, "ngpus": 1},
            },
            "5[1].srv": {"job_state": "R"},
            "6.srv": {"job_state": "F", "Exit_status": 2},
        }
    }
    fake_qstat(tmp_path, monkeypatch, f"cat <<'EOF'\n{json.dumps(data)}\nEOF")
    states, warnings = pbs.states(["5_0", "5_1", "6"])
    assert states["5_0"].state == "COMPLETED" and states["5_0"].elapsed == "00:01:02"
    assert states["5_1"].state == "RUNNING" and states["6"].state == "FAILED"
    done = states["5_0"]
    assert (done.elapsed_s, done.core_hours, done.gpu_hours) == (62, 4 * 62 / 3600, 62 / 3600)


def test_openpbs_efficiency_and_its_own_exit_codes(tmp_path, monkeypatch):
    # a user's finished jobs as OpenPBS 23.06 records them (the live tests run as root, whose
    # processes the mom does not sample)
    data = {
        "Jobs": {
            "7[0].srv": {
                "job_state": "F",
                "Exit_status": 0,
                "resources_used": {"cput": "00:10:00", "mem": "1048576kb", "walltime": "00:20:00"},
                "Resource_List": {"ncpus": 8, "mem": "16gb"},
            },
            "7[1].srv": {"job_state": "F", "Exit_status": -29, "resources_used": {"walltime": "01:00:00"}},
            "7[2].srv": {"job_state": "F", "Exit_status": 271},
            "8.srv": {
                "job_state": "F",
                "Exit_status": -27,
                "resources_used": {"cput": "00:00:00", "mem": "0kb", "walltime": "00:00:03"},
                "Resource_List": {"ncpus": 1, "mem": "2gb"},
            },
        }
    }
    fake_qstat(tmp_path, monkeypatch, f"cat <<'EOF'\n{json.dumps(data)}\nEOF")
    states, _ = pbs.states(["7_0", "7_1", "7_2", "8"])
    assert [states[j].state for j in ("7_0", "7_1", "7_2", "8")] == [
        "COMPLETED",
        "TIMEOUT",
        "CANCELLED",
        "FAILED",
    ]
    assert states["8"].reason.startswith("out of memory")
    used = pbs.efficiency(["7_0", "8"])
    assert used["7_0"] == {
        "cpus": 8,
        "cpus_used": 0.5,
        "cpu_efficiency": 0.5 / 8,
        "mem_peak_mb": 1024.0,
        "mem_req_mb": 16384.0,
    }
    assert used["8"]["cpus_used"] is None and used["8"]["mem_peak_mb"] is None  # never sampled


def test_torque_plain_states(tmp_path, monkeypatch):
    table = (
        "Job ID                    Name             User            Time Use S Queue\n"
        "------------------------- ---------------- --------------- -------- - -----\n"
        "12[0].torque              exp              alice           00:00:10 C batch\n"
        "12[1].torque              exp              alice           00:00:03 R batch\n"
    )
    fake_qstat(
        tmp_path,
        monkeypatch,
        f"if [ \"$1\" = -x ]; then echo 'qstat: invalid option -- x' >&2; exit 2; fi\ncat <<'EOF'\n{table}EOF",
    )
    states, _ = pbs.states(["12_0", "12_1"])
    assert states["12_0"].state == "COMPLETED" and states["12_1"].state == "RUNNING"


def run_launch(tmp_path, hosts, tasks, extra_env=None):
    nodefile = write(tmp_path / "nodefile", "".join(h + "\n" for h in hosts))
    # one write() per rank, so lines from concurrent ranks never interleave
    probe = (
        "import json, os; os.write(1, (json.dumps({k: os.environ[k] for k in os.environ "
        "if k.startswith('DLHPC_PBS_') or k == 'SUBMITIT_EXECUTOR'}) + '\\n').encode())"
    )
    env = {
        **os.environ,
        "PBS_NODEFILE": str(nodefile),
        "PBS_JOBID": "42[3].srv",
        "PBS_ARRAY_INDEX": "3",
        **(extra_env or {}),
    }
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "dlhpc.schedulers.pbs_launch",
            "--tasks-per-node",
            str(tasks),
            "--",
            sys.executable,
            "-c",
            probe,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return sorted((json.loads(line) for line in proc.stdout.splitlines()), key=lambda e: int(e["DLHPC_PBS_RANK"]))


def test_launch_one_node_from_nodefile(tmp_path):
    ranks = run_launch(tmp_path, ["node7", "node7", "node7", "node7"], tasks=2)  # a host once per core
    assert [r["DLHPC_PBS_RANK"] for r in ranks] == ["0", "1"]
    assert {r["DLHPC_PBS_NUM_TASKS"] for r in ranks} == {"2"} and {r["DLHPC_PBS_NODELIST"] for r in ranks} == {"node7"}
    assert {r["DLHPC_PBS_JOB_ID"] for r in ranks} == {"42_3"}  # the id dlhpc recorded for array element 3
    assert {r["SUBMITIT_EXECUTOR"] for r in ranks} == {"pbs"}


def test_launch_two_nodes_uses_the_task_manager(tmp_path):
    # stand-in for OpenPBS's pbs_tmrsh: runs the command here instead of on the sister node
    bin_dir = tmp_path / "bin"
    write(bin_dir / "pbs_tmrsh", '#!/bin/bash\nshift\nexec "$@"\n').chmod(0o755)
    ranks = run_launch(
        tmp_path, ["nodeA", "nodeA", "nodeB", "nodeB"], tasks=2, extra_env={"PATH": f"{bin_dir}:{os.environ['PATH']}"}
    )
    assert [r["DLHPC_PBS_RANK"] for r in ranks] == ["0", "1", "2", "3"]
    assert [r["DLHPC_PBS_NODE_RANK"] for r in ranks] == ["0", "0", "1", "1"]
    assert [r["DLHPC_PBS_LOCAL_RANK"] for r in ranks] == ["0", "1", "0", "1"]
    assert {r["DLHPC_PBS_NODELIST"] for r in ranks} == {"nodeA,nodeB"}


def test_job_environment_reads_the_launch_variables(monkeypatch):
    monkeypatch.setenv("SUBMITIT_EXECUTOR", "pbs")
    for key, value in {
        "DLHPC_PBS_JOB_ID": "42_3",
        "DLHPC_PBS_NUM_TASKS": "4",
        "DLHPC_PBS_NUM_NODES": "2",
        "DLHPC_PBS_NODE_RANK": "1",
        "DLHPC_PBS_RANK": "3",
        "DLHPC_PBS_LOCAL_RANK": "1",
        "DLHPC_PBS_NODELIST": "a,b",
    }.items():
        monkeypatch.setenv(key, value)
    import submitit

    env = submitit.JobEnvironment()
    assert env.cluster == "pbs" and env.job_id == "42_3" and env.global_rank == 3 and env.num_tasks == 4
    assert env.local_rank == 1 and env.num_nodes == 2 and env.hostnames == ["a", "b"]


def test_one_failing_rank_stops_the_others(tmp_path, budget):
    # rank 1 fails at once; rank 0 would otherwise wait (in a collective) until the walltime
    nodefile = write(tmp_path / "nodefile", "node7\n")
    code = "import os, sys, time; sys.exit(3) if os.environ['DLHPC_PBS_RANK'] == '1' else time.sleep(120)"
    t0 = time.monotonic()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "dlhpc.schedulers.pbs_launch",
            "--tasks-per-node",
            "2",
            "--",
            sys.executable,
            "-c",
            code,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PBS_NODEFILE": str(nodefile), "PBS_JOBID": "7.srv"},
    )
    assert proc.returncode == 3, proc.stderr
    assert time.monotonic() - t0 < budget(20)


def test_server_limits_are_read_before_submitting(tmp_path, monkeypatch):
    # an OpenPBS server's `qstat -B -f` lines with limits set (the live test server sets none)
    server = (
        "Server: pbs1\n    server_state = Active\n    default_queue = workq\n    max_array_size = 500\n"
        "    max_queued = [u:PBS_GENERIC=200]\n"
    )
    fake_qstat(tmp_path, monkeypatch, f"if [ \"$1\" = -B ]; then cat <<'EOF'\n{server}EOF\nfi")
    assert pbs.server_limits() == {"max_array_size": 500, "max_queued_per_user": 200, "default_queue": "workq"}
    from dlhpc.plan import experiment
    from dlhpc.spec.load import load_spec_text

    spec = load_spec_text(f"name: q\nresources: {{scheduler: pbs}}\nsweep: {{train.seed: {list(range(300))}}}\n", "q")
    (problem,) = pbs.submission_limits(experiment.plan(spec, max_array=500, trials_per_task=1))
    assert "at most 200 jobs per user (max_queued)" in problem and "adds 301" in problem

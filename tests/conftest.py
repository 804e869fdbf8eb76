import gzip
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from dlhpc.node.identity import Identity
from dlhpc.plan import experiment
from dlhpc.plan.experiment import plan
from dlhpc.schedulers import REGISTRY
from dlhpc.spec.load import load_spec, load_spec_text

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("DLHPC_DATA") or ROOT.parent / "shared" / "data" / "mnist").resolve()
os.environ["DLHPC_DATA"] = str(DATA)
os.environ.setdefault("DLHPC_SITE", "/nonexistent/site.yaml")  # tests choose their own site file


# ---- time budgets, relative to this machine ------------------------------------------------------

# The reference workload's median on the development machine (2 cores, idle): interpreter start,
# the imports every login-node command pays, and a little arithmetic.
REFERENCE_WORKLOAD = "import yaml, jinja2, rich.console; sum(i * i for i in range(300000))"
REFERENCE_S = 0.085


@pytest.fixture(scope="session")
def slowness() -> float:
    """How many times slower than the development machine this one is now (at least 1): the
    median of five runs of REFERENCE_WORKLOAD. A budget times this holds on a slower or busier
    machine (CI's fresh 2-core machines run about half as fast) and never tightens on a faster one."""
    import statistics

    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", REFERENCE_WORKLOAD], check=True)
        times.append(time.perf_counter() - t0)
    return max(1.0, statistics.median(times) / REFERENCE_S)


@pytest.fixture
def budget(slowness):
    """budget(2.0): two seconds on the development machine, scaled to this one."""
    return lambda seconds: seconds * slowness


@pytest.fixture
def fixed_clock(monkeypatch):
    """Rendered scripts stamped as of the epoch (SOURCE_DATE_EPOCH 0), so they compare."""
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "0")


@pytest.fixture(autouse=True)
def fresh_scheduler_answers():
    """What a backend learned from its cluster is kept for one command (Backend.asked); tests run
    many in one process, some with stand-in commands on PATH, so each test starts afresh."""
    from dlhpc.schedulers import _instances

    for instance in _instances.values():
        instance.__dict__.pop("_answers", None)
    yield


def pytest_collection_modifyitems(items):
    """A test that uses a live cluster's fixture is marked for it (`-m "not slurm"` leaves it
    out), and must live in tests/live: tests/unit is the fast loop that starts nothing."""
    unit = ROOT / "tests" / "unit"
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        for cluster in ("slurm", "pbs"):
            if f"{cluster}_cluster" in names or item.get_closest_marker(cluster):
                item.add_marker(getattr(pytest.mark, cluster))
                if unit in Path(item.fspath).parents:
                    raise pytest.UsageError(f"{item.nodeid} needs the {cluster} cluster: move it to tests/live")


class Result:
    def __init__(self, proc):
        self.code, self.out, self.err = proc.returncode, proc.stdout, proc.stderr

    def __repr__(self):
        return f"<exit {self.code}\nstdout: {self.out[-2000:]}\nstderr: {self.err[-2000:]}>"


@pytest.fixture
def dlhpc(tmp_path):
    """Run the real CLI in a subprocess, in tmp_path by default, with a clean HOME."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)

    def run(*args, cwd=None, env=None, timeout=600, input=None):
        full_env = {
            **os.environ,
            "HOME": str(home),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "COLUMNS": "200",
            **(env or {}),
        }
        proc = subprocess.run(
            [sys.executable, "-m", "dlhpc", *map(str, args)],
            cwd=cwd or tmp_path,
            env=full_env,
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
        )
        return Result(proc)

    return run


def slurm_up() -> tuple[bool, str]:
    if shutil.which("sinfo") is None:
        return False, "SLURM is not installed (run scripts/testcluster.sh up as root)"
    proc = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True)
    if proc.returncode != 0 or "idle" not in proc.stdout and "mix" not in proc.stdout and "alloc" not in proc.stdout:
        return False, "no live SLURM cluster (run scripts/testcluster.sh up as root)"
    return True, ""


def clusters_required() -> bool:
    """In CI, and wherever scripts/test.sh brought the clusters up, a live test must not skip."""
    return bool(os.environ.get("CI") or os.environ.get("DLHPC_CLUSTERS_UP"))


@pytest.fixture(scope="session")
def slurm_cluster():
    ok, why = slurm_up()
    if not ok:
        if clusters_required():
            pytest.fail("CI must run against the live SLURM cluster: " + why)
        pytest.skip(why)
    return True


PBS_BIN = Path(os.environ.get("DLHPC_PBS_BIN", "/opt/pbs/bin"))


def pbs_up() -> tuple[bool, str]:
    qstat = PBS_BIN / "qstat"
    if not qstat.exists():
        return False, f"OpenPBS is not installed in {PBS_BIN.parent} (run scripts/testcluster.sh up as root)"
    proc = subprocess.run([str(qstat), "-B"], capture_output=True, text=True)
    if proc.returncode != 0:
        return False, f"no live PBS server ({(proc.stderr or proc.stdout).strip()}; run scripts/testcluster.sh up)"
    return True, ""


@pytest.fixture(scope="session")
def pbs_cluster() -> dict:
    """The live OpenPBS test cluster; returns the environment whose PATH finds its commands first
    (Debian's Slurm Torque wrappers own /usr/bin/qsub)."""
    ok, why = pbs_up()
    if not ok:
        if clusters_required():
            pytest.fail("CI must run against the live OpenPBS cluster: " + why)
        pytest.skip(why)
    return {"PATH": f"{PBS_BIN}:{os.environ['PATH']}"}


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def mnist_mirror(tmp_path):
    """The real MNIST files, gzipped and served from a local HTTP server, like the public mirrors."""
    served = tmp_path / "mirror"
    served.mkdir()
    for path in (DATA / "MNIST" / "raw").glob("*-ubyte"):
        with open(path, "rb") as src, gzip.open(served / (path.name + ".gz"), "wb") as dst:
            shutil.copyfileobj(src, dst)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **k):
            super().__init__(*a, directory=str(served), **k)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield served, f"http://127.0.0.1:{server.server_port}/"
    server.shutdown()


def fake_commands(tmp_path: Path, **scripts) -> dict:
    """Stand-ins for scheduler commands (sacct=..., qstat=...): bash bodies put first on PATH.
    Returns the environment to add; for a fault a real scheduler cannot produce on demand."""
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir(exist_ok=True)
    for name, body in scripts.items():
        write(bin_dir / name, "#!/bin/bash\n" + body + "\n").chmod(0o755)
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}", "DLHPC_SCHEDULER_TIMEOUT": "2"}


def exp_dir_from(out: str) -> str:
    """The experiment folder that `dlhpc submit` printed."""
    return next(line.split(": ", 1)[1] for line in out.splitlines() if line.startswith("experiment: "))


def make_experiment(root: Path, trials, swept=("train.lr",), scheduler="local", jobs=(), name="exp"):
    """An experiment directory as submit leaves it. trials: (id, params, {file: text}); jobs:
    (job_id, trial id) pairs."""
    import json

    exp = root / f"{name}-20260101-000000"
    exp.mkdir(parents=True)
    record = {
        "name": name,
        "scheduler": scheduler,
        "swept_keys": list(swept),
        "spec": {"name": name, "model": {"name": "cnn"}, "train": {"epochs": 3, "target_accuracy": 0.99}},
        "jobs": [{"job_id": j, "trial": t, "script": "job-0.sh"} for j, t in jobs],
        "trials": [{"id": tid, "index": i, "params": params} for i, (tid, params, _) in enumerate(trials)],
    }
    write(exp / "experiment.json", json.dumps(record))
    for tid, _params, files in trials:
        (exp / tid).mkdir()
        for fname, text in files.items():
            write(exp / tid / fname, text)
    return exp


def wait_finished(dlhpc, exp, timeout=300) -> dict:
    """Poll `dlhpc status --json` until every trial has finished; its exit code must agree with
    the states (1 when a trial failed, was cancelled or timed out)."""
    import json

    from dlhpc.results.status import exit_code

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = dlhpc("status", exp, "--json")
        report = json.loads(r.out)
        assert r.code == exit_code(report), r
        if report["finished"]:
            return report
        time.sleep(1)
    raise AssertionError(f"experiment {exp} did not finish in {timeout} s: {r.out}")


def uninterrupted(trial: Path, reference: Path) -> dict:
    """The same trial (its spec.yaml), run start to end on 2 local ranks: what a requeued run's
    result must equal."""
    import json

    reference.mkdir()
    (reference / "spec.yaml").write_text((trial / "spec.yaml").read_text())
    proc = subprocess.run(
        [sys.executable, "-m", "dlhpc.train", "--nproc", "2", str(reference)],
        capture_output=True,
        text=True,
        env={**os.environ, "DLHPC_CPUS_PER_TASK": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((reference / "result.json").read_text())


def event_steps(trial: Path) -> dict[str, list[int]]:
    """Every scalar's steps in a trial's TensorBoard event files, as TensorBoard's own loader
    reads them (tracking.tensorboard)."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    steps: dict[str, list[int]] = {}
    for path in sorted(trial.glob("events.out.tfevents.*")):
        for event in EventFileLoader(str(path)).Load():
            for value in event.summary.value:
                steps.setdefault(value.tag, []).append(event.step)
    return steps


def scontrol_job(job_id):
    out = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True).stdout
    return dict(item.split("=", 1) for item in out.split() if "=" in item)


def release_if_requeued(job_id):
    """SLURM holds a requeued job until BeginTime (about 2 minutes); make it eligible now, so the
    test does not wait. Nothing else about the requeue changes."""
    from datetime import datetime

    job = scontrol_job(job_id)
    if job.get("JobState") == "PENDING" and job.get("Reason") == "BeginTime":
        # not in the second of the requeue (its SubmitTime) or the next: slurmd revoked the job's
        # credential then, and a run started within that second is killed at once ("Killing
        # non-startable batch job: Job credential revoked"; seen in CI): SLURM's own wait avoids it
        requeued = datetime.fromisoformat(job["SubmitTime"]).timestamp()
        if time.time() >= requeued + 3:
            subprocess.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"], capture_output=True)


def wait_restarted(job_id, restarts: int = 1, timeout: float = 300) -> dict:
    """After `scontrol requeue`: until the job was held and has started again (its Restarts
    count), SLURM's hold lifted as release_if_requeued does. The requeue passes through
    COMPLETING, then PENDING; a short rerun can end between two looks, so "started again" is any
    state after PENDING, not only RUNNING. Returns scontrol's answer."""

    held, deadline = False, time.monotonic() + timeout
    while True:
        now = scontrol_job(job_id)
        held = held or now.get("JobState") == "PENDING"
        if held and now.get("Restarts") == str(restarts) and now.get("JobState") != "PENDING":
            return now
        assert time.monotonic() < deadline, now
        release_if_requeued(job_id)
        time.sleep(0.5)


def epochs_of(trial) -> list[int]:
    """The epochs in a trial's metrics.jsonl, in order ([] before the first)."""
    import json

    try:
        return [json.loads(line)["epoch"] for line in (Path(trial) / "metrics.jsonl").read_text().splitlines()]
    except (OSError, ValueError):
        return []


def rank_pid(trial, rank: int) -> int:
    """The pid of the process of `trial` with RANK=rank (read from /proc, as an admin would)."""
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            environ = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"dlhpc.train" in argv and str(trial).encode() in argv and f"RANK={rank}".encode() in environ:
            return int(proc.name)
    raise AssertionError(f"no rank {rank} of {trial} running")


# ---- the SLURM controller and its accounting daemon, stopped and started for real -------------


def slurm_daemons_running() -> set:
    daemons = ("slurmctld", "slurmdbd")
    return {d for d in daemons if subprocess.run(["pgrep", "-x", d], capture_output=True).returncode == 0}


def stop_controller(daemons=("slurmctld", "slurmdbd")) -> None:
    """Stop SLURM's controller and its accounting daemon (or only those named), and wait until
    they are gone: start_controller() starts only what is not running, and a daemon still
    shutting down would be taken for running, and stay down for every test after."""

    for daemon in daemons:
        subprocess.run(["pkill", "-x", daemon])
    deadline = time.monotonic() + 60
    while slurm_daemons_running() & set(daemons):
        assert time.monotonic() < deadline, slurm_daemons_running()
        time.sleep(0.2)


def start_controller() -> None:
    """As scripts/testcluster.sh starts them: the accounting daemon first, then the controller."""

    if "slurmdbd" not in slurm_daemons_running():
        subprocess.run(["slurmdbd"], check=True)
        deadline = time.monotonic() + 60
        while subprocess.run(["sacctmgr", "-n", "show", "cluster"], capture_output=True).returncode != 0:
            assert time.monotonic() < deadline, "slurmdbd did not come back"
            time.sleep(0.5)
    if "slurmctld" not in slurm_daemons_running():
        subprocess.run(["slurmctld"], check=True)
    deadline = time.monotonic() + 120
    while subprocess.run(["sinfo", "-h"], capture_output=True).returncode != 0:
        assert time.monotonic() < deadline, "slurmctld did not come back"
        time.sleep(0.5)


def nodes_back_in_service() -> None:
    """For what runs next: a step that ended while the controller was away can leave its node
    draining ("Kill task failed")."""

    deadline = time.monotonic() + 240
    while True:
        states = subprocess.run(["sinfo", "-h", "-N", "-o", "%t"], capture_output=True, text=True).stdout.split()
        if states and all(s in ("idle", "mix", "alloc") for s in states):
            return
        assert time.monotonic() < deadline, states
        subprocess.run(["scontrol", "update", "NodeName=n1,n2", "State=RESUME"], capture_output=True)
        time.sleep(2)


# ---- a test host's processes killed, as when the node dies ---------------------------------------


def kill_host(host: str, keep=()) -> list[str]:
    """SIGKILL every process in the test host's network namespace (its daemons, the job's
    processes on it) but those named in `keep`; returns the names killed."""
    pids = subprocess.run(["ip", "netns", "pids", host], capture_output=True, text=True).stdout.split()
    killed = []
    for pid in pids:
        try:
            name = Path(f"/proc/{pid}/comm").read_text().strip()
            if name not in keep:
                os.kill(int(pid), 9)
                killed.append(name)
        except (OSError, ValueError):
            continue  # (it ended meanwhile)
    return killed


def on_host(host: str, *command: str) -> None:
    """Start a daemon on a test host as scripts/testcluster.sh does (its network and UTS namespaces)."""
    subprocess.run(
        ["nsenter", f"--net=/run/netns/{host}", "unshare", "--uts", "sh", "-c", 'hostname "$0"; exec "$@"', host]
        + list(command),
        check=True,
    )


def pbs_nodes_free(timeout: float = 180) -> None:
    """Until the PBS server has both test hosts free again (a restarted mom reports in)."""

    deadline = time.monotonic() + timeout
    while True:
        out = subprocess.run([str(PBS_BIN / "pbsnodes"), "-a"], capture_output=True, text=True).stdout
        if out.count("state = free") == 2:
            return
        assert time.monotonic() < deadline, out
        time.sleep(1)


# ---- shared by tests/unit/test_admin.py and tests/live/test_admin_live.py ----


SLURM_SITE = ROOT / "examples" / "slurm-gpu-cluster" / "site.yaml"


def render_with_site(dlhpc, site, *args):
    return dlhpc(
        "render", ROOT / "jobs" / "mnist-cnn.yaml", *args, env={"DLHPC_SITE": str(site), "SOURCE_DATE_EPOCH": "0"}
    )


# ---- shared by tests/unit/test_api.py and tests/live/test_api_live.py ----


QUICK_SETS = {"train.epochs": 1, "data.train_subset": 1000, "resources.cpus_per_task": 1}


@pytest.fixture
def runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path / "runs"


# ---- shared by tests/unit/test_backend_contract.py and tests/live/test_backend_contract_live.py ----


BACKENDS = sorted(REGISTRY)


# ---- shared by tests/unit/test_containers.py and tests/live/test_containers_local.py ----


CONTAINER_PROBE = """
import json, os
seen = {k: os.environ.get(k) for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "DLHPC_PARAMS", "PYTHONPATH")}
seen["cwd"] = os.getcwd()
with open(f"probe-{os.environ['RANK']}.json", "w") as f:
    json.dump(seen, f)
"""


def container_spec(tmp_path: Path, runtime: str, image: str, scheduler="slurm", gpus=True) -> Path:
    write(tmp_path / "train.py", CONTAINER_PROBE)
    return write(
        tmp_path / f"{runtime}.yaml",
        f"""
name: in-{runtime}
program: {{script: train.py}}
params: {{lr: 0.1}}
env:
  container: {{image: "{image}", runtime: {runtime}, binds: [/scratch, "/datasets:/data:ro"], gpus: {str(gpus).lower()},
               python: {sys.executable}}}
  vars: {{WANDB_MODE: offline}}
resources: {{scheduler: {scheduler}, tasks_per_node: 2, cpus_per_task: 1, time: "00:05:00"}}
runs_dir: {tmp_path / "runs"}
""",
    )


# ---- shared by tests/unit/test_own_code.py and tests/live/test_own_code_local.py ----


EXAMPLE = ROOT / "examples" / "own-code"


RANK_PROBE = """
import json, os, torch, torch.distributed as dist
dist.init_process_group("gloo")  # env://, as under torchrun
t = torch.tensor([float(dist.get_rank() + 1)])
dist.all_reduce(t)
names = ["RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK", "MASTER_ADDR", "MASTER_PORT",
         "TORCHELASTIC_RUN_ID", "DLHPC_TRIAL_DIR", "DLHPC_PARAMS", "DLHPC_CHECKPOINT"]
seen = {n: os.environ.get(n) for n in names}
seen.update(cwd=os.getcwd(), sum=t.item())
with open(f"rank-{dist.get_rank()}.json", "w") as f:
    json.dump(seen, f)
dist.destroy_process_group()
"""


def project(tmp_path: Path, script: str = RANK_PROBE, spec: str = "") -> Path:
    folder = tmp_path / "project"
    folder.mkdir()
    write(folder / "train.py", script)
    return write(
        folder / "exp.yaml",
        spec
        or f"""
name: probe
program: {{script: train.py, args: ["--lr", "{{params.lr}}"]}}
params: {{lr: 0.1, note: "a b"}}
resources: {{tasks_per_node: 2, cpus_per_task: 1, time: "00:05:00"}}
runs_dir: {tmp_path / "runs"}
""",
    )


def only_experiment(runs: Path) -> Path:
    (exp,) = [d for d in runs.iterdir() if (d / "experiment.json").is_file()]
    return exp


# ---- shared by tests/unit/test_reliability.py and tests/live/test_reliability_live.py ----


def slurm_experiment(tmp_path):
    return make_experiment(
        tmp_path / "runs",
        [
            (
                "000-aaaaaa",
                {"train.seed": 0},
                {"result.json": json.dumps({"state": "COMPLETED", "test_acc": 0.97, "epochs": 2})},
            ),
            ("001-bbbbbb", {"train.seed": 1}, {}),
        ],
        swept=("train.seed",),
        scheduler="slurm",
        jobs=[("77_0", "000-aaaaaa"), ("77_1", "001-bbbbbb")],
        name="faults",
    )


# ---- shared by tests/unit/test_render.py and tests/live/test_render_live.py ----


JOBS = sorted(p.stem for p in (ROOT / "jobs").glob("*.yaml"))


FLAVOURS = {
    "slurm": ["resources.scheduler=slurm"],
    "openpbs": ["resources.scheduler=pbs", "resources.pbs.flavor=openpbs"],
    "torque": ["resources.scheduler=pbs", "resources.pbs.flavor=torque"],
}


def rendered(job, flavour, extra=()):
    spec = load_spec(ROOT / "jobs" / f"{job}.yaml", FLAVOURS[flavour] + ["runs_dir=/runs", *extra], use_site=False)
    return plan(spec)


# ---- shared by tests/unit/test_rendezvous.py and tests/live/test_rendezvous_live.py ----


def publish(trial_dir, port, addresses, job="77"):
    (trial_dir / f".rendezvous-{job}-0").write_text(json.dumps({"port": port, "addresses": addresses, "node": "n1"}))
    return Identity(rank=1, world_size=2, num_nodes=2, hostnames=["n1", "n2"], job_id=job, launcher="test")


# ---- shared by tests/unit/test_shared_safety.py and tests/live/test_shared_safety_live.py ----


QUICK_SPEC = "name: quick\nmodel: {name: softmax}\ntrain: {epochs: 1, batch_size: 256}\ndata: {train_subset: 512}\n"


POLICY_SITE = """resources: {scheduler: slurm}
site:
  policy:
    partitions: [debug]
    accounts: [proj]
    max_gpus_per_node: 1
    required: [resources.account]
"""


def policy_env(tmp_path):
    return {"DLHPC_SITE": str(write(tmp_path / "site" / "site.yaml", POLICY_SITE))}


# ---- shared by tests/unit/test_site_policy.py and tests/live/test_site_policy_live.py ----


def site(tmp_path, text):
    return {"DLHPC_SITE": str(write(tmp_path / "site" / "site.yaml", text))}


POLICY = """\
resources:
  scheduler: slurm
site:
  policy:
    partitions: [debug, gpu]
    accounts: [workshop]
    max_nodes: 2
    max_gpus_per_node: 2
    max_total_gpus: 2
    max_time: "01:00:00"
    max_mem: 8G
    max_array_size: 4
    required: [resources.account]
"""


# ---- shared by tests/unit/test_tracking.py and tests/live/test_tracking_live.py ----


def sweep(tmp_path: Path, epochs: int = 3) -> Path:
    spec = write(
        tmp_path / "tb.yaml",
        f"""
name: tb
model: {{name: softmax}}
train: {{epochs: {epochs}, target_accuracy: 0.5}}
data: {{train_subset: 1000, root: {DATA}}}
resources: {{cpus_per_task: 1, time: "00:05:00"}}
tracking: {{tensorboard: true}}
sweep: {{train.lr: [0.05, 0.1]}}
runs_dir: {tmp_path / "runs"}
""",
    )
    return spec


def trials_of(runs: Path) -> list[Path]:
    (exp,) = [d for d in runs.iterdir() if (d / "experiment.json").is_file()]
    return sorted(d for d in exp.iterdir() if (d / "trial.json").is_file())


@pytest.fixture(scope="module")
def finished_sweep(tmp_path_factory) -> Path:
    """A 2-trial sweep run here (2 epochs each), once for the export tests."""
    tmp = tmp_path_factory.mktemp("sweep")
    env = {**os.environ, "HOME": str(tmp / "home")}
    proc = subprocess.run(
        [sys.executable, "-m", "dlhpc", "run", sweep(tmp, epochs=2), "--here"], env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return trials_of(tmp / "runs")[0].parent


# ---- shared by tests/unit/test_training.py and tests/live/test_training_live.py ----


def make_trial(tmp_path, text, sets=()):
    spec = load_spec_text(text, "t.yaml", sets=[f"runs_dir={tmp_path / 'runs'}", f"data.root={DATA}", *sets])
    p = experiment.materialize(experiment.plan(spec))
    return p.exp_dir / p.trials[0].id


def read(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


SMALL = """
name: small
model: {name: cnn, width: 8}
train: {epochs: 3, batch_size: 128, lr: 0.1, seed: 5, target_accuracy: 0.9}
data: {train_subset: 6000}
resources: {cpus_per_task: 2}
"""


# ---- shared by the SLURM and PBS tests: hostile values, and two experiments chained with --after ----


HOSTILE_DIR = "out put $(touch SENTINEL1) `touch SENTINEL2` ; && % é"


HOSTILE_VALUE = "a b'c\"d$(touch SENTINEL3)`touch SENTINEL4`;x&&y%z é"


def submit_hostile(dlhpc, tmp_path, scheduler: str) -> tuple[Path, dict]:
    """Submit a one-trial softmax spec to `scheduler` whose runs_dir and an env value are full of
    shell metacharacters, and whose setup line echoes the value back; (experiment, record)."""
    spec = write(
        tmp_path / "h.yaml",
        f"""
name: hostile
model: {{name: softmax}}
train: {{epochs: 1, target_accuracy: 0.5}}
data: {{train_subset: 1000, root: {DATA}}}
resources: {{scheduler: {scheduler}, cpus_per_task: 1, mem: 2G, time: "00:05:00"}}
""",
    )
    weird = tmp_path / HOSTILE_DIR
    r = dlhpc(
        "submit",
        spec,
        "--set",
        f"runs_dir={weird}",
        "--set",
        f"env.vars.HOSTILE={HOSTILE_VALUE}",
        "--set",
        "env.setup=['echo \"HOSTILE=[$HOSTILE]\"']",
    )
    assert r.code == 0, r
    exp = Path(exp_dir_from(r.out))
    assert exp.parent == weird
    return exp, json.loads((exp / "experiment.json").read_text())


def assert_ran_as_written(dlhpc, tmp_path, exp: Path, record: dict, timeout=300):
    """The hostile trial completed, saw the value intact, and no substitution ran anywhere."""
    report = wait_finished(dlhpc, exp, timeout=timeout)
    assert report["trials"][0]["state"] == "COMPLETED", report
    out = (exp / record["jobs"][0]["trial"] / "job.out").read_text()
    assert f"HOSTILE=[{HOSTILE_VALUE}]" in out
    for root in (tmp_path, tmp_path / HOSTILE_DIR, exp, exp / "logs", Path.cwd()):
        assert not list(root.glob("SENTINEL*")), root


CHAIN = """
name: {name}
model: {{name: softmax}}
train: {{epochs: 1}}
data: {{train_subset: 2000}}
env: {{setup: ["{setup}"]}}
resources: {{scheduler: {scheduler}, cpus_per_task: 1, mem: 2G, time: "00:05:00", report: true}}
sweep: {{train.seed: [0, 1]}}
"""


def chain(dlhpc, tmp_path, scheduler, env=None):
    """first (two trials), then second --after first; both with a report job. Returns the dirs."""

    def submit(name, *extra, setup="sleep 6"):
        spec = write(tmp_path / f"{name}.yaml", CHAIN.format(name=name, setup=setup, scheduler=scheduler))
        r = dlhpc("submit", spec, "--runs-dir", tmp_path / "runs", *extra, env=env)
        assert r.code == 0, r
        return r, next((tmp_path / "runs").glob(f"{name}-*"))

    _, first = submit("first")
    r, second = submit("second", "--after", "first")
    assert "--after: starts when 2 job(s) of first-" in r.out and "(afterok)" in r.out, r.out
    for exp in (first, second):
        deadline = time.monotonic() + 180
        while not (exp / "curves.png").exists():  # written by the report job, nobody watching
            assert time.monotonic() < deadline, exp
            time.sleep(1)
        table = (exp / "summary.md").read_text()
        assert table.count("| COMPLETED |") == 2, table
        assert len((exp / "summary.csv").read_text().splitlines()) == 3
    assert json.loads((second / "experiment.json").read_text())["report_job"]

    # afterok on a failed experiment would never start: refused; --after-any takes it
    _, broken = submit("broken", setup="exit 3")
    wait_finished(lambda *a: dlhpc(*a, env=env), broken, timeout=120)
    spec = write(tmp_path / "third.yaml", CHAIN.format(name="third", setup="true", scheduler=scheduler))
    refused = dlhpc("submit", spec, "--runs-dir", tmp_path / "runs", "--after", "broken", env=env)
    assert refused.code == 2 and "did not complete (FAILED)" in refused.err and "--after-any" in refused.err
    taken = dlhpc("submit", spec, "--runs-dir", tmp_path / "runs", "--after", "broken", "--after-any", env=env)
    assert taken.code == 0 and "ended already; nothing to wait for" in taken.out, taken
    return first, second

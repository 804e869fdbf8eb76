"""Containers (docs/containers.md): the command each runtime is given, as its documentation says
(golden scripts), checked argument by argument through a recording stand-in on PATH for the
runtimes that cannot run here (Apptainer, Enroot, Pyxis), and the image checked at submit.
Podman and Charliecloud run for real on the test clusters: test_containers_live.py."""

import json
import os
import stat
import sys
from pathlib import Path

import pytest

from conftest import container_spec
from dlhpc.containers import dlhpc_package_dir

SHIM = r"""#!PYTHON
import json, os, sys
argv = sys.argv
name = os.path.basename(argv[0])
keep = ("RANK", "WORLD_SIZE", "DLHPC_TRIAL_DIR", "PYTHONPATH", "MASTER_PORT")
with open(os.environ["SHIM_LOG"], "a") as f:
    f.write(json.dumps({"argv": [name] + argv[1:], "env": {k: os.environ.get(k) for k in keep}}) + "\n")
workdir = None
if name == "srun":  # Pyxis: the program follows srun's options
    start = next(i for i, a in enumerate(argv[1:], 1) if not a.startswith("-"))
    workdir = next(a.split("=", 1)[1] for a in argv if a.startswith("--container-workdir="))
else:
    start = argv.index(os.environ["SHIM_IMAGE"]) + 1
    workdir = argv[argv.index("--pwd") + 1] if "--pwd" in argv else None
payload = argv[start:]
if workdir:
    os.chdir(workdir)
os.execvp(payload[0], payload)
"""


pytestmark = pytest.mark.usefixtures("fixed_clock")  # the scripts' stamps: SOURCE_DATE_EPOCH 0


def shim_on_path(tmp_path: Path, name: str, image: str, monkeypatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    shim = bin_dir / name
    shim.write_text(SHIM.replace("PYTHON", sys.executable))
    shim.chmod(shim.stat().st_mode | stat.S_IXUSR)
    log = tmp_path / f"{name}.log"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("SHIM_LOG", str(log))
    monkeypatch.setenv("SHIM_IMAGE", image)
    return log


@pytest.mark.parametrize("runtime, command", [("apptainer", "apptainer"), ("enroot", "enroot"), ("pyxis", "srun")])
def test_each_rank_starts_in_the_runtime_with_binds_gpus_env_and_workdir(
    dlhpc, tmp_path, monkeypatch, runtime, command
):
    image = tmp_path / ("img.sif" if runtime == "apptainer" else "img.sqsh")
    image.write_bytes(b"an image")
    log = shim_on_path(tmp_path, command, str(image), monkeypatch)
    spec = container_spec(tmp_path, runtime, str(image), scheduler="local")
    r = dlhpc("run", spec, "--here", env={"PATH": os.environ["PATH"]})
    assert r.code == 0, r
    (exp,) = (tmp_path / "runs").iterdir()
    (trial,) = [d for d in exp.iterdir() if (d / "trial.json").is_file()]
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    # the store's keeper runs in the image too (the store and the ranks must share a torch)
    keepers = [c for c in calls if "import torch.distributed as dist" in " ".join(c["argv"])]
    calls = [c for c in calls if c not in keepers]
    assert len(keepers) == 1 and len(calls) == 2  # one keeper, one call per rank
    for call in calls:
        argv = call["argv"]
        joined = " ".join(argv)
        assert f"{exp}:{exp}" in joined  # the experiment, at the same path inside
        assert f"{dlhpc_package_dir()}:/opt/dlhpc/lib/dlhpc:ro" in joined  # dlhpc's code, read-only
        assert "/scratch:/scratch" in joined and "/datasets:/data:ro" in joined  # the spec's binds
        if runtime == "apptainer":
            assert argv[:4] == ["apptainer", "exec", "--pwd", str(trial)] and "--nv" in argv
            assert argv[argv.index(str(image)) + 1 :][:2] == [sys.executable, "-u"]
        if runtime == "enroot":
            for name in ("RANK", "WORLD_SIZE", "MASTER_PORT", "DLHPC_PARAMS", "PYTHONPATH", "WANDB_MODE"):
                assert ["--env", name] == argv[argv.index(name) - 1 : argv.index(name) + 1], (name, argv)
            assert ["--env", "NVIDIA_VISIBLE_DEVICES"] == argv[argv.index("NVIDIA_VISIBLE_DEVICES") - 1 :][:2]
            assert argv[argv.index(str(image)) + 1 :][:4] == ["sh", "-c", 'cd "$0" && exec "$@"', str(trial)]
        if runtime == "pyxis":
            assert argv[:2] == ["srun", "--overlap"] and f"--container-image={image}" in argv
            assert f"--container-workdir={trial}" in argv and "--export=ALL" in argv
    ranks = sorted(call["env"]["RANK"] for call in calls)
    assert ranks == ["0", "1"]
    for n in (0, 1):
        seen = json.loads((trial / f"probe-{n}.json").read_text())
        assert (
            seen["cwd"] == str(trial) and seen["WORLD_SIZE"] == "2" and json.loads(seen["DLHPC_PARAMS"]) == {"lr": 0.1}
        )
        assert seen["PYTHONPATH"] == f"{exp}/code:/opt/dlhpc/lib"


def test_the_image_digest_is_recorded_and_shown(dlhpc, tmp_path, monkeypatch):
    import hashlib

    image = tmp_path / "img.sif"
    image.write_bytes(b"one image")
    shim_on_path(tmp_path, "apptainer", str(image), monkeypatch)
    spec = container_spec(tmp_path, "apptainer", str(image), scheduler="local", gpus=False)
    assert dlhpc("run", spec, "--here", env={"PATH": os.environ["PATH"]}).code == 0
    (exp,) = (tmp_path / "runs").iterdir()
    record = json.loads((exp / "experiment.json").read_text())
    digest = "sha256:" + hashlib.sha256(b"one image").hexdigest()
    assert record["container"] == {"image": str(image), "runtime": "apptainer", "digest": digest}
    assert digest in dlhpc("show", exp).out
    rows = json.loads(dlhpc("summary", exp, "--commit", "--format", "json").out)
    assert rows[0]["image"] == digest[:19]

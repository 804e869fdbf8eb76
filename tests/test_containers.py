"""Containers (docs/containers.md): the command each runtime is given, as its documentation says
(golden scripts), checked argument by argument through a recording stand-in on PATH for the
runtimes that cannot run here (Apptainer, Enroot, Pyxis), and the image checked at submit.
Podman and Charliecloud run for real on the test clusters: test_containers_live.py."""

import json
import os
import re
import stat
import sys
from pathlib import Path

import pytest

from conftest import ROOT, write
from dlhpc.containers import dlhpc_package_dir, guess_runtime
from dlhpc.plan.experiment import plan
from dlhpc.spec.load import load_spec

GOLDEN = ROOT / "tests" / "golden"
RUNTIMES = ("apptainer", "podman", "charliecloud", "enroot", "pyxis")
IMAGES = {
    "apptainer": "/images/pytorch.sif",
    "podman": "nvcr.io/nvidia/pytorch:24.05-py3",
    "charliecloud": "/images/pytorch-rootfs",
    "enroot": "/images/pytorch.sqsh",
    "pyxis": "nvcr.io#nvidia/pytorch:24.05-py3",
}

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

PROBE = """
import json, os
seen = {k: os.environ.get(k) for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "DLHPC_PARAMS", "PYTHONPATH")}
seen["cwd"] = os.getcwd()
with open(f"probe-{os.environ['RANK']}.json", "w") as f:
    json.dump(seen, f)
"""


@pytest.fixture(autouse=True)
def fixed_clock(monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "0")


def container_spec(tmp_path: Path, runtime: str, image: str, scheduler="slurm", gpus=True) -> Path:
    write(tmp_path / "train.py", PROBE)
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


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_golden_container_scripts(runtime, tmp_path):
    spec = load_spec(container_spec(tmp_path, runtime, IMAGES[runtime]), use_site=False)
    text = plan(spec).scripts[0].text
    for real, shown in ((str(tmp_path), "<tmp>"), (dlhpc_package_dir(), "<dlhpc>"), (sys.executable, "<python>")):
        text = text.replace(real, shown)
    text = re.sub(r"spec-hash [0-9a-f]{12}", "spec-hash <of the spec, paths and all>", text)
    path = GOLDEN / f"container-{runtime}.slurm.sh"
    if os.environ.get("DLHPC_REGEN_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text(), f"regenerate with DLHPC_REGEN_GOLDEN=1 pytest {__file__} and review the diff"


GUESSES = [
    ("/x/a.sif", "apptainer"),
    ("/x/a.sqsh", "enroot"),
    ("/x/rootfs", "charliecloud"),
    ("docker://x/y", "podman"),
]


@pytest.mark.parametrize("image, runtime", GUESSES)
def test_the_runtime_is_guessed_from_the_image(image, runtime):
    assert guess_runtime(image) == runtime


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


@pytest.mark.parametrize(
    "image, runtime, words",
    [
        ("/no/such/image.sif", "apptainer", "no image file /no/such/image.sif"),
        ("/no/such/rootfs", "charliecloud", "no image folder /no/such/rootfs"),
    ],
)
def test_a_missing_image_is_refused_at_submit_naming_the_line(dlhpc, tmp_path, image, runtime, words):
    spec = container_spec(tmp_path, runtime, image, scheduler="local")
    for command in (["validate", spec], ["submit", spec, "--here"]):
        r = dlhpc(*command)
        assert r.code == 2 and words in r.err and f"{spec.name}:" in r.err, r
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").iterdir())


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


SITE_IMAGE = """\
resources: {scheduler: slurm}
env:
  container: {image: /shared/images/site.sif, runtime: apptainer}
site:
  policy:
    container_images: [/shared/images/site.sif, /shared/images/site-next.sif]
"""


def test_the_site_sets_the_image_and_its_policy_holds_a_spec_to_its_list(dlhpc, tmp_path):
    env = {"DLHPC_SITE": str(write(tmp_path / "site.yaml", SITE_IMAGE))}
    rendered = dlhpc("render", write(tmp_path / "plain.yaml", "name: plain\n"), env=env)
    assert rendered.code == 0 and '"/shared/images/site.sif"' in rendered.out, rendered  # the site's image
    other = write(tmp_path / "other.yaml", "name: other\nenv:\n  container: {image: /home/me/mine.sif}\n")
    r = dlhpc("validate", other, env=env)
    assert r.code == 2 and "other.yaml:3" in r.err and "image '/home/me/mine.sif' is not allowed" in r.err, r
    assert "site.yaml:6" in r.err, r  # the rule's own line


def test_templates_check_fails_a_site_template_that_drops_the_container(dlhpc, tmp_path):
    image = tmp_path / "site.sif"
    image.write_bytes(b"image")
    write(tmp_path / "templates" / "local" / "default.sh.j2", '{% extends "shipped/local/default.sh.j2" %}\n'
          "{% block container %}{% endblock %}\n")  # fmt: skip
    site_file = write(
        tmp_path / "site.yaml", f"env:\n  container: {{image: {image}}}\nsite:\n  template_dir: templates\n"
    )
    spec = write(tmp_path / "s.yaml", "name: s\ntrain: {epochs: 1}\n")
    r = dlhpc("templates", "check", "--site", site_file, "--scheduler", "local", spec)
    assert r.code == 1 and "never exports DLHPC_CONTAINER" in r.out and "keep the `container` block" in r.out, r
    (tmp_path / "templates" / "local" / "default.sh.j2").unlink()
    r = dlhpc("templates", "check", "--site", site_file, "--scheduler", "local", spec)
    assert r.code == 0 and f"runs the program in {image}" in r.out, r

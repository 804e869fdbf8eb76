"""Containers (docs/containers.md): the command each runtime is given, as its documentation says
(golden scripts), checked argument by argument through a recording stand-in on PATH for the
runtimes that cannot run here (Apptainer, Enroot, Pyxis), and the image checked at submit.
Podman and Charliecloud run for real on the test clusters: test_containers_live.py."""

import os
import re
import sys

import pytest

from conftest import ROOT, container_spec, write
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


pytestmark = pytest.mark.usefixtures("fixed_clock")  # the scripts' stamps: SOURCE_DATE_EPOCH 0


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

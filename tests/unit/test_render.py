"""Rendered job scripts: golden files, bash -n, directives first, stamps, quoting, templates."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import FLAVOURS, JOBS, ROOT, rendered, write
from dlhpc import __version__
from dlhpc.plan.experiment import plan
from dlhpc.spec.load import load_spec

GOLDEN = ROOT / "tests" / "golden"


def normalise(text):
    return text.replace(sys.executable, "<python>")


pytestmark = pytest.mark.usefixtures("fixed_clock")  # the scripts' stamps: SOURCE_DATE_EPOCH 0


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("job", JOBS)
def test_golden(job, flavour):
    p = rendered(job, flavour)
    text = "\n# ---- next job script ----\n".join(normalise(s.text) for s in p.scripts)
    path = GOLDEN / f"{job}.{flavour}.sh"
    if os.environ.get("DLHPC_REGEN_GOLDEN"):
        path.write_text(text)
    assert path.exists(), (
        f"missing golden file {path}; regenerate with DLHPC_REGEN_GOLDEN=1 pytest tests/unit/test_render.py"
    )
    expected = path.read_text()
    if text != expected:
        import difflib

        diff = "".join(difflib.unified_diff(expected.splitlines(True), text.splitlines(True), str(path), "rendered"))
        pytest.fail(
            f"rendered script differs from {path}:\n{diff}\n"
            "If the change is intended: DLHPC_REGEN_GOLDEN=1 pytest tests/unit/test_render.py, and review git diff."
        )


def first_command_line(lines):
    for i, line in enumerate(lines[1:], 1):
        if line.strip() and not line.lstrip().startswith("#"):
            return i
    return len(lines)


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("job", JOBS)
def test_scripts_are_valid_bash_with_directives_first(job, flavour, tmp_path):
    p = rendered(job, flavour)
    for script in p.scripts:
        path = write(tmp_path / "job.sh", script.text)
        check = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
        assert check.returncode == 0, check.stderr
        lines = script.text.splitlines()
        assert lines[0] == "#!/bin/bash"
        first = first_command_line(lines)
        prefix = "#SBATCH" if flavour == "slurm" else "#PBS"
        directive_lines = [i for i, line in enumerate(lines) if line.startswith(prefix)]
        assert directive_lines and max(directive_lines) < first, f"a directive after the first command in {job}"
        assert f"dlhpc {__version__}" in script.text
        assert f"spec-hash {p.spec.hash()}" in script.text


def test_sweep_renders_one_array_and_scaling_one_job_per_shape():
    sweep = rendered("sweep-lr", "slurm")
    assert len(sweep.scripts) == 1
    assert "#SBATCH --array=0-7%4" in sweep.scripts[0].text
    assert " ".join(t.id for t in sweep.trials) in sweep.scripts[0].text
    scaling = rendered("scaling", "slurm")
    assert len(scaling.scripts) == 4  # different resources cannot share an array
    assert {re.search(r"--nodes=(\d)", s.text).group(1) for s in scaling.scripts} == {"1", "2"}


def test_arrays_split_at_max_array_size():
    spec = load_spec(ROOT / "jobs" / "sweep-lr.yaml", ["resources.scheduler=slurm"], use_site=False)
    p = plan(spec, max_array=3)
    assert [len(s.trial_ids) for s in p.scripts] == [3, 3, 2]
    assert "#SBATCH --array=0-1%2" in p.scripts[-1].text


def test_gpu_request_and_extra_directives():
    p = rendered(
        "mnist-cnn", "slurm", ["resources.gpus_per_node=4", "resources.extra={mail-type: END, exclusive: null}"]
    )
    text = p.scripts[0].text
    assert "#SBATCH --gpus-per-node=4" in text and "#SBATCH --ntasks-per-node=4" in text
    assert "#SBATCH --mail-type=END" in text and "#SBATCH --exclusive\n" in text
    pbs = rendered("mnist-cnn", "openpbs", ["resources.gpus_per_node=2"]).scripts[0].text
    assert "ngpus=2" in pbs and "mpiprocs=2" in pbs
    torque = rendered("mnist-cnn", "torque", ["resources.gpus_per_node=2"]).scripts[0].text
    assert "#PBS -l nodes=1:ppn=4:gpus=2" in torque


HOSTILE = "a b'c\"d$(touch /tmp/dlhpc-pwned)`touch /tmp/dlhpc-pwned2`;x&&y%z é"


def test_hostile_values_are_quoted(tmp_path):
    out = tmp_path / "we ird $(touch pwned) `x` ; && %"
    p = rendered("mnist-cnn", "slurm", [f"runs_dir={out}", f"env.vars.HOSTILE={HOSTILE}"])
    text = p.scripts[0].text
    path = write(tmp_path / "job.sh", text)
    assert subprocess.run(["bash", "-n", str(path)]).returncode == 0
    # evaluate the lines that carry the values: they must come out verbatim, running nothing
    exp_line = next(line for line in text.splitlines() if line.startswith("export DLHPC_EXP="))
    var_line = next(line for line in text.splitlines() if line.startswith("export HOSTILE="))
    probe = subprocess.run(
        ["bash", "-c", f'{exp_line}\n{var_line}\nprintf \'%s\\n%s\' "$DLHPC_EXP" "$HOSTILE"'],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert probe.stdout.split("\n") == [str(out / p.exp_dir.name), HOSTILE]
    assert not (tmp_path / "pwned").exists() and not Path("/tmp/dlhpc-pwned").exists()


def test_newline_in_a_value_is_refused(dlhpc, tmp_path):
    spec = write(tmp_path / "s.yaml", 'name: a\nenv:\n  vars:\n    X: "line1\\nline2"\n')
    r = dlhpc("render", spec)
    assert r.code == 2 and "without newlines" in r.err


def test_site_template_overrides_one_block(dlhpc, tmp_path):
    site_dir = tmp_path / "site-templates" / "slurm"
    write(
        site_dir / "default.sh.j2",
        '{% extends "shipped/slurm/default.sh.j2" %}\n'
        "{% block gpus %}{% if resources.gpus_per_node %}#SBATCH --gres=gpu:{{ resources.gpus_per_node }}\n"
        "{% endif %}{% endblock %}\n",
    )
    spec = write(tmp_path / "s.yaml", "name: a\nresources: {scheduler: slurm, gpus_per_node: 2}\n")
    r = dlhpc("render", spec, env={"DLHPC_TEMPLATES": str(tmp_path / "site-templates")})
    assert r.code == 0, r
    assert "#SBATCH --gres=gpu:2" in r.out and "--gpus-per-node" not in r.out
    assert str(site_dir / "default.sh.j2") in r.err  # render says which file it used
    listing = dlhpc("templates", "list", env={"DLHPC_TEMPLATES": str(tmp_path / "site-templates")})
    assert re.search(r"slurm/default\s+env", listing.out), listing


def test_broken_template_names_file_and_line(dlhpc, tmp_path):
    tdir = tmp_path / "t"
    write(tdir / "broken.sh.j2", "#!/bin/bash\n#SBATCH --x\n{% if %}\n")
    write(tdir / "undef.sh.j2", "#!/bin/bash\necho ok\necho {{ no_such_variable }}\n")
    for name, needle in (("broken", "broken.sh.j2:3"), ("undef", "undef.sh.j2:3")):
        spec = write(tmp_path / f"{name}.yaml", f"name: a\ntemplate: {name}\n")
        r = dlhpc("render", spec, env={"DLHPC_TEMPLATES": str(tdir)})
        assert r.code == 2, r
        assert needle in r.err and "Traceback" not in r.err, r


def test_unknown_template_lists_known_ones(dlhpc, tmp_path):
    spec = write(tmp_path / "s.yaml", "name: a\ntemplate: nosuch\n")
    r = dlhpc("render", spec)
    assert r.code == 2 and "slurm/default" in r.err


def test_render_writes_files(dlhpc, tmp_path):
    r = dlhpc("render", ROOT / "jobs" / "scaling.yaml", "-o", tmp_path / "out")
    assert r.code == 0, r
    assert len(list((tmp_path / "out").glob("*.sh"))) == 4


def test_template_by_path_and_by_name_with_suffix(dlhpc, tmp_path):
    own = write(
        tmp_path / "mine.sh.j2", '{% extends "slurm/default.sh.j2" %}\n{% block setup %}echo mine\n{% endblock %}\n'
    )
    for ref, needle in ((own, "echo mine"), ("pbs/openpbs.sh.j2", "#PBS -N a")):
        spec = write(tmp_path / "s.yaml", f"name: a\ntemplate: {ref}\nresources: {{scheduler: slurm}}\n")
        r = dlhpc("render", spec)
        assert r.code == 0 and needle in r.out, r
    missing = write(tmp_path / "m.yaml", f"name: a\ntemplate: {tmp_path / 'nope.sh.j2'}\n")
    r = dlhpc("render", missing)
    assert r.code == 2 and "not found" in r.err

"""`dlhpc report`: one self-contained page, checked in a real headless browser (Chromium)."""

import os
import re
import shutil
import subprocess

import pytest

from conftest import ROOT


@pytest.fixture(scope="module")
def chromium():
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("CI must have Debian's chromium (scripts/test.sh installs it as root)")
        pytest.skip("no chromium: apt-get install chromium")
    return path


def browse(chromium, page, *args):
    argv = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", *args, f"file://{page}"]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120)


def test_report_renders_table_curves_scaling_and_environment(dlhpc, tmp_path, chromium):
    r = dlhpc(
        "run",
        ROOT / "jobs" / "mnist-softmax.yaml",
        "--runs-dir",
        tmp_path / "runs",
        "--set",
        "train.epochs=2",
        "--set",
        "data.train_subset=3000",
        "--set",
        "sweep.resources.tasks_per_node=[1, 2]",
        "--set",
        "resources.cpus_per_task=1",
    )
    assert r.code == 0, r
    (exp,) = (tmp_path / "runs").iterdir()
    page = tmp_path / "report.html"
    made = dlhpc("report", exp, "-o", page)
    assert made.code == 0, made
    text = page.read_text()
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", text)  # nothing fetched from the network
    dom = browse(chromium, page, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert 'data-figures="1"' in dom.stdout  # the inline PNG decoded in the browser
    table = dom.stdout[dom.stdout.index('<table id="summary">') :]
    table = table[: table.index("</table>")]
    assert table.count("<tr") == 3 and "resources.tasks_per_node" in table and "speedup" in table
    assert "rank nodes" in dom.stdout and "torch" in dom.stdout  # the environment record
    shot = tmp_path / "shot.png"
    taken = browse(chromium, page, "--window-size=1300,1400", f"--screenshot={shot}")
    assert taken.returncode == 0 and shot.is_file(), taken.stderr[-2000:]
    from PIL import Image

    image = Image.open(shot).convert("RGB")
    assert image.size == (1300, 1400)
    colours = image.getcolors(maxcolors=1 << 20)
    coloured = sum(n for n, (red, green, blue) in colours if abs(red - green) > 60 or abs(green - blue) > 60)
    assert coloured > 2000, coloured  # the curves' coloured lines and markers are on screen, not a blank page

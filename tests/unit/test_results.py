"""summary / plot over run directories, including broken ones: flagged rows, never a traceback."""

import csv
import io
import json
import struct

import pytest

from conftest import make_experiment


def metrics(n, acc=0.98, loss=0.05, ws=1):
    return "".join(
        json.dumps(
            {
                "epoch": e,
                "train_loss": loss,
                "train_acc": acc,
                "test_loss": loss,
                "test_acc": acc + e / 1000,
                "epoch_time_s": 1.0,
                "images_per_s": 1000.0 * ws,
                "lr": 0.1,
                "world_size": ws,
                "elapsed_s": float(e),
            }
        )
        + "\n"
        for e in range(1, n + 1)
    )


def result(acc, state="COMPLETED", ws=1, **extra):
    return json.dumps(
        {
            "state": state,
            "test_acc": acc,
            "best_test_acc": acc,
            "time_to_target_s": 1.0,
            "train_time_s": 3.0,
            "images_per_s": 1000.0 * ws,
            "epochs": 3,
            "world_size": ws,
            "job_id": None,
            "nodes": 1,
            "device": "cpu",
            **extra,
        }
    )


@pytest.fixture
def messy(tmp_path):
    return make_experiment(
        tmp_path / "runs",
        [
            ("000-aaaaaa", {"train.lr": 0.1}, {"metrics.jsonl": metrics(3), "result.json": result(0.991)}),
            ("001-bbbbbb", {"train.lr": 0.2}, {"metrics.jsonl": metrics(2) + '{"epoch": 3, "train_lo'}),  # torn line
            ("002-cccccc", {"train.lr": 0.3}, {"metrics.jsonl": metrics(3), "result.json": '{"state": "COMPL'}),
            ("003-dddddd", {"train.lr": 0.4}, {}),  # never started
            (
                "004-eeeeee",
                {"train.lr": 0.5},
                {
                    "metrics.jsonl": metrics(1).replace("0.05", "NaN"),
                    "result.json": result(0.1, state="FAILED", error="loss is NaN"),
                },
            ),
        ],
    )


def test_summary_flags_broken_trials_and_exits_1(dlhpc, messy, tmp_path):
    r = dlhpc("summary", messy, "--format", "json")
    assert r.code == 1, r  # one trial failed
    assert "Traceback" not in r.err
    rows = {row["trial"]: row for row in json.loads(r.out)}
    assert len(rows) == 5
    assert rows["000-aaaaaa"]["state"] == "COMPLETED" and rows["000-aaaaaa"]["test_acc"] == 0.991
    assert rows["001-bbbbbb"]["state"] == "RUNNING" and "unreadable" in rows["001-bbbbbb"]["flags"]
    assert rows["001-bbbbbb"]["epochs_done"] == 2
    assert "corrupt" in rows["002-cccccc"]["flags"]
    assert rows["003-dddddd"]["state"] == "PENDING"  # never started, and no job to ask about
    assert rows["004-eeeeee"]["state"] == "FAILED" and "NaN" in rows["004-eeeeee"]["flags"]
    for key in (
        "trial",
        "name",
        "model",
        "state",
        "job_id",
        "world_size",
        "epochs",
        "test_acc",
        "best_test_acc",
        "time_to_target_s",
        "train_time_s",
        "images_per_s",
        "train.lr",
    ):
        assert key in rows["000-aaaaaa"], key
    table = dlhpc("summary", messy)
    assert table.code == 1 and "000-aaaaaa" in table.out and "99.10" in table.out


def test_summary_exit_0_when_nothing_failed(dlhpc, tmp_path):
    exp = make_experiment(
        tmp_path / "runs",
        [("000-aaaaaa", {"train.lr": 0.1}, {"metrics.jsonl": metrics(3), "result.json": result(0.99)})],
    )
    assert dlhpc("summary", exp).code == 0


def test_formats_and_output_file(dlhpc, messy, tmp_path):
    r = dlhpc("summary", messy, "--format", "csv", "--sort", "train.lr")
    rows = list(csv.DictReader(io.StringIO(r.out)))
    assert [row["train.lr"] for row in rows] == ["0.1", "0.2", "0.3", "0.4", "0.5"]
    md = dlhpc("summary", messy, "--format", "markdown")
    assert md.out.startswith("| trial |") and md.out.count("\n") == 7
    out = tmp_path / "table.json"
    r = dlhpc("summary", messy, "--format", "json", "-o", out)
    assert r.out == "" and len(json.loads(out.read_text())) == 5
    bad = dlhpc("summary", messy, "--sort", "nosuch")
    assert bad.code == 2 and "nosuch" in bad.err


def test_experiment_lookup_by_name_and_latest(dlhpc, messy, tmp_path):
    r = dlhpc("summary", "exp", "--format", "json", cwd=tmp_path)
    assert len(json.loads(r.out)) == 5
    r = dlhpc("status", "--json", cwd=tmp_path)
    assert r.code == 1 and json.loads(r.out)["name"] == "exp"  # 1: the experiment has failed trials
    missing = dlhpc("summary", "nope", cwd=tmp_path)
    assert missing.code == 2 and "no experiment" in missing.err


def test_scaling_columns(dlhpc, tmp_path):
    exp = make_experiment(
        tmp_path / "runs",
        [
            (
                "000-a",
                {"resources.tasks_per_node": 1},
                {"metrics.jsonl": metrics(3), "result.json": result(0.99, ws=1)},
            ),
            (
                "001-b",
                {"resources.tasks_per_node": 2},
                {"metrics.jsonl": metrics(3, ws=2), "result.json": result(0.99, ws=2, images_per_s=1800.0)},
            ),
        ],
        swept=("resources.tasks_per_node",),
    )
    rows = {r["trial"]: r for r in json.loads(dlhpc("summary", exp, "--format", "json").out)}
    assert rows["001-b"]["speedup"] == pytest.approx(1.8)
    assert rows["001-b"]["efficiency"] == pytest.approx(0.9)
    out = tmp_path / "scaling.png"
    assert dlhpc("plot", exp, "-o", out).code == 0
    assert struct.unpack(">II", out.read_bytes()[16:24]) == (1650, 420)  # a third panel: scaling


def test_plot_writes_a_png(dlhpc, messy, tmp_path):
    out = tmp_path / "curves.png"
    r = dlhpc("plot", messy, "-o", out)
    assert r.code == 0, r
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (1100, 420)


def test_status_of_many_trials_shows_counts_and_the_failures_first(dlhpc, tmp_path):
    done = json.dumps({"state": "COMPLETED", "test_acc": 0.9})
    failed = json.dumps({"state": "FAILED", "error": "RuntimeError: boom"})
    trials = [
        (f"{i:03d}-aaaaaa", {"train.seed": i}, {"result.json": failed if i in (7, 55) else done}) for i in range(60)
    ]
    make_experiment(tmp_path / "runs", trials, swept=("train.seed",))
    r = dlhpc("status", "exp", "--runs-dir", tmp_path / "runs")
    assert r.code == 1, r
    assert "60 trials: 58 COMPLETED, 2 FAILED" in r.out and "40 of 60 trials shown: all with --all" in r.out
    rows = [line for line in r.out.splitlines() if "-aaaaaa" in line]
    assert len(rows) == 40 and "007-aaaaaa" in rows[0] and "055-aaaaaa" in rows[1]
    everything = dlhpc("status", "exp", "--runs-dir", tmp_path / "runs", "--all")
    assert len([line for line in everything.out.splitlines() if "-aaaaaa" in line]) == 60


def test_summary_of_many_trials_shows_the_failed_then_the_best(dlhpc, tmp_path):
    failed = json.dumps({"state": "FAILED", "error": "RuntimeError: boom"})
    results = {i: json.dumps({"state": "COMPLETED", "test_acc": 0.5 + i / 1000}) for i in range(60)}
    results[3] = failed
    trials = [(f"{i:03d}-bbbbbb", {"train.seed": i}, {"result.json": results[i]}) for i in range(60)]
    make_experiment(tmp_path / "runs", trials, swept=("train.seed",))
    r = dlhpc("summary", "exp", "--runs-dir", tmp_path / "runs", "--no-accounting")
    rows = [line for line in r.out.splitlines() if "-bbbbbb" in line and "│" in line]
    assert "60 trials: 59 COMPLETED, 1 FAILED" in r.out and len(rows) == 40
    assert "003-bbbbbb" in rows[0] and "059-bbbbbb" in rows[1]  # the failed one, then the best
    everything = dlhpc("summary", "exp", "--runs-dir", tmp_path / "runs", "--no-accounting", "--all")
    assert len([line for line in everything.out.splitlines() if "-bbbbbb" in line and "│" in line]) == 60


@pytest.mark.parametrize(
    "last_line,where",
    [
        ("OSError: [Errno 122] Disk quota exceeded: '/project/me/out/ckpt.pt'", "/project/me/out/ckpt.pt"),
        ("OSError: [Errno 28] No space left on device", "the disk the program wrote to (its error names no file)"),
    ],
)
def test_why_reads_a_full_disk_or_quota_in_a_users_own_traceback(last_line, where):
    from dlhpc.reasons import FIXES, Reason
    from dlhpc.results.why import classify

    lines = ["Traceback (most recent call last):", '  File "train.py", line 9, in <module>', last_line]
    result = {"failed_rank": 0, "failed_node": "n1", "exit_code": 1, "last_lines": lines}
    cause, fix = classify({"state": "FAILED"}, None, result, "", {})
    assert (cause, fix) == (f"no space left on {where}", FIXES[Reason.NO_SPACE])


def test_a_trial_that_has_not_started_costs_its_row_no_file_read(tmp_path, monkeypatch):
    """10,000 pending trials: status and summary list each folder once and open nothing in it
    (they opened result.json, metrics.jsonl and requeues.json of every trial: 2.5 s of status)."""
    from dlhpc.results import rows

    pending = [(f"{i:04d}-aaaaaa", {"train.lr": 0.1}, {"spec.yaml": "{}"}) for i in range(50)]
    done = [("0050-bbbbbb", {"train.lr": 0.2}, {"metrics.jsonl": metrics(3), "result.json": '{"state": "COMPLETED"}'})]
    exp = make_experiment(tmp_path, pending + done)
    opened = []
    real_read_json, real_read_metrics = rows.read_json, rows.read_metrics
    monkeypatch.setattr(rows, "read_json", lambda path, *a: opened.append(path.name) or real_read_json(path, *a))
    monkeypatch.setattr(rows, "read_metrics", lambda path: opened.append(path.name) or real_read_metrics(path))
    _, table = rows.experiment_rows(exp)
    assert [r["state"] for r in table] == ["PENDING"] * 50 + ["COMPLETED"]
    assert sorted(opened) == ["experiment.json", "metrics.jsonl", "result.json"]  # the record; the finished trial

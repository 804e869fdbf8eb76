"""Command-line parsing only: each subcommand calls one function in dlhpc.cli.commands.

Imports stay light here: `--help`, validate, render, status and summary never import torch.
"""

import argparse
import sys

from dlhpc._version import __version__
from dlhpc.spec.schema import MODELS, SCHEDULERS

EPILOG = """exit codes: 0 ok; 1 the work failed (a job failed, a summary has failed rows); 2 bad input.
Examples:
  dlhpc init my.yaml --model cnn --scheduler slurm
  dlhpc validate my.yaml
  dlhpc run jobs/mnist-cnn.yaml
  dlhpc submit jobs/sweep-lr.yaml --scheduler slurm --set resources.partition=gpu
  dlhpc status --watch
  dlhpc summary --format markdown -o results.md"""


def _add_set(p):
    p.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a spec key, e.g. --set train.lr=0.1 (repeatable; values are YAML)",
    )


def _add_scheduler(p):
    p.add_argument("--scheduler", choices=SCHEDULERS, help="same as --set resources.scheduler=S")


def _add_runs_dir(p):
    # Not -o/--output: to an sbatch user that names the job's log file.
    p.add_argument(
        "--runs-dir",
        default=None,
        metavar="DIR",
        help="folder that holds experiment directories (default: runs_dir from the spec or "
        "~/.config/dlhpc/config.yaml, else $DLHPC_RUNS_DIR, else ./runs)",
    )


def _add_here(p):
    p.add_argument(
        "--here",
        action="store_true",
        help="train on this machine even where the site file says it is a cluster's login node",
    )


def _add_json(p):
    p.add_argument("--json", action="store_true", help="machine-readable output on stdout")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dlhpc",
        description="YAML experiment specs → SLURM/PBS jobs → DDP MNIST training → tables.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"dlhpc {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    adders = (_spec_commands, _submit_commands, _results_commands, _trial_commands, _tracking_commands, _admin_commands)
    for add in adders:
        add(sub)
    return parser


def _spec_commands(sub) -> None:
    """Init, validate, render: the spec and the scripts it makes."""
    p = sub.add_parser("init", help="write a commented starter spec")
    p.add_argument("path", nargs="?", default="experiment.yaml")
    p.add_argument("--model", choices=MODELS, default="cnn")
    p.add_argument("--scheduler", choices=SCHEDULERS, help="pin a scheduler (default: none, so the site's applies)")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    p.add_argument(
        "--workshop",
        metavar="DIR",
        help="write the workshop's four steps (softmax → mlp → lenet5 → "
        "cnn) into DIR instead, each with comments on what it adds",
    )

    p = sub.add_parser("validate", help="check specs; exit 0 valid, 2 invalid")
    p.add_argument("specs", nargs="+", metavar="SPEC")
    _add_set(p)
    _add_json(p)

    p = sub.add_parser("render", help="print (or write) the job scripts submit would use")
    p.add_argument("spec", metavar="SPEC")
    _add_scheduler(p)
    _add_set(p)
    p.add_argument("-o", "--out-dir", metavar="DIR", help="write one file per job instead of printing")
    _add_runs_dir(p)


def _submit_commands(sub) -> None:
    """Submit, resubmit, run."""
    p = sub.add_parser("submit", help="queue the spec's trials and return")
    p.add_argument("spec", nargs="?", metavar="SPEC")
    p.add_argument(
        "--best-of",
        metavar="EXP",
        help="train the best trial of a search again, as a new experiment (its spec, the best values, then --set)",
    )
    _add_scheduler(p)
    _add_set(p)
    p.add_argument("--dry-run", action="store_true", help="render and ask the scheduler, queue nothing")
    p.add_argument("--max-cost", type=float, metavar="N", help="refuse if the estimated cost exceeds N")
    p.add_argument(
        "--after",
        action="append",
        metavar="EXP|JOBID",
        help="start only when these jobs (an experiment's, or job ids) have ended well (afterok); repeatable",
    )
    p.add_argument("--after-any", action="store_true", help="with --after: when they have ended, however (afterany)")
    _add_here(p)
    _add_runs_dir(p)

    p = sub.add_parser("resubmit", help="submit some trials of an experiment again; each resumes from its checkpoint")
    p.add_argument("exp", nargs="?", metavar="EXP")
    p.add_argument("--failed", action="store_true", help="the trials that failed, timed out or were cancelled")
    p.add_argument("--missing", action="store_true", help="the trials no scheduler reports (never ran)")
    p.add_argument("--trials", metavar="ID,...", help="these trials (default: --failed --missing)")
    _add_here(p)
    _add_runs_dir(p)

    p = sub.add_parser("run", help="run the spec on this machine, in the foreground")
    p.add_argument("spec", metavar="SPEC")
    _add_set(p)
    _add_here(p)
    _add_runs_dir(p)


def _results_commands(sub) -> None:
    """Status, summary, plot."""
    p = sub.add_parser("status", help="state of every trial of an experiment")
    p.add_argument("exp", nargs="?", metavar="EXP")
    _add_json(p)
    p.add_argument(
        "--watch",
        action="store_true",
        help="refresh until every trial is finished (asks the "
        "scheduler every 5 s at first, backing off to 2 min while nothing changes)",
    )
    p.add_argument(
        "--all",
        action="store_true",
        help=f"every trial's row (past {40} trials the table shows counts and the trials that need attention)",
    )
    _add_runs_dir(p)

    p = sub.add_parser("summary", help="results table of one or more experiments")
    p.add_argument("exps", nargs="*", metavar="EXP")
    p.add_argument("--format", choices=("table", "csv", "json", "markdown"), default="table")
    p.add_argument("--sort", metavar="KEY", help="sort rows by a column, e.g. test_acc or train.lr")
    p.add_argument("-o", "--out", metavar="FILE", help="write to FILE instead of printing")
    p.add_argument("--no-accounting", action="store_true", help="do not ask the scheduler what jobs cost")
    p.add_argument("--commit", action="store_true", help="add each experiment's git commit and image digest")
    p.add_argument(
        "--efficiency",
        action="store_true",
        help="add what each trial used of what it asked for (CPU, memory, GPU), with hints",
    )
    p.add_argument("--save", action="store_true", help="write summary.md, summary.csv and curves.png into EXP")
    p.add_argument(
        "--all", action="store_true", help="every row in the terminal table (past 40: the failed, then the best)"
    )
    _add_json(p)
    _add_runs_dir(p)

    p = sub.add_parser("plot", help="learning curves (and scaling) as a PNG")
    p.add_argument("exp", metavar="EXP")
    p.add_argument("-o", "--out", metavar="FILE.png")
    p.add_argument("--search", action="store_true", help="a search's optimisation history and parameter importances")
    _add_runs_dir(p)


def _trial_commands(sub) -> None:
    """Logs, show, report, why, cancel: one experiment's trials, looked into or stopped."""
    p = sub.add_parser("logs", help="show a trial's job output")
    p.add_argument("exp", nargs="?", metavar="EXP")
    p.add_argument("--trial", metavar="ID", help="trial id (default: the first)")
    p.add_argument("--follow", "-f", action="store_true")
    _add_runs_dir(p)

    p = sub.add_parser("show", help="the environment record: spec, commit, versions, where each trial ran")
    p.add_argument("exp", nargs="?", metavar="EXP")
    _add_json(p)
    _add_runs_dir(p)

    p = sub.add_parser("report", help="one self-contained HTML page: table, curves, environment")
    p.add_argument("exp", nargs="?", metavar="EXP")
    p.add_argument("-o", "--out", metavar="FILE.html", help="default: EXP/report.html")
    _add_runs_dir(p)

    p = sub.add_parser("why", help="why a trial is pending or did not complete: one cause and one fix each")
    p.add_argument("exp", nargs="?", metavar="EXP")
    p.add_argument("--trial", metavar="ID", help="this trial only")
    _add_json(p)
    _add_runs_dir(p)

    p = sub.add_parser("cancel", help="cancel every job of an experiment")
    p.add_argument("exp", nargs="?", metavar="EXP")
    p.add_argument("--latest", action="store_true", help="cancel the newest experiment (EXP left out)")
    _add_runs_dir(p)


def _tracking_commands(sub) -> None:
    """TensorBoard and the exports to MLflow and W&B."""
    p = sub.add_parser("tensorboard", help="TensorBoard over an experiment (or all of them), on a free port")
    p.add_argument("exp", nargs="?", metavar="EXP", help="an experiment (default: every one in the runs folder)")
    p.add_argument("--port", type=int, help="listen on this port of the loopback (default: a free one)")
    _add_runs_dir(p)

    p = sub.add_parser("export", help="one MLflow or W&B run per trial, written from this node (docs/tracking.md)")
    esub = p.add_subparsers(dest="export_to", metavar="TRACKER", required=True)
    e = esub.add_parser("mlflow", help="to an MLflow tracking server or file store")
    e.add_argument("exp", nargs="?", metavar="EXP")
    e.add_argument("--to", required=True, metavar="URI", help="http://host:port, file:///path, or a folder")
    e.add_argument("--experiment", metavar="NAME", help="MLflow experiment (default: the spec's name)")
    _add_runs_dir(e)
    e = esub.add_parser("wandb", help="W&B offline run folders, ready for `wandb sync`")
    e.add_argument("exp", nargs="?", metavar="EXP")
    e.add_argument("--dir", metavar="DIR", help="where the run folders go (default: EXP/wandb)")
    e.add_argument("--project", metavar="NAME", help="W&B project (default: the spec's name)")
    _add_runs_dir(e)


def _admin_commands(sub) -> None:
    """Templates, schema, usage, data, doctor."""
    p = sub.add_parser("templates", help="list, show or copy job-script templates")
    tsub = p.add_subparsers(dest="templates_command", metavar="ACTION")
    tsub.add_parser("list", help="templates on the search path, with their origin")
    t = tsub.add_parser("show", help="print a template")
    t.add_argument("name")
    t = tsub.add_parser("copy", help="copy a template to start an override")
    t.add_argument("name")
    t.add_argument("dest")
    t = tsub.add_parser(
        "check",
        help="render every shipped spec (or SPECs) through the effective templates, "
        "bash -n and the scheduler's dry check; exit 1 on any failure",
    )
    t.add_argument("specs", nargs="*", metavar="SPEC")
    t.add_argument("--site", metavar="FILE", help="check against this site file (default: $DLHPC_SITE or /etc/dlhpc)")
    t.add_argument("--scheduler", choices=SCHEDULERS, help="this scheduler only (default: the site's)")

    sub.add_parser("schema", help="print the spec's JSON Schema, for editors with YAML language support")

    p = sub.add_parser("usage", help="what dlhpc jobs used, per user and account, from the scheduler's accounting")
    p.add_argument(
        "--since",
        default="now-30days",
        metavar="DATE",
        help="start of the period, as sacct takes it: 2026-11-01, now-7days (default: now-30days)",
    )
    p.add_argument("--account", metavar="A", help="this account only")
    p.add_argument("--all-users", action="store_true", help="every user's jobs (needs operator rights in sacct)")
    p.add_argument("--scheduler", choices=SCHEDULERS, help="whose accounting (default: the site's scheduler)")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true")
    fmt.add_argument("--csv", action="store_true")

    p = sub.add_parser("data", help="stage the MNIST data")
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION")
    d = dsub.add_parser("fetch", help="download MNIST (checksummed) into a shared root")
    d.add_argument("--root", help="target folder (default: $DLHPC_DATA or ~/.cache/dlhpc/data)")

    p = sub.add_parser("doctor", help="check this login node, the scheduler and a spec")
    p.add_argument("spec", nargs="?", metavar="SPEC")
    _add_set(p)
    p.add_argument("--job", action="store_true", help="also run a tiny job to see what the nodes have")


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    if getattr(args, "scheduler", None) and args.command in ("render", "submit"):
        args.sets = [f"resources.scheduler={args.scheduler}"] + list(args.sets)
    from dlhpc.cli import commands
    from dlhpc.errors import DlhpcError
    from dlhpc.results.redact import uri as without_password  # (every message: user:***@host)

    handler = getattr(commands, "cmd_" + args.command)
    try:
        return int(handler(args) or 0)
    except DlhpcError as exc:
        if args.debug:
            raise
        print(f"dlhpc: error: {without_password(exc)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("dlhpc: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # a bug, or an environment problem we did not foresee: still no traceback
        if args.debug:
            raise
        print(
            f"dlhpc: internal error: {type(exc).__name__}: {without_password(exc)}\n"
            "Run again with --debug for the traceback, and please report it.",
            file=sys.stderr,
        )
        return 1

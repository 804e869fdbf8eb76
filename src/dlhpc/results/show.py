"""`dlhpc show EXP`: the environment record of an experiment: where its spec came from (and the
commit of its repository), what it was submitted with, and where each trial ran with what."""

from pathlib import Path

from dlhpc.fsutil import read_json
from dlhpc.results import rows as results


def environment(exp_dir: Path) -> dict:
    record = results.read_record(exp_dir)
    trials = []
    for trial in record.get("trials", []):
        result = read_json(exp_dir / trial["id"] / "result.json", {}) or {}
        trials.append(
            {
                "trial": trial["id"],
                "state": result.get("state"),
                "rank_nodes": result.get("rank_nodes") or result.get("hostnames"),
                "device": result.get("device"),
                "software": result.get("software"),
            }
        )
    packages = exp_dir / "environment.txt"
    return {
        "experiment": str(exp_dir),
        "name": record.get("name"),
        "scheduler": record.get("scheduler"),
        "created": record.get("created"),
        "submitted": record.get("submitted"),
        "spec": record.get("spec_source"),
        "spec_hash": record.get("spec_hash"),
        "git": record.get("git"),
        "host": record.get("host"),
        "versions": record.get("versions"),
        "jobs": sorted({str(j.get("job_id", "")).split("_")[0] for j in record.get("jobs", [])}),
        "packages": str(packages) if packages.is_file() else None,
        "code": read_json(exp_dir / "code.json"),
        "container": record.get("container"),
        "code_diff": str(exp_dir / "code.diff") if (exp_dir / "code.diff").is_file() else None,
        "trials": trials,
    }


def commit_label(git: dict | None) -> str:
    if not git:
        return "-"
    return git["commit"][:12] + (" (with uncommitted changes)" if git.get("dirty") else "")


def lines(env: dict) -> list[str]:
    versions = ", ".join(f"{k} {v}" for k, v in (env["versions"] or {}).items() if v)
    out = [
        f"experiment  {env['experiment']}",
        f"scheduler   {env['scheduler']}   jobs {', '.join(env['jobs']) or '-'}",
        f"created     {env['created']}   submitted {env['submitted'] or '-'}   from host {env['host'] or '-'}",
        f"spec        {env['spec']}   hash {env['spec_hash']}",
        f"commit      {commit_label(env['git'])}" + (f"   in {env['git']['repo']}" if env["git"] else ""),
        f"versions    {versions}",
        f"packages    {env['packages'] or '-'}",
    ]
    code = env.get("code")
    if code:
        version = code.get("python_version")  # (older experiments: asked at submit; now each trial's record)
        python = f"{code.get('python')} (Python {version})" if version else code.get("python")
        diff = f"   diff {env['code_diff']}" if env["code_diff"] else ""
        out += [
            f"code        {code.get('files')} files copied from {code.get('source')}   run with {python}",
            f"code commit {commit_label(code.get('git'))}{diff}",
        ]
    image = env.get("container")
    if image:
        out.append(f"container   {image['image']}   {image['runtime']}   {image.get('digest') or 'digest unknown'}")
    out.append("trials:")
    for t in env["trials"]:
        sw = ", ".join(f"{k} {v}" for k, v in (t["software"] or {}).items() if v)
        out.append(
            f"  {t['trial']}  {t['state'] or '-':9s}  nodes {', '.join(t['rank_nodes'] or []) or '-'}  "
            f"{t['device'] or ''}  {sw}"
        )
    return out

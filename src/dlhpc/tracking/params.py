"""A trial's parameters as every tracker shows them (TensorBoard's HParams tab, MLflow params,
W&B config): the built-in trainer's model/train/data settings, or a program's `params`, and the
swept keys always. Flat dotted names, plain values."""

from pathlib import Path

from dlhpc.spec.program import is_builtin


def flat(prefix: str, values: dict) -> dict:
    out = {}
    for key, value in (values or {}).items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict):
            out |= flat(name, value)
        elif value is not None:
            out[name] = value if isinstance(value, (bool, int, float, str)) else str(value)
    return out


def trial_params(data: dict, swept: dict) -> dict:
    """`data`: the trial's resolved spec; `swept`: its swept values (trial.json's params). Secret
    ones (a swept env.vars value, a key like hf_token or wandb_api_key) are <redacted>: every
    tracker shows what this returns, and TensorBoard's page is open to every user of the node."""
    from dlhpc.results.redact import params as redacted

    if is_builtin(data):
        found = flat("model", data.get("model")) | flat("train", data.get("train")) | flat("data", data.get("data"))
        found.pop("data.root", None)  # where the data lives is not a hyperparameter
    else:
        found = flat("params", data.get("params"))
    return redacted(found | flat("", swept))


def of_trial(trial_dir: Path) -> dict:
    from dlhpc.fsutil import read_json, read_trial_spec

    swept = (read_json(trial_dir / "trial.json", {}) or {}).get("params") or {}
    return trial_params(read_trial_spec(trial_dir / "spec.yaml"), swept)

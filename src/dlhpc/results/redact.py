"""What leaves the private experiment record without secrets (docs/security.md).

`env.vars` carry tokens (WANDB_API_KEY, HF_TOKEN...): their values stay in experiment.json and
the job script, both private to the owner, and are replaced by REDACTED in everything meant to be
shared: the HTML report, summary exports and tables, the trackers (TensorBoard's HParams, MLflow
params, W&B config: tracking/params.py). Keys anywhere in a spec whose names look like secrets are
treated the same. A URI's password is shown as *** in every message (uri()).
"""

import re

REDACTED = "<redacted>"
URI_PASSWORD = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^/@:\s]*):[^/@\s]*@")
SECRET_NAME = re.compile(r"token|secret|passw(or)?d|api[_-]?key|credential|private[_-]?key|auth", re.IGNORECASE)


def is_secret_key(dotted: str) -> bool:
    return dotted == "env.vars" or dotted.startswith("env.vars.") or bool(SECRET_NAME.search(dotted.rsplit(".", 1)[-1]))


def spec(data, path: str = ""):
    """A copy of a spec (or any nested value) with env.vars values and secret-looking keys redacted."""
    if isinstance(data, dict):
        out = {}
        for key, value in data.items():
            dotted = f"{path}.{key}" if path else str(key)
            if path == "env.vars" or (not isinstance(value, (dict, list)) and is_secret_key(dotted)):
                out[key] = REDACTED
            elif path == "sweep" and is_secret_key(str(key)):
                out[key] = [REDACTED for _ in value] if isinstance(value, list) else REDACTED
            else:
                out[key] = spec(value, dotted)
        return out
    if isinstance(data, list):
        return [spec(item, path) for item in data]
    return data


def uri(text: str) -> str:
    """Text with the password of every URI in it shown as *** (http://user:***@host/): what an
    error, a success line or a notebook's output may show of `--to http://user:password@host`."""
    return URI_PASSWORD.sub(lambda m: m["head"] + ":***@", str(text))


def params(values: dict) -> dict:
    """A trial's swept parameters ({dotted key: value}) with secret ones redacted."""
    return {k: (REDACTED if is_secret_key(k) else v) for k, v in values.items()}

"""A workshop attendee's day: the workshop in one command, editor help from the JSON Schema."""

import json

import pytest
import yaml

from conftest import ROOT

STEPS = {
    "01-softmax.yaml": "one linear layer",
    "02-mlp.yaml": "hidden layers",
    "03-lenet5.yaml": "convolution and pooling",
    "04-cnn.yaml": "batch norm",
}


def test_init_workshop_writes_the_four_steps_each_valid(dlhpc, tmp_path):
    r = dlhpc("init", "--workshop", tmp_path / "ws")
    assert r.code == 0, r
    for name, adds in STEPS.items():
        text = (tmp_path / "ws" / name).read_text()
        assert adds in text.splitlines()[0] + text.splitlines()[1], (name, text[:300])
        assert "scheduler:" not in text  # the site's scheduler applies
        assert dlhpc("validate", tmp_path / "ws" / name).code == 0
    again = dlhpc("init", "--workshop", tmp_path / "ws")
    assert again.code == 2 and "already exist" in again.err


@pytest.fixture(scope="module")
def json_schema():
    from dlhpc.spec.jsonschema import spec_json_schema

    return spec_json_schema()


def test_every_shipped_spec_passes_the_json_schema(json_schema, dlhpc):
    import jsonschema

    jsonschema.Draft202012Validator.check_schema(json_schema)
    validator = jsonschema.Draft202012Validator(json_schema)
    specs = sorted((ROOT / "jobs").glob("*.yaml"))
    assert len(specs) >= 9
    for path in specs:
        errors = [e.message for e in validator.iter_errors(yaml.safe_load(path.read_text()))]
        assert not errors, (path.name, errors)
    printed = dlhpc("schema")
    assert printed.code == 0 and json.loads(printed.out) == json.loads(json.dumps(json_schema))


@pytest.mark.parametrize(
    "bad",
    [
        {"train": {"lr": -1}},
        {"model": {"name": "resnet"}},
        {"trian": {"lr": 0.1}},
        {"resources": {"time": "soon"}},
        {"train": {"cuda_graphs": "sometimes"}},
        {"resources": {"mem": "lots"}},
        {"env": {"vars": {"1BAD": "x"}}},
    ],
)
def test_bad_specs_fail_the_json_schema(json_schema, bad):
    import jsonschema

    assert list(jsonschema.Draft202012Validator(json_schema).iter_errors(bad))


def test_schema_carries_descriptions_and_defaults(json_schema):
    lr = json_schema["properties"]["train"]["properties"]["lr"]
    assert lr["default"] == 0.05 and "Learning rate" in lr["description"]
    assert json_schema["properties"]["model"]["properties"]["name"]["enum"] == ["softmax", "mlp", "lenet5", "cnn"]

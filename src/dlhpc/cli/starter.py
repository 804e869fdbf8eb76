"""The commented starter spec that `dlhpc init` writes."""

MODEL_DEFAULTS = {
    "softmax": {"epochs": 10, "optimizer": "sgd", "lr": 0.5, "batch_size": 128, "extra": ""},
    "mlp": {
        "epochs": 15,
        "optimizer": "sgd",
        "lr": 0.1,
        "batch_size": 128,
        "extra": "  hidden: [512, 256]       # two hidden layers\n",
    },
    "lenet5": {"epochs": 12, "optimizer": "sgd", "lr": 0.1, "batch_size": 128, "extra": ""},
    "cnn": {"epochs": 12, "optimizer": "sgd", "lr": 0.1, "batch_size": 128, "extra": ""},
}


def starter_spec(name: str, model: str, scheduler: str) -> str:
    import re

    name = re.sub(r"[^A-Za-z0-9._-]", "-", name).strip("-.") or "experiment"
    if not name[0].isalnum():
        name = "exp-" + name
    d = MODEL_DEFAULTS[model]
    from dlhpc.schedulers import backend

    gpus = 1 if scheduler and not backend(scheduler).runs_here else 0
    sched_line = (
        f"  scheduler: {scheduler}            # slurm | pbs | local"
        if scheduler
        else "  # scheduler: slurm           # slurm | pbs | local; unset, the site's default applies"
    )
    return f"""# dlhpc experiment spec. Check it with `dlhpc validate`, run it here with `dlhpc run`,
# or on the cluster with `dlhpc submit`. Every key is optional except what you change.
name: {name[:64]}                 # names the experiment directory: letters, digits, . _ -

model:
  name: {model}                   # softmax | mlp | lenet5 | cnn
{d["extra"]}
train:
  epochs: {d["epochs"]}
  batch_size: {d["batch_size"]}             # per process; the global batch is this x the number of ranks
  optimizer: {d["optimizer"]}              # sgd | adam | adamw | adadelta
  lr: {d["lr"]}
  schedule: onecycle          # onecycle | step | constant
  seed: 0
  target_accuracy: 0.99       # the time to reach it is recorded

data:
  root: null                  # null: $DLHPC_DATA, else ~/.cache/dlhpc/data (`dlhpc data fetch` fills it)

resources:
{sched_line}
  nodes: 1
  gpus_per_node: {gpus}            # 0 = a CPU job; one DDP rank per GPU otherwise
  cpus_per_task: 2
  mem: 8G
  time: "00:30:00"
  partition: null             # your cluster's partition (queue); `sinfo` lists them

# sweep:                      # uncomment to run every combination as a job array
#   train.lr: [0.05, 0.1, 0.2]
#   train.seed: [0, 1, 2]
"""


# `dlhpc init --workshop DIR`: the slides' four steps, each a spec that says what it adds.
WORKSHOP_STEPS = (
    (
        "01-softmax",
        "softmax",
        "Step 1, softmax regression: one linear layer, Y = softmax(X·W + b): 784 pixels in,\n"
        "# 10 class scores out, the softmax inside the cross-entropy loss. Expect about 92.5%.",
        "",
        10,
        0.5,
        0.0,
    ),
    (
        "02-mlp",
        "mlp",
        "Step 2, a multi-layer perceptron: hidden layers with ReLU between the input and the\n"
        "# softmax, so the model can learn non-linear features. Expect about 98.4%.",
        "  hidden: [512, 256]          # two hidden layers\n",
        15,
        0.1,
        0.9,
    ),
    (
        "03-lenet5",
        "lenet5",
        "Step 3, LeNet-5: convolution and pooling. Small filters slide over the image and\n"
        "# share their weights, so the model sees strokes wherever they are. Expect about 99.1%.",
        "",
        12,
        0.1,
        0.9,
    ),
    (
        "04-cnn",
        "cnn",
        "Step 4, a modern small CNN: batch norm after each convolution keeps the activations\n"
        "# well scaled, so it trains fast at a high learning rate; dropout before the last layer. Expect about 99.4%.",
        "",
        15,
        0.1,
        0.9,
    ),
)


def workshop_specs(scheduler: str) -> dict:
    """{file name: spec text} for the four steps."""
    out = {}
    for stem, model, about, extra, epochs, lr, momentum in WORKSHOP_STEPS:
        out[f"{stem}.yaml"] = f"""# {about}
# Run it here with `dlhpc run {stem}.yaml`, or on the cluster with `dlhpc submit {stem}.yaml`.
name: workshop-{stem}
model:
  name: {model}
{extra}train:
  epochs: {epochs}
  batch_size: 128             # images per step; each step is one mini-batch gradient descent update
  optimizer: sgd
  lr: {lr}                      # learning rate: the size of each step
  momentum: {momentum}
  schedule: onecycle          # warm the learning rate up, then anneal it
  target_accuracy: 0.99       # the time to reach it is recorded
resources:
{f"  scheduler: {scheduler}" + chr(10) if scheduler else ""}  cpus_per_task: 2
  time: "00:30:00"
"""
    return out

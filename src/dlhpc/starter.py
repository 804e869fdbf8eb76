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
    gpus = 1 if scheduler != "local" else 0
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
  scheduler: {scheduler}            # slurm | pbs | local
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

"""The workshop's models: softmax regression → 2-hidden-layer MLP → LeNet-5 → a fast strong CNN."""

from torch import nn


def softmax_regression() -> nn.Module:
    # Y = softmax(X·W + b); the softmax itself lives in the cross-entropy loss.
    return nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 10))


def mlp(hidden=(200, 100)) -> nn.Module:
    layers, width = [nn.Flatten()], 28 * 28
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU(inplace=True)]
        width = h
    layers.append(nn.Linear(width, 10))
    return nn.Sequential(*layers)


def lenet5() -> nn.Module:
    """LeCun et al. 1998 shape (6-16 convs, 120-84 fully connected), with ReLU and max-pooling."""
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * 5 * 5, 120),
        nn.ReLU(inplace=True),
        nn.Linear(120, 84),
        nn.ReLU(inplace=True),
        nn.Linear(84, 10),
    )


def cnn(
    width: int = 32, stem: str = "pool", hidden: int = 256, dropout: float = 0.25, convs_per_block: int = 1
) -> nn.Module:
    """Small and fast: two conv blocks with batch norm, then one hidden fully connected layer.
    Each block pools right after its convolution, so batch norm and ReLU run on maps 4x smaller
    (1.5x faster training, 2.5x faster evaluation on CPU than conv-BN-ReLU-pool).
    stem "stride": the first block is one 4x4 convolution of stride 2 instead of 5x5 + pool
    (a quarter of its arithmetic and no pooling; for the speedrun).
    convs_per_block > 1: more 3x3 convolutions (padding 1: same size, same channels) after each
    block, on the pooled maps where they are cheapest (for the most accurate spec)."""
    w1, w2 = width, 2 * width
    first = (
        [nn.Conv2d(1, w1, 4, stride=2, bias=False)]
        if stem == "stride"
        else [
            nn.Conv2d(1, w1, 5, bias=False),
            nn.MaxPool2d(2),
        ]
    )  # 28→13 / 28→24→12
    side = 5  # after the second block either way: 13→11→5 / 12→10→5

    def more(channels):
        layers = []
        for _ in range(convs_per_block - 1):
            layers += [nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels)]
            layers.append(nn.ReLU(inplace=True))
        return layers

    return nn.Sequential(
        *first,
        nn.BatchNorm2d(w1),
        nn.ReLU(inplace=True),
        *more(w1),
        nn.Conv2d(w1, w2, 3, bias=False),
        nn.MaxPool2d(2),
        nn.BatchNorm2d(w2),
        nn.ReLU(inplace=True),
        *more(w2),
        nn.Flatten(),
        nn.Linear(w2 * side * side, hidden, bias=False),
        nn.BatchNorm1d(hidden),
        nn.ReLU(inplace=True),
        *([nn.Dropout(dropout)] if dropout > 0 else []),
        nn.Linear(hidden, 10),
    )


def build(model_cfg: dict) -> nn.Module:
    name = model_cfg["name"]
    if name == "softmax":
        return softmax_regression()
    if name == "mlp":
        return mlp(model_cfg.get("hidden") or (200, 100))
    if name == "lenet5":
        return lenet5()
    if name == "cnn":
        return cnn(
            model_cfg.get("width") or 32,
            model_cfg.get("stem") or "pool",
            (model_cfg.get("hidden") or [256])[0],
            0.25 if model_cfg.get("dropout") is None else model_cfg["dropout"],
            model_cfg.get("convs_per_block") or 1,
        )
    raise ValueError(f"unknown model {name!r}")


def is_convolutional(model: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())

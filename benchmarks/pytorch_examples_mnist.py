"""A faithful re-implementation of pytorch/examples mnist/main.py, the speed baseline.

Net: conv 32 → conv 64 (3x3) → max-pool → dropout 0.25 → fc 128 → dropout 0.5 → fc 10,
log-softmax + NLL loss; Adadelta lr 1.0, StepLR gamma 0.7; batch 64 (test 1000); a torchvision
DataLoader with ToTensor + Normalize((0.1307,), (0.3081,)). On CPU the example passes no
shuffle/worker options (those are CUDA-only there), and so does this copy.

    python benchmarks/pytorch_examples_mnist.py --epochs 3 --target 0.99

Prints one JSON line per epoch and a final line with time_to_target_s: wall time from the first
training step to the first test evaluation at or above the target (evaluation included).
"""

import argparse
import json
import os
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.optim.lr_scheduler import StepLR
from torchvision import datasets, transforms


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = F.max_pool2d(x, 2)
        x = self.dropout1(x)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = self.dropout2(x)
        x = self.fc2(x)
        return F.log_softmax(x, dim=1)


def train(model, device, train_loader, optimizer):
    model.train()
    for data, target in train_loader:
        data, target = data.to(device), target.to(device)
        optimizer.zero_grad()
        loss = F.nll_loss(model(data), target)
        loss.backward()
        optimizer.step()


def test(model, device, test_loader):
    model.eval()
    loss, correct = 0.0, 0
    with torch.no_grad():
        for data, target in test_loader:
            data, target = data.to(device), target.to(device)
            output = model(data)
            loss += F.nll_loss(output, target, reduction="sum").item()
            correct += output.argmax(dim=1).eq(target).sum().item()
    n = len(test_loader.dataset)
    return loss / n, correct / n


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=14)
    parser.add_argument("--target", type=float, default=0.99)
    parser.add_argument("--stop-at-target", action="store_true")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--data", default=os.environ.get("DLHPC_DATA", "data"))
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
    train_set = datasets.MNIST(args.data, train=True, download=False, transform=transform)
    test_set = datasets.MNIST(args.data, train=False, transform=transform)
    train_kwargs, test_kwargs = {"batch_size": 64}, {"batch_size": 1000}
    if device.type == "cuda":
        cuda_kwargs = {"num_workers": 1, "pin_memory": True, "shuffle": True}
        train_kwargs.update(cuda_kwargs)
        test_kwargs.update(cuda_kwargs)
    train_loader = torch.utils.data.DataLoader(train_set, **train_kwargs)
    test_loader = torch.utils.data.DataLoader(test_set, **test_kwargs)
    model = Net().to(device)
    optimizer = torch.optim.Adadelta(model.parameters(), lr=1.0)
    scheduler = StepLR(optimizer, step_size=1, gamma=0.7)
    start, time_to_target = time.perf_counter(), None
    for epoch in range(1, args.epochs + 1):
        train(model, device, train_loader, optimizer)
        loss, acc = test(model, device, test_loader)
        scheduler.step()
        elapsed = time.perf_counter() - start
        print(
            json.dumps({"epoch": epoch, "test_loss": loss, "test_acc": acc, "elapsed_s": round(elapsed, 2)}), flush=True
        )
        if time_to_target is None and acc >= args.target:
            time_to_target = elapsed
            if args.stop_at_target:
                break
    print(json.dumps({"final_test_acc": acc, "time_to_target_s": time_to_target}), flush=True)


if __name__ == "__main__":
    main()

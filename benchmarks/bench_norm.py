"""Instance norm on channels-last CPU tensors: tumorscale's layer against PyTorch's.

`tumorscale.models.instance_norm.InstanceNorm3d` runs float32 channels-last CPU tensors as a
group norm with one channel per group (the same arithmetic) with its own backward; the baseline
is the same network built with PyTorch's `nn.InstanceNorm3d`, the layer nnU-Net's networks use.
Both copies share their weights and run interleaved in this process, channels-last as
tumorscale trains on CPU:
- a training step (forward, Dice+CE deep-supervision loss, backward, SGD step) of preset `tiny`
  at 48³ (`bench_learning`'s patch) and 64³ (its planned patch) and of preset `S` at 64³, batch 2;
- a prediction forward pass (no gradients, float32) of the same networks, batch 2.
It also prints the largest difference between the two networks' outputs.

    python benchmarks/bench_norm.py [--rounds 8]
"""

from __future__ import annotations

import argparse
import copy
import platform
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from tumorscale.models import DeepSupervisionLoss, build_network
from tumorscale.models.instance_norm import InstanceNorm3d

CASES = (("tiny", 48), ("tiny", 64), ("S", 64))


def with_torch_norm(network: nn.Module) -> nn.Module:
    """A copy of `network` whose norms are PyTorch's `nn.InstanceNorm3d`, same weights."""
    baseline = copy.deepcopy(network)
    for module in list(baseline.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, InstanceNorm3d):
                plain = nn.InstanceNorm3d(child.num_features, eps=child.eps, affine=True)
                plain.load_state_dict(child.state_dict())
                setattr(module, name, plain)
    return baseline


def median_seconds(runs: dict[str, Callable[[], None]], rounds: int) -> dict[str, float]:
    """Median time of each callable over `rounds` interleaved rounds (after one warm-up)."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for round_index in range(rounds + 1):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            if round_index:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def training_step(network: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    loss_fn = DeepSupervisionLoss()
    optimizer = torch.optim.SGD(network.parameters(), lr=1e-3, momentum=0.99, nesterov=True)

    def step() -> None:
        network.train()
        optimizer.zero_grad(set_to_none=True)
        loss_fn(network(x), y).backward()
        optimizer.step()

    return step


def prediction(network: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    def forward() -> None:
        network.eval()
        with torch.no_grad():
            network(x)

    return forward


def compare(preset: str, size: int, rounds: int) -> None:
    torch.manual_seed(0)
    ours = build_network(preset, in_channels=1, out_channels=2)
    theirs = with_torch_norm(ours)
    layout = torch.channels_last_3d
    for network in (ours, theirs):
        network.to(memory_format=layout)
    x = torch.randn(2, 1, size, size, size).to(memory_format=layout)
    y = (torch.rand(2, 1, size, size, size) > 0.9).long()
    with torch.no_grad():
        ours.eval()
        theirs.eval()
        difference = (ours(x) - theirs(x)).abs().max().item()
    train = median_seconds({"torch": training_step(theirs, x, y),
                            "tumorscale": training_step(ours, x, y)}, rounds)
    predict = median_seconds({"torch": prediction(theirs, x),
                              "tumorscale": prediction(ours, x)}, rounds)
    print(f"{preset:4s} {size}³  training step {train['torch'] * 1e3:7.1f} -> "
          f"{train['tumorscale'] * 1e3:7.1f} ms = {train['torch'] / train['tumorscale']:.2f}x   "
          f"prediction {predict['torch'] * 1e3:7.1f} -> {predict['tumorscale'] * 1e3:7.1f} ms "
          f"= {predict['torch'] / predict['tumorscale']:.2f}x   max |Δ logit| {difference:.1e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} torch threads, torch {torch.__version__}; "
          "nn.InstanceNorm3d -> tumorscale InstanceNorm3d (speed-up)")
    for preset, size in CASES:
        compare(preset, size, args.rounds)


if __name__ == "__main__":
    main()

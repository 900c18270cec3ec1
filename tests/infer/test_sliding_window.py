"""Sliding-window inference: equal to MONAI's, TTA semantics, batching."""

from __future__ import annotations

import pytest
import torch
from monai.data.utils import dense_patch_slices
from monai.inferers import sliding_window_inference as monai_sliding_window
from torch import nn

from tumorscale.infer.sliding_window import (
    mirror_combinations,
    scan_interval,
    sliding_window_inference,
    window_grid,
)


def tiny_network(seed: int = 0, out_channels: int = 3) -> nn.Module:
    """A small, not flip-equivariant conv net (a 3³ kernel sees its neighbourhood)."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv3d(1, 4, 3, padding=1), nn.LeakyReLU(), nn.Conv3d(4, out_channels, 3, padding=1)
    ).eval()


class PointwiseNet(nn.Module):
    """Voxel-wise (1x1x1) network: flipping the input flips the output exactly."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.mix = nn.Sequential(nn.Conv3d(1, 5, 1), nn.Tanh(), nn.Conv3d(5, 2, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mix(x)


@pytest.mark.parametrize("size", [16, 17, 23, 40, 95, 96, 97, 300])
@pytest.mark.parametrize("overlap", [0.0, 0.25, 0.5, 0.625, 0.9])
def test_window_positions_are_monais(size: int, overlap: float) -> None:
    window = min(16, size)
    interval = scan_interval(size, window, overlap)
    steps = (interval, scan_interval(20, 16, overlap), 8)
    theirs = dense_patch_slices((size, 20, 8), (window, 16, 8), steps)
    ours = window_grid((size, 20, 8), (window, 16, 8), overlap)
    assert [tuple(s.start for s in box) for box in theirs] == ours


CASES = [
    # (volume shape, window, overlap, windows per batch)
    ((37, 41, 23), (16, 16, 16), 0.5, 2),
    ((21, 9, 33), (16, 16, 16), 0.25, 3),  # Y smaller than the window: padded and cropped
    ((16, 30, 17), (16, 16, 8), 0.625, 1),
    ((33, 35, 31), (12, 16, 10), 0.5, 4),
]


@pytest.mark.parametrize(("shape", "window", "overlap", "batch"), CASES)
def test_equals_monai_gaussian(shape, window, overlap, batch) -> None:
    network = tiny_network()
    image = torch.randn(1, 1, *shape, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        expected = monai_sliding_window(
            image, window, batch, network, overlap=overlap, mode="gaussian", sigma_scale=0.125
        )
    ours = sliding_window_inference(image, network, window, overlap=overlap, batch_size=batch)
    assert ours.shape == expected.shape == (1, 3, *shape)
    assert float((ours - expected).abs().max()) <= 1e-5


def test_a_volume_smaller_than_the_window_is_padded_with_the_given_value() -> None:
    """Prediction pads with air (the preprocessing's pad value), as training patches are: the
    result is MONAI's with that `cval`, and differs from zero padding next to the border."""
    network = tiny_network()
    image = torch.randn(1, 1, 21, 9, 33, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        expected = monai_sliding_window(image, (16, 16, 16), 2, network, overlap=0.25,
                                        mode="gaussian", sigma_scale=0.125, cval=-5.5)
    ours = sliding_window_inference(image, network, (16, 16, 16), overlap=0.25, pad_value=-5.5)
    assert float((ours - expected).abs().max()) <= 1e-5
    zero = sliding_window_inference(image, network, (16, 16, 16), overlap=0.25)
    assert float((ours - zero).abs().max()) > 1e-2


def test_result_does_not_depend_on_the_window_batch() -> None:
    network = tiny_network()
    image = torch.randn(1, 1, 30, 26, 22, generator=torch.Generator().manual_seed(3))
    one = sliding_window_inference(image, network, (12, 12, 12), batch_size=1)
    five = sliding_window_inference(image, network, (12, 12, 12), batch_size=5)
    assert float((one - five).abs().max()) <= 1e-6



class CountingNet(nn.Module):
    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network, self.windows = network, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.windows += x.shape[0]
        return self.network(x)


def test_a_region_runs_fewer_windows_and_keeps_the_whole_volume_logits_there() -> None:
    image = torch.randn(1, 1, 60, 44, 30, generator=torch.Generator().manual_seed(5))
    whole_net, region_net = CountingNet(tiny_network()), CountingNet(tiny_network())
    whole = sliding_window_inference(image, whole_net, (16, 16, 16), overlap=0.5)
    region = (slice(5, 14), slice(20, 30), slice(8, 12))
    part = sliding_window_inference(image, region_net, (16, 16, 16), overlap=0.5, region=region)
    assert region_net.windows < whole_net.windows / 3
    assert torch.equal(part[(slice(None), slice(None), *region)],
                       whole[(slice(None), slice(None), *region)])
    reached = part[0, 1] > -1e3  # voxels all of whose windows ran
    assert torch.equal(part[0][:, reached], whole[0][:, reached])
    assert int(reached.sum()) < reached.numel() / 2
    probabilities = torch.softmax(part[0], dim=0)
    assert torch.all(probabilities[0][~reached] == 1.0)  # elsewhere: certain background

def test_deep_supervision_list_uses_full_resolution() -> None:
    network = tiny_network()
    image = torch.randn(1, 1, 20, 20, 20, generator=torch.Generator().manual_seed(4))

    def listing(x: torch.Tensor) -> list[torch.Tensor]:
        full = network(x)
        return [full, full[:, :, ::2, ::2, ::2]]

    plain = sliding_window_inference(image, network, (12, 12, 12))
    assert torch.equal(sliding_window_inference(image, listing, (12, 12, 12)), plain)


def test_mirror_combinations() -> None:
    combos = mirror_combinations((0, 1, 2))
    assert len(combos) == 8 and combos[0] == () and (0, 1, 2) in combos
    assert mirror_combinations((2,)) == [(), (2,)]
    with pytest.raises(ValueError, match="mirror axes"):
        mirror_combinations((3,))


def test_tta_with_a_flip_equivariant_network_changes_nothing() -> None:
    network = PointwiseNet().eval()
    image = torch.randn(1, 1, 21, 15, 17, generator=torch.Generator().manual_seed(5))
    plain = sliding_window_inference(image, network, (12, 12, 12), batch_size=4)
    mirrored = sliding_window_inference(
        image, network, (12, 12, 12), batch_size=4, mirror_axes=(0, 1, 2)
    )
    assert float((plain - mirrored).abs().max()) <= 1e-5


def test_tta_averages_flipped_back_logits_per_window() -> None:
    network = tiny_network(seed=2)
    image = torch.randn(1, 1, 22, 18, 20, generator=torch.Generator().manual_seed(6))
    axes = (0, 2)

    def averaged(x: torch.Tensor) -> torch.Tensor:  # nnU-Net's mirror TTA, written out
        dims = [tuple(a + 2 for a in combo) for combo in mirror_combinations(axes)]
        outs = [torch.flip(network(torch.flip(x, d)), d) if d else network(x) for d in dims]
        return torch.stack(outs).mean(dim=0)

    with torch.no_grad():
        expected = monai_sliding_window(
            image, (12, 12, 12), 2, averaged, overlap=0.5, mode="gaussian"
        )
    ours = sliding_window_inference(image, network, (12, 12, 12), mirror_axes=axes)
    assert float((ours - expected).abs().max()) <= 1e-5
    plain = sliding_window_inference(image, network, (12, 12, 12))
    assert float((ours - plain).abs().max()) > 1e-3  # the flips did change this network's output


def test_rejects_bad_arguments() -> None:
    image = torch.zeros(1, 1, 8, 8, 8)
    with pytest.raises(ValueError, match="overlap"):
        sliding_window_inference(image, tiny_network(), (4, 4, 4), overlap=1.0)
    with pytest.raises(ValueError, match=r"\(1, C, X, Y, Z\)"):
        sliding_window_inference(image[0], tiny_network(), (4, 4, 4))

"""One contract every network in the factory passes: shapes, gradients, odd sizes, save/load."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tumorscale.models import (
    ModelSpec,
    ResEncUNet,
    available_networks,
    build_network,
    count_parameters,
    has_deep_supervision,
    load_model,
    save_model,
)

N_CLASSES = 3
# Per network: an input size that is NOT a multiple of its size divisor (so the padding path
# runs) and small enough for CPU. tiny: divisor 8; S/M/L, SwinUNETR: 32; UNet, MedNeXt: 16;
# SegResNet: 8. Big nets (M, L: ~102M parameters) are padded to the smallest valid size, 32³.
ODD_SIZES: dict[str, tuple[int, int, int]] = {
    "tiny": (40, 36, 44),
    "S": (20, 24, 28),
    "M": (20, 24, 28),
    "L": (17, 30, 25),
    "UNet": (20, 24, 28),
    "SegResNet": (20, 18, 22),
    "SwinUNETR": (20, 24, 28),
    "MedNeXt": (20, 24, 28),
}
# The deep-supervision outputs each net returns in training mode (highest resolution first).
DEEP_SUPERVISION_OUTPUTS = {"tiny": 3, "S": 5, "M": 5, "L": 5, "MedNeXt": 5}
# L is M's network (same lists; only the planned patch differs) and costs ~5 s per backward
# and save/load on 2 CPU cores: check its shapes only, M gets every check.
SHAPES_ONLY = {"L"}


def test_every_network_has_a_test_size() -> None:
    assert set(ODD_SIZES) == set(available_networks())


def _stride_sizes(size: tuple[int, ...], n_outputs: int) -> list[tuple[int, ...]]:
    """Output sizes at strides 1, 2, 4, ... of an input of `size` (ceil: padded then cropped)."""
    return [tuple(-(-s // 2**level) for s in size) for level in range(n_outputs)]


@pytest.mark.parametrize("name", available_networks())
def test_network_contract(name: str, tmp_path: Path) -> None:
    if name == "SwinUNETR":
        pytest.importorskip("einops", reason="MONAI's SwinUNETR needs the optional einops")
    torch.manual_seed(0)
    size = ODD_SIZES[name]
    assert any(
        s % d for s, d in zip(size, build_network(name, 1, N_CLASSES).size_divisor, strict=True)
    ), "test size must exercise the padding path"
    network = build_network(name, 1, N_CLASSES).train()
    x = torch.rand(1, 1, *size)

    # Training mode: a list, highest resolution first, one entry per supervised resolution.
    outputs = network(x)
    n_outputs = DEEP_SUPERVISION_OUTPUTS.get(name, 1)
    assert isinstance(outputs, list)
    assert has_deep_supervision(network) == (n_outputs > 1)
    assert [tuple(o.shape) for o in outputs] == [
        (1, N_CLASSES, *s) for s in _stride_sizes(size, n_outputs)
    ]
    if name in SHAPES_ONLY:
        return

    # Backward: finite gradients everywhere, non-zero for most parameters.
    sum(o.square().mean() for o in outputs).backward()
    grads = [p.grad for p in network.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    nonzero = sum(int(g.abs().sum() > 0) for g in grads if g is not None)
    assert nonzero >= 0.9 * len(grads)

    # Eval mode: only the full-resolution logits, equal to the training-mode first output
    # (no batch norm or dropout in any default net).
    network.eval()
    with torch.no_grad():
        logits = network(x)
    assert isinstance(logits, torch.Tensor)
    assert logits.shape == (1, N_CLASSES, *size)
    torch.testing.assert_close(logits, outputs[0].detach(), rtol=1e-4, atol=1e-5)

    # Save/load: the rebuilt network (from the spec alone) gives identical outputs.
    spec = ModelSpec(network=name, class_names=("background", "pancreas_lesion", "liver_lesion"))
    path = save_model(tmp_path / f"{name}.pt", network, spec)
    loaded, loaded_spec = load_model(path)
    assert loaded_spec == spec
    assert not loaded.training
    with torch.no_grad():
        assert torch.equal(loaded(x), logits)


def test_resenc_m_matches_nnunet_parameter_count() -> None:
    # dynamic_network_architectures 0.4.4 ResidualEncoderUNet with nnU-Net's ResEnc M lists
    # (features 32..320, blocks 1,3,4,6,6,6, decoder 1, InstanceNorm affine, conv bias),
    # 1 input channel and 3 classes: 102,350,575 parameters (counted with that package).
    assert count_parameters(build_network("M", 1, 3)) == 102_350_575


def test_describe_reports_feature_maps_for_memory_planning() -> None:
    network = build_network("M", 1, N_CLASSES)
    info = network.describe((96, 96, 96))
    assert info["parameters"] == count_parameters(network)
    assert info["padded_size"] == [96, 96, 96]
    assert [stage["size"] for stage in info["encoder"]] == [[96 // 2**s] * 3 for s in range(6)]
    assert [stage["channels"] for stage in info["encoder"]] == [32, 64, 128, 256, 320, 320]
    assert info["decoder"][0] == {"level": 0, "channels": 32, "size": [96, 96, 96]}
    # Stem + stage-0 block at full res alone: 32 ch x 96³ x 3 convs.
    assert info["conv_output_elements"] > 3 * 32 * 96**3
    odd = build_network("tiny", 1, N_CLASSES).describe((40, 36, 44))
    assert odd["padded_size"] == [40, 40, 48]
    assert odd["encoder"][-1]["size"] == [5, 5, 6]


def test_describe_counts_conv_outputs_like_a_forward_hook() -> None:
    network = build_network("tiny", 1, N_CLASSES).eval()
    counted = []

    def hook(module: torch.nn.Module, args: tuple, output: torch.Tensor) -> None:
        counted.append(output[0].numel())

    convs = (torch.nn.Conv3d, torch.nn.ConvTranspose3d)
    for module in network.modules():
        if isinstance(module, convs):
            module.register_forward_hook(hook)
    network.train()  # every deep-supervision head runs in training mode
    with torch.no_grad():
        network(torch.zeros(1, 1, 32, 32, 32))
    assert network.describe((32, 32, 32))["conv_output_elements"] == sum(counted)


def test_overrides_and_errors() -> None:
    network = build_network("tiny", 2, 4, deep_supervision=False, features_per_stage=[4, 8, 16, 32])
    assert isinstance(network, ResEncUNet)
    assert not has_deep_supervision(network)
    outputs = network.train()(torch.rand(1, 2, 16, 16, 16))
    assert len(outputs) == 1 and outputs[0].shape == (1, 4, 16, 16, 16)
    with pytest.raises(ValueError, match="unknown network 'ResNet'"):
        build_network("ResNet", 1, 2)
    with pytest.raises(ValueError, match="unknown override"):
        build_network("tiny", 1, 2, width=3)
    with pytest.raises(ValueError, match="expected 2 for 2 stages"):
        build_network("tiny", 1, 2, features_per_stage=[8, 16])
    with pytest.raises(ValueError, match="SegResNet: invalid override"):
        build_network("SegResNet", 1, 2, not_an_argument=1)


def test_tiny_stem_keeps_the_absolute_intensity_a_normed_pointwise_stem_discards() -> None:
    torch.manual_seed(0)
    image = torch.rand(1, 1, 16, 16, 16)
    brighter = 3.0 * image + 0.5  # the same patch through another window
    normed = build_network("tiny", 1, 2, stem_norm=True).stem.eval()
    with torch.no_grad():
        # Norm after a 1x1x1 conv of one channel: every channel is +-the patch z-score.
        assert torch.allclose(normed(image), normed(brighter), atol=5e-3)  # eps aside
        stem = build_network("tiny", 1, 2).stem.eval()
        assert not any(isinstance(layer, torch.nn.InstanceNorm3d) for layer in stem)
        assert (stem(image) - stem(brighter)).abs().max() > 0.1
    for name in ("S", "M", "L"):  # nnU-Net's conv-norm-act stem
        assert isinstance(build_network(name, 1, 2).stem[1], torch.nn.InstanceNorm3d)

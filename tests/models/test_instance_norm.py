"""The channels-last instance norm against PyTorch's layer: values and gradients."""

from __future__ import annotations

import pytest
import torch

from tumorscale.models.instance_norm import InstanceNorm3d

LAYOUTS = [torch.channels_last_3d, torch.contiguous_format]


@pytest.mark.parametrize("grad_layout", LAYOUTS)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_instance_norm_matches_torch_in_every_layout(
    layout: torch.memory_format, grad_layout: torch.memory_format
) -> None:
    """The channels-last fast path gives PyTorch's instance norm and its gradients."""
    torch.manual_seed(0)
    ours = InstanceNorm3d(6, eps=1e-5, affine=True)
    with torch.no_grad():
        ours.weight.uniform_(0.5, 2.0)
        ours.bias.uniform_(-1.0, 1.0)
    reference = torch.nn.InstanceNorm3d(6, eps=1e-5, affine=True)
    reference.load_state_dict(ours.state_dict())
    x = (torch.randn(2, 6, 10, 12, 14) * 40 + 100).to(memory_format=layout)
    x_ours, x_ref = x.clone().requires_grad_(), x.clone().requires_grad_()
    upstream = torch.randn(2, 6, 10, 12, 14).to(memory_format=grad_layout)
    y_ours, y_ref = ours(x_ours), reference(x_ref)
    fast = "ChannelsLast" in type(y_ours.grad_fn).__name__
    assert fast == (layout == torch.channels_last_3d)
    (y_ours * upstream).sum().backward()
    (y_ref * upstream).sum().backward()
    torch.testing.assert_close(y_ours, y_ref, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(x_ours.grad, x_ref.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(ours.weight.grad, reference.weight.grad, rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(ours.bias.grad, reference.bias.grad, rtol=1e-4, atol=1e-3)
    # Each channel of each sample comes out with mean = bias and SD = weight.
    per_channel = y_ours.detach().flatten(2)
    torch.testing.assert_close(per_channel.mean(-1), ours.bias.detach().expand(2, 6),
                               rtol=0, atol=1e-4)
    torch.testing.assert_close(per_channel.std(-1, unbiased=False),
                               ours.weight.detach().expand(2, 6), rtol=1e-3, atol=0)


def test_bfloat16_and_batch_statistics_fall_back_to_torch() -> None:
    """Tensors the fast path does not cover give exactly PyTorch's layer."""
    torch.manual_seed(1)
    x = torch.randn(1, 4, 6, 6, 6).to(memory_format=torch.channels_last_3d)
    ours = InstanceNorm3d(4, affine=True)
    reference = torch.nn.InstanceNorm3d(4, affine=True)
    reference.load_state_dict(ours.state_dict())
    x16 = x.to(torch.bfloat16)
    torch.testing.assert_close(ours.to(torch.bfloat16)(x16), reference.to(torch.bfloat16)(x16))
    plain = InstanceNorm3d(4, affine=False)
    torch.testing.assert_close(plain(x), torch.nn.functional.instance_norm(x))

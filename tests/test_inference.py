"""Frozen inference copies: same outputs for any batch size, refused when they would differ."""
import pytest
import torch
from torch import nn

from lightning_modules.inference import freeze_for_inference
from lightning_modules.nets.mnist import ConvDecoder, JudgeCNN, SmallCNN


@pytest.mark.parametrize("net, shape", [(JudgeCNN(width=8), (4, 1, 28, 28)), (SmallCNN(width=8), (4, 1, 28, 28)),
                                        (ConvDecoder(32), (4, 32))])
def test_frozen_copy_matches_for_other_batch_sizes(net, shape):
    frozen = freeze_for_inference(net, torch.rand(shape))
    x = torch.rand(9, *shape[1:])
    with torch.inference_mode():
        torch.testing.assert_close(frozen(x), net.eval()(x), atol=1e-4, rtol=1e-4)


class Stochastic(nn.Module):
    def forward(self, x):
        return x + torch.rand_like(x)  # a trace cannot reproduce this: it must be refused


def test_copy_that_differs_is_refused():
    with pytest.raises(ValueError, match="frozen copy of Stochastic differs"):
        freeze_for_inference(Stochastic(), torch.zeros(3, 2))


def test_making_a_copy_prints_no_torchscript_deprecation_warning():
    # worker processes make such copies: their warnings would land in the one-line messages on stderr
    import warnings
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        frozen = freeze_for_inference(SmallCNN(width=8), torch.rand(2, 1, 28, 28))
        frozen(torch.rand(3, 1, 28, 28))
    assert not [w for w in caught if "torch.jit" in str(w.message)], [str(w.message) for w in caught]

import torch
from torch import nn

from mgpu_core.model import SimpleCNN


def test_parameter_count_is_the_classic_models():
    assert sum(p.numel() for p in SimpleCNN().parameters()) == 2_122_186


def test_layers_and_output_shape():
    model = SimpleCNN()
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.padding) for c in convs] == [
        (3, 32, (3, 3), (1, 1)), (32, 64, (3, 3), (1, 1))]
    assert [(fc.in_features, fc.out_features) for fc in linears] == [(4096, 512), (512, 10)]
    assert model(torch.zeros(5, 3, 32, 32)).shape == (5, 10)

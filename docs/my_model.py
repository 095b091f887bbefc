"""A worked example of a user's own model for mgpu-bench: any importable factory that takes num_classes and returns
an nn.Module. From the repository root:

  python -m bench.scaling --gpus 1,2 --model docs.my_model:wide_cnn --dataset synthetic --epochs 1

(tests/test_models.py trains it in single and 2-rank ddp.)"""

from torch import nn


def wide_cnn(num_classes: int, width: int = 48) -> nn.Module:
    """A small VGG-style network with BatchNorm: three conv blocks and a linear head; takes any input size."""
    def block(c_in: int, c_out: int) -> list[nn.Module]:
        return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
                nn.MaxPool2d(2)]

    return nn.Sequential(*block(3, width), *block(width, 2 * width), *block(2 * width, 4 * width),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * width, num_classes))

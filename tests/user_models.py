"""Models as users bring them (the shapes of popular CIFAR repositories), for the up-front model check's tests."""

from collections import namedtuple

from torch import nn

Out = namedtuple("Out", "logits aux_logits")


class Small(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                                  nn.Flatten())
        self.head = nn.Linear(8, num_classes)

    def forward(self, x):
        return self.head(self.body(x))


def ResNetNoArgs():  # pytorch-cifar style: no arguments, 10 classes
    return Small()


class Inception(Small):
    def __init__(self, num_classes=10):
        super().__init__(num_classes)
        self.aux = nn.Linear(8, num_classes)

    def forward(self, x):
        h = self.body(x)
        return Out(self.head(h), self.aux(h)) if self.training else self.head(h)


class Leftover(Small):
    def __init__(self, num_classes=10):
        super().__init__(num_classes)
        self.old_head = nn.Linear(8, 1000)


class DictOut(Small):
    def forward(self, x):
        return {"logits": super().forward(x), "features": x.mean()}


class Tied(nn.Module):
    """Tied weights (tied_a and tied_b share one); back.weight gets no gradient."""

    def __init__(self, num_classes=10):
        super().__init__()
        self.proj = nn.Linear(3, 16, bias=False)
        self.back = nn.Linear(16, 3, bias=False)
        self.back.weight = nn.Parameter(self.proj.weight.t().contiguous())
        self.tied_a = nn.Linear(16, 16)
        self.tied_b = nn.Linear(16, 16)
        self.tied_b.weight = self.tied_a.weight
        self.head = nn.Linear(16, num_classes)

    def forward(self, x):
        h = self.proj(x.mean((2, 3)))
        return self.head(self.tied_b(self.tied_a(h)))


def string_out(num_classes=10):
    class S(Small):
        def forward(self, x):
            return "logits"
    return S(num_classes)


def thousand():  # no arguments, ImageNet's 1000 classes
    return Small(1000)


def needs_depth(depth, num_classes=10):
    return Small(num_classes)


def not_a_module(num_classes=10):
    return "resnet"


class BigKernel(Small):
    """A 7x7 convolution without padding: refuses inputs below 7x7."""

    def __init__(self, num_classes=10):
        super().__init__(num_classes)
        self.body[0] = nn.Conv2d(3, 8, 7)


class NoParameters(nn.Module):
    """Logits of the right shape from a fixed slice of the input: nothing to train, nothing to all-reduce."""

    def __init__(self, num_classes=10):
        super().__init__()
        self.num_classes = num_classes

    def forward(self, x):
        return x.flatten(1)[:, :self.num_classes]


class RaisesInForward(Small):
    """A forward with a bug of its own: it fails at every input size."""

    def forward(self, x):
        raise ValueError("the user's bug")

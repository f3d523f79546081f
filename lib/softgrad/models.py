"""Models: a feature extractor plus a last layer that every experiment can modify.

``build_model(cfg, input_shape, num_classes)`` returns a :class:`Classifier`:
``model(x)`` -> logits ``(N, C)``; ``model(x, target)`` in training mode applies the Noisy Softmax
perturbation when the head is a :class:`~softgrad.noisy.NoisySoftmaxHead`.

Feature extractors: ``mlp`` (``depth`` hidden ReLU layers of ``width``), ``lenet5`` (LeCun 1998,
ReLU + max-pool, inputs >= 16x16), ``vgg_small`` (VGG-style conv stack, as used by Noisy Softmax),
``resnet20`` (He et al. 2016 CIFAR ResNet, torchvision BasicBlocks) and ``resnet18`` (torchvision
ResNet-18 with the CIFAR stem: 3x3 stride-1 first conv, no max-pool).
Last-layer options: bias-free (``head_bias=False``), a multiplier on its initial weights
(``head_init_scale``, the Temperature paper's ``||beta z0||`` knob), Noisy Softmax (``noise_alpha>0``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock, resnet18

from .losses.noisy import NoisySoftmaxHead

__all__ = ["Classifier", "build_model", "MODEL_NEEDS", "model_fits"]

# What each model needs of its input, declared (configuration checks read this; nothing is built to check):
# 'image': (C, H, W) inputs; 'min_side': the smallest H and W its pooling takes; 'min_width': the smallest
# ``width`` (VGG's first stage has width // 4 channels).
MODEL_NEEDS: dict[str, dict] = {
    "mlp": {},
    "lenet5": {"image": True, "min_side": 16},
    "vgg_small": {"image": True, "min_width": 4},
    "resnet20": {"image": True},
    "resnet18": {"image": True},
    "mlp1d": {},
    "cnn1d": {},
}


def model_fits(model: str, width: int, input_shape: tuple) -> bool:
    """Whether ``model`` (with ``width``) takes inputs of ``input_shape``, from :data:`MODEL_NEEDS`."""
    need = MODEL_NEEDS[model]
    if need.get("image") and len(input_shape) != 3:
        return False
    if need.get("min_side") and min(input_shape[1:]) < need["min_side"]:
        return False
    return width >= need.get("min_width", 0)


class Classifier(nn.Module):
    def __init__(self, features: nn.Module, feat_dim: int, num_classes: int, head_bias: bool = True,
                 head_init_scale: float = 1.0, noise: dict | None = None):
        super().__init__()
        self.features = features
        if noise and noise.get("alpha", 0) > 0:
            self.head = NoisySoftmaxHead(feat_dim, num_classes, **noise)
        else:
            self.head = nn.Linear(feat_dim, num_classes, bias=head_bias)
        with torch.no_grad():
            self.head.weight.mul_(head_init_scale)
            if getattr(self.head, "bias", None) is not None:
                self.head.bias.mul_(head_init_scale)

    def forward(self, x: Tensor, target: Tensor | None = None) -> Tensor:
        f = self.features(x)
        if isinstance(self.head, NoisySoftmaxHead):
            return self.head(f, target)
        return self.head(f)


def _mlp(input_shape, width: int, depth: int) -> tuple[nn.Module, int]:
    d_in = 1
    for s in input_shape:
        d_in *= s
    layers: list[nn.Module] = [nn.Flatten()]
    for _ in range(depth):
        layers += [nn.Linear(d_in, width), nn.ReLU(inplace=True)]
        d_in = width
    return nn.Sequential(*layers), d_in


def _lenet5(input_shape) -> tuple[nn.Module, int]:
    c, h, w = input_shape
    if min(h, w) < MODEL_NEEDS["lenet5"]["min_side"]:
        raise ValueError(f"model: lenet5 needs images of at least 16x16, got {h}x{w}; use mlp or vgg_small")
    net = nn.Sequential(
        nn.Conv2d(c, 6, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.AdaptiveAvgPool2d(5), nn.Flatten(),
        nn.Linear(16 * 25, 120), nn.ReLU(inplace=True), nn.Linear(120, 84), nn.ReLU(inplace=True),
    )
    return net, 84


def _vgg_small(input_shape, width: int) -> tuple[nn.Module, int]:
    c = input_shape[0]
    chans = [width // 4, width // 2, width]
    layers: list[nn.Module] = []
    for ch in chans:  # two 3x3 convs + BN + ReLU, then a 2x2 max-pool per stage
        layers += [nn.Conv2d(c, ch, 3, padding=1, bias=False), nn.BatchNorm2d(ch), nn.ReLU(inplace=True),
                   nn.Conv2d(ch, ch, 3, padding=1, bias=False), nn.BatchNorm2d(ch), nn.ReLU(inplace=True),
                   nn.MaxPool2d(2, ceil_mode=True)]
        c = ch
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return nn.Sequential(*layers), c


def _resnet20(input_shape) -> tuple[nn.Module, int]:
    def stage(cin, cout, stride):
        down = None
        if stride != 1 or cin != cout:
            down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        return nn.Sequential(BasicBlock(cin, cout, stride, down), BasicBlock(cout, cout), BasicBlock(cout, cout))

    net = nn.Sequential(
        nn.Conv2d(input_shape[0], 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(inplace=True),
        stage(16, 16, 1), stage(16, 32, 2), stage(32, 64, 2), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
    )
    return net, 64


def _resnet18(input_shape) -> tuple[nn.Module, int]:
    net = resnet18(num_classes=10)
    net.conv1 = nn.Conv2d(input_shape[0], 64, 3, 1, 1, bias=False)
    net.maxpool = nn.Identity()
    net.fc = nn.Identity()
    return net, 512


def _mnist1d(model: str, input_shape) -> tuple[nn.Module, int]:
    """MNIST-1D's MLPBase and ConvBase (greydanus/mnist1d); ``cnn1d`` views a (B, L) input as (B, 1, L)."""
    (d,) = input_shape
    if model == "mlp1d":
        return nn.Sequential(nn.Linear(d, 100), nn.ReLU(), nn.Linear(100, 100), nn.ReLU()), 100
    length = d
    for k, s, p in ((5, 2, 1), (3, 2, 1), (3, 2, 1)):
        length = (length + 2 * p - k) // s + 1
    net = nn.Sequential(nn.Unflatten(1, (1, d)), nn.Conv1d(1, 25, 5, 2, 1), nn.ReLU(), nn.Conv1d(25, 25, 3, 2, 1),
                        nn.ReLU(), nn.Conv1d(25, 25, 3, 2, 1), nn.ReLU(), nn.Flatten())
    return net, 25 * length


def build_model(cfg, input_shape: tuple, num_classes: int) -> Classifier:
    """The model that ``cfg`` (a :class:`~softgrad.config.Config`) describes."""
    if cfg.model in ("mlp1d", "cnn1d"):
        feats, dim = _mnist1d(cfg.model, input_shape)
        return Classifier(feats, dim, num_classes, cfg.head_bias, cfg.head_init_scale, _noise(cfg))
    if cfg.model != "mlp" and len(input_shape) != 3:
        raise ValueError(f"model: {cfg.model} needs image inputs (C, H, W), got shape {input_shape}; use mlp")
    if cfg.model == "mlp":
        feats, dim = _mlp(input_shape, cfg.width, cfg.depth)
    elif cfg.model == "lenet5":
        feats, dim = _lenet5(input_shape)
    elif cfg.model == "vgg_small":
        feats, dim = _vgg_small(input_shape, cfg.width)
    elif cfg.model == "resnet20":
        feats, dim = _resnet20(input_shape)
    else:
        feats, dim = _resnet18(input_shape)
    return Classifier(feats, dim, num_classes, cfg.head_bias, cfg.head_init_scale, _noise(cfg))


def _noise(cfg) -> dict | None:
    if cfg.noise_alpha <= 0:
        return None
    return dict(alpha=cfg.noise_alpha, noise=cfg.noise, sign=cfg.noise_sign, noise_std=cfg.noise_std,
                detach_scale=cfg.noise_detach_scale)

"""Registry of reference architectures: name -> builder.

The seeds' chest X-ray baseline is a ResNet50 backbone, global average pooling,
Dense(128, ReLU), Dropout(0.5) and Dense(K) (He et al., "Deep Residual Learning
for Image Recognition", CVPR 2016). Lighter variants (ResNet18, a small CNN)
serve as CPU-friendly surrogates and for tests.

A checkpoint written by the ``training`` package is a ``dict`` saved with
``torch.save`` and loadable with ``torch.load(..., weights_only=True)``::

    {"format": "xray-audit-checkpoint/1", "arch": "resnet50", "num_classes": 3,
     "in_channels": 1, "state_dict": {...}, "spec": ModelSpec.to_dict()}

Only plain tensors, numbers, strings, lists and dicts are stored, so loading
never unpickles arbitrary objects. The one reader is :func:`auditor.models.checkpoints.read_checkpoint`.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

CHECKPOINT_FORMAT = "xray-audit-checkpoint/1"


class ClassifierHead(nn.Module):
    """GAP features -> Dense(hidden, ReLU) -> Dropout -> Dense(K), as in the seeds' recipe."""

    def __init__(self, in_features: int, num_classes: int, hidden: int = 128, dropout: float = 0.5) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden)
        self.drop = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.fc2(self.drop(torch.relu(self.fc1(x))))


def _torchvision_resnet(depth: int, num_classes: int, in_channels: int) -> nn.Module:
    from torchvision import models

    net = models.resnet50(weights=None) if depth == 50 else models.resnet18(weights=None)
    if in_channels != 3:
        net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    in_features = net.fc.in_features
    net.fc = ClassifierHead(in_features, num_classes)
    return net


def resnet50(num_classes: int, in_channels: int = 3) -> nn.Module:
    """The seeds' reference: ResNet50 + GAP + Dense(128, ReLU) + Dropout(0.5) + Dense(K)."""
    return _torchvision_resnet(50, num_classes, in_channels)


def resnet18(num_classes: int, in_channels: int = 3) -> nn.Module:
    """CPU-friendly surrogate: ResNet18 with the same head."""
    return _torchvision_resnet(18, num_classes, in_channels)


class DenseNetClassifier(nn.Module):
    """DenseNet-121 features (Huang et al., CVPR 2017; the CheXNet backbone, Rajpurkar et al. 2017) + the head.

    Dense connectivity instead of residual sums: a surrogate architecturally
    unlike the ResNets, for ensembles (Liu et al., ICLR 2017).
    """

    def __init__(self, num_classes: int, in_channels: int = 3) -> None:
        super().__init__()
        from torchvision import models

        base = models.densenet121(weights=None)
        if in_channels != 3:
            base.features.conv0 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.features = base.features
        self.fc = ClassifierHead(base.classifier.in_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        x = torch.relu(self.features(x))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def densenet121(num_classes: int, in_channels: int = 3) -> nn.Module:
    """DenseNet-121 with the seeds' head (see :class:`DenseNetClassifier`)."""
    return DenseNetClassifier(num_classes, in_channels)


class SmallCNN(nn.Module):
    """A four-block CNN (about 0.1 M parameters) for the demo and for tests."""

    def __init__(self, num_classes: int, in_channels: int = 1, width: int = 16) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for w in (width, width * 2, width * 4, width * 4):
            layers += [
                nn.Conv2d(c, w, 3, padding=1, bias=False),
                nn.BatchNorm2d(w),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            c = w
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = ClassifierHead(c, num_classes, hidden=64, dropout=0.3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {
    "resnet50": resnet50,
    "resnet18": resnet18,
    "small_cnn": SmallCNN,
    "densenet121": densenet121,
}


def list_architectures() -> list[str]:
    """Names accepted by :func:`build_model`."""
    return sorted(ARCHITECTURES)


def build_model(arch: str, num_classes: int, in_channels: int = 1) -> nn.Module:
    """Build an untrained network of a registered architecture."""
    try:
        builder = ARCHITECTURES[arch]
    except KeyError:
        raise ValueError(f"unknown architecture {arch!r}; known: {', '.join(list_architectures())}") from None
    return builder(num_classes=num_classes, in_channels=in_channels)


def last_conv_features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The last convolutional feature map (the HGD guidance tap) of a registered architecture."""
    if isinstance(model, SmallCNN):
        return model.features(x)
    if isinstance(model, DenseNetClassifier):
        return torch.relu(model.features(x))
    from torchvision.models import ResNet

    if not isinstance(model, ResNet):
        raise TypeError(f"no convolutional feature tap is known for {type(model).__name__}")
    x = model.maxpool(model.relu(model.bn1(model.conv1(x))))
    return model.layer4(model.layer3(model.layer2(model.layer1(x))))


# --------------------------------------------------------------------------- checkpoints and local weights
def make_checkpoint(
    model: nn.Module, arch: str, num_classes: int, in_channels: int, spec: dict, extra: dict | None = None
) -> dict:
    """The ``CHECKPOINT_FORMAT`` dict of a trained network (tensors moved to CPU).

    ``spec`` is ``ModelSpec.to_dict()`` of the network's own input (what the
    state dict expects); ``extra`` holds plain JSON-like values (recipe name,
    class names, metrics) and is stored under ``"extra"``.
    """
    state = {k: v.detach().to("cpu").clone() for k, v in model.state_dict().items()}
    ckpt = {
        "format": CHECKPOINT_FORMAT,
        "arch": arch,
        "num_classes": int(num_classes),
        "in_channels": int(in_channels),
        "state_dict": state,
        "spec": dict(spec),
    }
    if extra:
        ckpt["extra"] = dict(extra)
    return ckpt


#: torchvision ImageNet weight files, as named in the torch hub cache (never downloaded here)
IMAGENET_WEIGHT_FILES = {
    "resnet50": ("resnet50-11ad3fa6.pth", "resnet50-0676ba61.pth"),
    "resnet18": ("resnet18-f37072fd.pth",),
}


def find_local_imagenet_weights(arch: str) -> str | None:
    """Path of a locally cached torchvision ImageNet weight file for ``arch``, or None.

    Looks in ``torch.hub.get_dir()/checkpoints`` only; nothing is downloaded.
    """
    from pathlib import Path

    folder = Path(torch.hub.get_dir()) / "checkpoints"
    for name in IMAGENET_WEIGHT_FILES.get(arch, ()):
        if (folder / name).is_file():
            return str(folder / name)
    return None


def load_imagenet_backbone(model: nn.Module, weights_path: str) -> None:
    """Copy cached ImageNet weights into a registered ResNet (head excluded).

    A 1-channel ``conv1`` receives the sum of the RGB filters (a grey image
    replicated to 3 channels gives the same response).
    """
    state = torch.load(weights_path, map_location="cpu", weights_only=True)
    own = model.state_dict()
    for key, value in state.items():
        if key.startswith("fc.") or key not in own:
            continue
        if key == "conv1.weight" and own[key].shape[1] == 1 and value.shape[1] == 3:
            value = value.sum(dim=1, keepdim=True)
        if own[key].shape == value.shape:
            own[key] = value
    model.load_state_dict(own)

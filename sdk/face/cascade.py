"""The MTCNN cascade (P-Net -> R-Net -> O-Net) around three compiled nets.

Zhang et al., "Joint Face Detection and Alignment using Multi-task Cascaded Convolutional
Networks", IEEE SPL 2016. The stage logic, constants and coordinate conventions follow
facenet-pytorch 2.6.0 (``facenet_pytorch/models/utils/detect_face.py``) so results can be
compared with it box for box; the hot loops that are not network inference (pyramid
resize, candidate generation, crop-and-resize) run in C++ (``lanner._C.mtcnn_*``) and NMS
is ``lanner.ops``'.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from .. import _C, ops
from ..timing import OTHER, StageTimer

__all__ = [
    "CascadeParams",
    "NetRunner",
    "PyramidLayout",
    "Workspace",
    "pack_pyramid",
    "run_cascade",
    "pyramid_scales",
    "RefineStage",
    "RNET",
    "ONET",
    "refine",
    "STAGES",
]

# Per-stage timing keys, in cascade order (timed with lanner.timing.StageTimer; "other" is the rest).
STAGES: tuple[str, ...] = ("pyramid", "pnet", "rnet", "onet", "nms", OTHER)

_PNET_CELL = 12  # P-Net's receptive field, px: the smallest face it sees at scale 1
_PER_SCALE_IOU = 0.5  # NMS within one pyramid scale
_CROSS_SCALE_IOU = 0.7  # NMS across scales, and after R-Net
_FINAL_MIN_OVERLAP = 0.7  # final NMS with intersection / min(area)
ONET_SIZE = 48  # side of O-Net's square input crops, px


class NetRunner(Protocol):
    """What the cascade needs from a compiled net: ``run({"image": x}, copy=False) -> {name: array}``
    and ``run_many([...], copy=False)`` (the interface of ``lanner.load(...)``'s Model; the
    cascade reads the outputs before the net runs again, so it lets the backend skip copying
    them)."""

    def run(self, inputs: Mapping[str, np.ndarray], *, copy: bool = True) -> dict[str, np.ndarray]: ...

    def run_many(
        self, inputs: Sequence[Mapping[str, np.ndarray]], *, copy: bool = True
    ) -> list[dict[str, np.ndarray]]: ...


@dataclass(frozen=True)
class CascadeParams:
    """Cascade parameters (facenet-pytorch's defaults).

    Attributes:
        min_face_size: smallest face searched for, px (sets the first pyramid scale 12/min_face_size).
        thresholds: face-probability thresholds of P-Net, R-Net and O-Net.
        scale_factor: ratio between consecutive pyramid scales, in (0, 0.99] (``FaceDetector`` checks).
        rnet_iou_threshold: NMS overlap (IoU) above which R-Net's survivors suppress each other
            before O-Net; a lower value sends fewer overlapping crops of one face to O-Net.
    """

    min_face_size: float = 20.0
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)
    scale_factor: float = 0.709
    rnet_iou_threshold: float = 0.7


class Workspace:
    """Buffers that the cascade's large intermediate arrays (the summed-area table, the
    pyramid, the crop batches) are written into, kept from call to call.

    Fresh arrays of these sizes (tens of MB for a 1280x886 photo) would be page-faulted in on
    every ``detect``; reusing them saves that time on video. A buffer only grows (to the
    largest image seen); :meth:`clear` releases them. One workspace serves one call at a time.
    """

    def __init__(self) -> None:
        self._buffers: dict[str, np.ndarray] = {}

    def buffer(self, name: str, size: int, dtype: type) -> np.ndarray:
        """A 1-d buffer of ``dtype`` with room for at least ``size`` values."""
        buf = self._buffers.get(name)
        if buf is None or buf.size < size or buf.dtype != dtype:
            # Crop batches vary a little from frame to frame: grow with some headroom.
            grown = 0 if buf is None or buf.dtype != dtype else buf.size + buf.size // 2
            buf = np.empty(max(size, grown), dtype)
            self._buffers[name] = buf
        return buf

    def clear(self) -> None:
        """Release every buffer."""
        self._buffers.clear()


def pyramid_scales(height: int, width: int, min_face_size: float, scale_factor: float) -> list[float]:
    """Scales of the image pyramid: 12/min_face_size, times scale_factor, while the short side
    stays at least 12 px (same float arithmetic as facenet-pytorch)."""
    m = _PNET_CELL / min_face_size
    minl = min(height, width) * m
    scales = []
    scale = m
    while minl >= _PNET_CELL:
        scales.append(scale)
        scale *= scale_factor
        minl *= scale_factor
    return scales


def pnet_map_size(n: int) -> int:
    """P-Net's output size along an input side of n px (3x3 conv, 2x2 ceil-mode pool, two 3x3 convs)."""
    return (n - 1) // 2 - 4


@dataclass(frozen=True)
class PyramidLayout:
    """How the pyramid levels go through P-Net: most packed into one canvas (one run), the
    rest one by one.

    Attributes:
        canvas: (height, width) of the canvas; (0, 0) when no level is packed.
        packed: indices of the levels in the canvas, with their (y, x) in ``offsets``.
        offsets: (y, x) of each packed level.
        alone: indices of the levels run on their own.
    """

    canvas: tuple[int, int]
    packed: tuple[int, ...]
    offsets: tuple[tuple[int, int], ...]
    alone: tuple[int, ...]


# P-Net's fixed cost per run, in pixels of input it could have processed in that time
# (measured with OpenVINO on 2 cores: ~0.35 ms per run against ~25 us per 1,000 px).
_RUN_COST_PX = 14_000


@functools.lru_cache(maxsize=64)
def pack_pyramid(sizes: tuple[tuple[int, int], ...]) -> PyramidLayout:
    """Pack pyramid levels (given largest first) into one canvas whose P-Net maps hold each
    level's own maps exactly (``lanner._C.mtcnn_pyramid_canvas`` checks the rules):

    * every level starts at even coordinates, so P-Net's 2x2 pool pairs stay aligned;
    * a level of odd width (height) ends at the canvas's right (bottom) edge: there the pool's
      ceil mode takes the same partial last window as on the level alone, where anywhere
      else the window would reach into the next column (row).

    Running the small levels as one input saves P-Net's per-run overhead (about half its
    time on a 548x342 photo); the canvas's empty cells cost computation, so the largest
    levels may run alone instead: of the layouts that leave the k largest levels out
    (k = 0, 1, ...), the one with the least pixels plus per-run cost is used.
    """
    n = len(sizes)
    best = PyramidLayout((0, 0), (), (), tuple(range(n)))
    best_cost = sum(h * w for h, w in sizes) + _RUN_COST_PX * n
    for k in range(n):
        layout = _pack(sizes, range(k, n))
        runs = len(layout.alone) + (1 if layout.packed else 0)
        cost = (
            layout.canvas[0] * layout.canvas[1]
            + sum(sizes[i][0] * sizes[i][1] for i in layout.alone)
            + _RUN_COST_PX * runs
        )
        if cost < best_cost:
            best, best_cost = layout, cost
    return best


def _pack(sizes: tuple[tuple[int, int], ...], candidates: Iterable[int]) -> PyramidLayout:
    """One canvas for the candidate levels that fit the rules; the others run alone.

    Levels of even height are packed from the top into free rectangles (guillotine cuts;
    odd-width levels only into rectangles that reach the right edge, right-aligned), levels
    of odd height side by side into a bottom band, bottom-aligned. A level that is odd both
    ways needs the bottom-right corner: only the smallest such level gets it.
    """
    n = len(sizes)
    chosen = set(candidates)
    odd_both = [i for i in sorted(chosen) if sizes[i][0] % 2 and sizes[i][1] % 2]
    corner = odd_both[-1] if odd_both else None
    members = [i for i in sorted(chosen) if i not in odd_both[:-1]]
    if len(members) < 2:
        return PyramidLayout((0, 0), (), (), tuple(range(n)))
    upper = [i for i in members if sizes[i][0] % 2 == 0]
    band = [i for i in members if sizes[i][0] % 2 and i != corner] + ([corner] if corner is not None else [])
    width = max(sum(sizes[i][1] for i in band), max((sizes[i][1] for i in upper), default=0))
    if width % 2 == 0 and any(sizes[i][1] % 2 for i in members):
        width += 1  # odd, so that right-aligned odd-width levels start at even x
    placed: dict[int, tuple[int, int]] = {}

    # Free rectangles (y, x, h, w) of the upper part; all start at even coordinates.
    free: list[tuple[int, int, int, int]] = []
    top = 0
    for i in upper:
        h, w = sizes[i]
        fits = [r for r in free if h <= r[2] and w <= r[3] and (w % 2 == 0 or r[1] + r[3] == width)]
        if fits:
            rect = min(fits)  # topmost, then leftmost
            free.remove(rect)
        else:
            rect = (top, 0, h, width)  # a new shelf
            top += h
        y, x0, rh, rw = rect
        if w % 2:  # right-aligned; the rest of the row to its left, the space below it
            x = x0 + rw - w
            beside = (y, x0, rh, rw - w)
        else:
            x = x0
            beside = (y, x0 + w, rh, rw - w)
        below = (y + h, x, rh - h, w)
        placed[i] = (y, x)
        free.extend(r for r in (beside, below) if r[2] > 0 and r[3] > 0)

    # The bottom band: odd-height levels side by side, bottom-aligned, the odd-both-ways one
    # in the bottom-right corner. Its height is odd, the upper part's even.
    height = top + max((sizes[i][0] for i in band), default=0)
    left = 0
    for i in band:
        h, w = sizes[i]
        placed[i] = (height - h, width - w if i == corner else left)
        left += w
    packed = tuple(i for i in range(n) if i in placed)
    alone = tuple(i for i in range(n) if i not in placed)
    return PyramidLayout((height, width), packed, tuple(placed[i] for i in packed), alone)


def _rerec(boxes: np.ndarray) -> np.ndarray:
    """Square the boxes around their centres (side = the longer side), in place."""
    h = boxes[:, 3] - boxes[:, 1]
    w = boxes[:, 2] - boxes[:, 0]
    side = np.maximum(w, h)
    boxes[:, 0] = boxes[:, 0] + w * np.float32(0.5) - side * np.float32(0.5)
    boxes[:, 1] = boxes[:, 1] + h * np.float32(0.5) - side * np.float32(0.5)
    boxes[:, 2] = boxes[:, 0] + side
    boxes[:, 3] = boxes[:, 1] + side
    return boxes


def _bbreg(boxes: np.ndarray, reg: np.ndarray) -> np.ndarray:
    """Apply the nets' box regression (offsets in units of the 1-based box side), in place."""
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    boxes[:, 0] += reg[:, 0] * w
    boxes[:, 1] += reg[:, 1] * h
    boxes[:, 2] += reg[:, 2] * w
    boxes[:, 3] += reg[:, 3] * h
    return boxes


def _crop(
    table: np.ndarray, boxes: np.ndarray, size: int, ws: Workspace, num_threads: int
) -> tuple[np.ndarray, np.ndarray]:
    """Crops of ``boxes[:, :4]`` resized to size x size, into the workspace's buffer for that size."""
    out = ws.buffer(f"crops{size}", len(boxes) * 3 * size * size, np.float32)
    return _C.mtcnn_crop_resize(table, np.ascontiguousarray(boxes[:, :4]), size, out=out, num_threads=num_threads)


def _empty() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0, 5, 2), np.float32)


def _landmarks(boxes: np.ndarray, points: np.ndarray) -> np.ndarray:
    """O-Net's landmarks, relative to the (1-based) input box before its regression, in pixels (N, 5, 2)."""
    bw = boxes[:, 2:3] - boxes[:, 0:1] + 1
    bh = boxes[:, 3:4] - boxes[:, 1:2] + 1
    px = bw * points[:, :5] + boxes[:, 0:1] - 1
    py = bh * points[:, 5:10] + boxes[:, 1:2] - 1
    return np.stack([px, py], axis=2)


# A landmark net's box regression beyond this fraction of the side means the box is not the kind of box it
# places points in (a student's box, e.g. taller and lower for a masked face): it runs once more on its own
# regressed box for those faces (benchmarks/detection/README.md, "Landmarks").
LANDMARK_REFINE_OFFSET = 0.2


def _landmarks_of(
    table: np.ndarray,
    boxes: np.ndarray,
    landmarks: np.ndarray,
    net: NetRunner,
    timer: StageTimer,
    ws: Workspace,
    num_threads: int,
) -> np.ndarray:
    """The five points ``net`` (an O-Net) gives on ``boxes`` (N, >=4) xyxy, squared first: (N, 5, 2); where its
    box regression moves a side by more than :data:`LANDMARK_REFINE_OFFSET`, the points of a second pass on its
    regressed box. A box with no pixel in the image keeps its row of ``landmarks``."""
    landmarks = landmarks.copy()
    rows, squares = np.arange(len(boxes)), _rerec(boxes[:, :4].copy())
    for _ in range(2):  # the boxes as given, then those the net moved by more than LANDMARK_REFINE_OFFSET
        crops, valid = _crop(table, squares, ONET_SIZE, ws, num_threads)
        rows, squares = rows[valid], squares[valid]
        if not len(rows):
            break
        with timer.stage("onet"):
            out = net.run({"image": crops[valid]}, copy=True)
        landmarks[rows] = _landmarks(squares, out["landmarks"])
        off = np.abs(out["reg"]).max(axis=1) > LANDMARK_REFINE_OFFSET
        rows, squares = rows[off], _rerec(_bbreg(squares[off].copy(), out["reg"][off]))
        if not len(rows):
            break
    return landmarks


@dataclass(frozen=True)
class RefineStage:
    """A refinement stage of a cascade: crop every candidate box, run a net on the crops, keep
    the boxes whose face probability passes a threshold, suppress overlaps.

    Attributes:
        name: the net's stage-timing key (``"rnet"``, ``"onet"``).
        size: side of the square crops the net takes, px.
        iou_threshold: NMS overlap threshold.
        nms_mode: ``"union"`` (IoU) or ``"min"`` (intersection over the smaller box, pixels
            counted inclusively as facenet-pytorch does).
        regress_first: apply the net's box regression before NMS (O-Net); otherwise after it,
            followed by squaring the boxes for the next stage (R-Net).
    """

    name: str
    size: int
    iou_threshold: float
    nms_mode: str = "union"
    regress_first: bool = False


RNET = RefineStage("rnet", 24, _CROSS_SCALE_IOU)
ONET = RefineStage("onet", ONET_SIZE, _FINAL_MIN_OVERLAP, nms_mode="min", regress_first=True)


def refine(
    table: np.ndarray,
    boxes: np.ndarray,
    net: NetRunner,
    stage: RefineStage,
    threshold: float,
    timer: StageTimer,
    workspace: Workspace,
    num_threads: int,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Run one refinement stage: crop -> run -> threshold -> NMS.

    Args:
        table: the image's summed-area table (``lanner._C.mtcnn_integral``).
        boxes: (N, >=4) float32 candidate boxes, xyxy pixels.
        net: the stage's net; its outputs are ``prob`` (N, 2), ``reg`` (N, 4) and optionally
            ``landmarks`` (N, 10).
        stage: what the stage does (:data:`RNET`, :data:`ONET` or a student detector's own).
        threshold: face-probability threshold.
        timer: receives the net's and the NMS's time (stages ``stage.name`` and ``"nms"``).
        workspace: buffers for the crops.
        num_threads: threads for crop resizing (0: one per core).

    Returns:
        ``(boxes (K, 5) float32 xyxy + score, landmarks (K, 5, 2) or None)``, the kept boxes.
    """
    crops, valid = _crop(table, boxes, stage.size, workspace, num_threads)
    if not valid.all():
        boxes, crops = boxes[valid], crops[valid]
    if not len(boxes):
        return np.zeros((0, 5), np.float32), None
    with timer.stage(stage.name):
        out = net.run({"image": crops}, copy=False)
    score = out["prob"][:, 1]
    keep = score > threshold
    boxes = np.concatenate([boxes[keep, :4], score[keep, None]], axis=1)
    reg = out["reg"][keep]
    landmarks = _landmarks(boxes, out["landmarks"][keep]) if "landmarks" in out else None
    if stage.regress_first:
        boxes = _bbreg(boxes, reg)
    corners = boxes[:, :4] + np.array([0, 0, 1, 1], np.float32) if stage.nms_mode == "min" else boxes[:, :4]
    with timer.stage("nms"):
        pick = ops.nms(corners, boxes[:, 4], stage.iou_threshold, mode=stage.nms_mode)
    boxes = boxes[pick] if stage.regress_first else _rerec(_bbreg(boxes[pick], reg[pick]))
    return boxes, (landmarks[pick] if landmarks is not None else None)


def _pyramid(
    table: np.ndarray, sizes: list[tuple[int, int]], ws: Workspace, num_threads: int
) -> tuple[PyramidLayout, list[dict[str, np.ndarray]]]:
    """P-Net's inputs: most levels packed into one canvas (P-Net's maps of it hold each level's
    maps exactly, see :func:`pack_pyramid`), the rest as levels of their own."""
    layout = pack_pyramid(tuple(sizes))
    feeds = []
    if layout.packed:
        ch, cw = layout.canvas
        canvas = _C.mtcnn_pyramid_canvas(
            table,
            [sizes[i] for i in layout.packed],
            list(layout.offsets),
            layout.canvas,
            out=ws.buffer("canvas", 3 * ch * cw, np.float32),
            num_threads=num_threads,
        )
        feeds.append({"image": canvas})
    if layout.alone:
        alone = [sizes[i] for i in layout.alone]
        total = sum(3 * lh * lw for lh, lw in alone)
        levels = _C.mtcnn_pyramid(table, alone, out=ws.buffer("pyramid", total, np.float32), num_threads=num_threads)
        feeds.extend({"image": level} for level in levels)
    return layout, feeds


def _pnet_candidates(
    maps: list[dict[str, np.ndarray]],
    layout: PyramidLayout,
    sizes: list[tuple[int, int]],
    scales: list[float],
    threshold: float,
    timer: StageTimer,
) -> np.ndarray:
    """P-Net's face candidates over all scales, after per-scale and cross-scale NMS, regressed
    and squared: (N, 5) float32 xyxy + score."""
    # P-Net's "maps": its two face logits and four box regressions per cell (the softmax is
    # taken in the candidate pass, on the cells that can pass the threshold).
    source: dict[int, tuple[dict[str, np.ndarray], tuple[int, int, int, int] | None]] = {}
    for i, (y, x) in zip(layout.packed, layout.offsets):
        source[i] = (maps[0], (y // 2, x // 2, pnet_map_size(sizes[i][0]), pnet_map_size(sizes[i][1])))
    for k, i in enumerate(layout.alone):
        source[i] = (maps[k + (1 if layout.packed else 0)], None)
    per_scale = []
    for i, scale in enumerate(scales):
        out, window = source[i]
        cand = _C.mtcnn_generate_candidates(out["maps"], scale, threshold, window)
        if len(cand):
            with timer.stage("nms"):
                per_scale.append(cand[ops.nms(cand[:, :4], cand[:, 4], _PER_SCALE_IOU)])
    boxes = np.concatenate(per_scale) if per_scale else np.zeros((0, 9), np.float32)
    with timer.stage("nms"):
        boxes = boxes[ops.nms(boxes[:, :4], boxes[:, 4], _CROSS_SCALE_IOU)]
    if not len(boxes):
        return np.zeros((0, 5), np.float32)
    regw = boxes[:, 2] - boxes[:, 0]
    regh = boxes[:, 3] - boxes[:, 1]
    boxes = np.stack(
        [
            boxes[:, 0] + boxes[:, 5] * regw,
            boxes[:, 1] + boxes[:, 6] * regh,
            boxes[:, 2] + boxes[:, 7] * regw,
            boxes[:, 3] + boxes[:, 8] * regh,
            boxes[:, 4],
        ],
        axis=1,
    )
    return _rerec(boxes)


def run_cascade(
    image: np.ndarray,
    pnet: NetRunner,
    rnet: NetRunner,
    onet: NetRunner,
    params: CascadeParams,
    times: dict[str, float] | None = None,
    *,
    channel_order: str = "rgb",
    workspace: Workspace | None = None,
    num_threads: int = 0,
    survivors: dict[str, np.ndarray] | None = None,
    landmark_net: NetRunner | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Detect faces in one image.

    Args:
        image: (H, W) grayscale or (H, W, 1|3|4) uint8 image, any strides (already
            validated); read in place, never copied.
        pnet, rnet, onet: the three compiled nets.
        params: cascade parameters.
        times: when given, seconds spent per stage (keys ``STAGES``) are added to it.
        channel_order: ``"rgb"`` or ``"bgr"``, the order of a colour image's channels.
        workspace: buffers to reuse for the large intermediate arrays (a new set otherwise).
        num_threads: threads for the summed-area table, the pyramid and crop resizing (0: one per core).
        survivors: when given, receives ``"rnet"``: the (K, 5) float32 boxes (xyxy + R-Net score) that
            R-Net passed to O-Net (hard-example mining, ``lanner.distill.detection``).
        landmark_net: when given, an O-Net whose landmark head gives the five points instead of ``onet``'s: it
            runs once, batched, on the final boxes (squared around their centres, as O-Net's inputs are), and
            only its landmarks are read (boxes and scores stay the cascade's).

    Returns:
        ``(boxes (N, 4) float32 xyxy, scores (N,) float32, landmarks (N, 5, 2) float32 xy)``,
        by descending score.
    """
    timer = StageTimer()
    start = time.perf_counter_ns()
    with timer.run():
        result = _cascade(
            image,
            (pnet, rnet, onet),
            params,
            channel_order,
            workspace or Workspace(),
            num_threads,
            timer,
            survivors,
            landmark_net,
        )
    if times is not None:
        spent = {stage: timer.last.get(stage, 0) / 1e9 for stage in STAGES if stage != OTHER}
        spent[OTHER] = (time.perf_counter_ns() - start) / 1e9 - sum(spent.values())
        for key, value in spent.items():
            times[key] = times.get(key, 0.0) + value
    return result


def _cascade(
    image: np.ndarray,
    nets: tuple[NetRunner, NetRunner, NetRunner],
    params: CascadeParams,
    channel_order: str,
    ws: Workspace,
    num_threads: int,
    timer: StageTimer,
    survivors: dict[str, np.ndarray] | None = None,
    landmark_net: NetRunner | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pnet, rnet, onet = nets
    h, w = image.shape[:2]
    t0, t1, t2 = (float(t) for t in params.thresholds)
    with timer.stage("pyramid"):
        scales = pyramid_scales(h, w, params.min_face_size, params.scale_factor)
        sizes = [(int(h * s + 1), int(w * s + 1)) for s in scales]
        # One summed-area table serves every pyramid level and every crop (area resize = box
        # means); it reads the image in place in its channel order.
        table = _C.mtcnn_integral(
            image, channel_order, out=ws.buffer("integral", (h + 1) * (w + 1) * 3, np.uint32), num_threads=num_threads
        )
        layout, feeds = _pyramid(table, sizes, ws, num_threads)
    # All inputs through P-Net back to back (one output set each), then candidates and NMS.
    with timer.stage("pnet"):
        maps = pnet.run_many(feeds, copy=False) if feeds else []
    boxes = _pnet_candidates(maps, layout, sizes, scales, t0, timer)
    if len(boxes):
        rnet_stage = dataclasses.replace(RNET, iou_threshold=params.rnet_iou_threshold)
        boxes, _ = refine(table, boxes, rnet, rnet_stage, t1, timer, ws, num_threads)
    if survivors is not None:
        survivors["rnet"] = boxes.copy()
    if not len(boxes):
        return _empty()
    boxes, landmarks = refine(table, boxes, onet, ONET, t2, timer, ws, num_threads)
    if landmarks is None:
        return _empty()
    if landmark_net is not None and len(boxes):
        landmarks = _landmarks_of(table, boxes, landmarks, landmark_net, timer, ws, num_threads)
    return (
        np.ascontiguousarray(boxes[:, :4], dtype=np.float32),
        np.ascontiguousarray(boxes[:, 4], dtype=np.float32),
        np.ascontiguousarray(landmarks, dtype=np.float32),
    )

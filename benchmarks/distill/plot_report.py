"""Plot a ``lanner distill face-embedding`` report: rank-1 by probe face width, and validation rank-1 by step.

Usage: python benchmarks/distill/plot_report.py results/face_student16_report.json results/face_student16.png
"""

from __future__ import annotations

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(report_path: str, out_path: str) -> None:
    report = json.loads(open(report_path).read())
    test = report["test"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for key, label in (
        ("student_openvino-int8", "student int8 (OpenVINO)"),
        ("student_onnxruntime-fp32", "student fp32 (ONNX Runtime)"),
    ):
        widths = sorted(test[key], key=float)
        ax1.plot([float(w) for w in widths], [test[key][w]["rank1"] for w in widths], "o-", label=label)
    for width, row in test.get("teacher_upsampled", {}).items():
        ax1.plot([float(width)], [row["rank1"]], "s", color="k", label=f"teacher, upsampled {width} px probe")
    ax1.axhline(test["teacher_full_resolution"]["rank1"], color="grey", ls="--", label="teacher, full resolution")
    ax1.set(
        xlabel="probe face width (px)",
        ylabel="rank-1 (44 test identities)",
        ylim=(0, 1),
        title="cross-quality identification",
    )
    ax1.legend(fontsize=7)
    steps = [h["step"] for h in report["history"]]
    ax2.plot(steps, [h["rank1"] for h in report["history"]], "o-", label="103k params (shipped)")
    wide = report.get("wide_student_validation")
    if wide:
        ax2.plot(
            [h["step"] for h in wide["history"]],
            [h["rank1"] for h in wide["history"]],
            "s",
            label=f"{wide['parameters'] // 1000}k params (stopped early)",
        )
    ax2.set(
        xlabel="training step (batch 128)",
        ylabel="validation rank-1 at 16 px (24 held-out ids)",
        ylim=(0, 0.5),
        title="training",
    )
    ax2.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_path, dpi=90)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

"""SDD-FIQA pseudo-labels (the 1-D Wasserstein distance, the labels) and the error-versus-reject score,
against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from lanner.distill.degrade import occlude_lower_face  # noqa: E402
from lanner.distill.quality import (  # noqa: E402
    BENCHMARK_MIX,
    REJECTED_FRACTIONS,
    degrade_face,
    error_versus_reject,
    oracle_gain_share,
    sdd_fiqa_labels,
    wasserstein_1d,
)


def test_wasserstein_equal_sizes_is_mean_sorted_difference():
    # sorted a = [0.1, 0.5, 0.9], sorted b = [0.0, 0.2, 0.4]: |0.1| + |0.3| + |0.5| = 0.9 -> 0.3
    assert wasserstein_1d([0.5, 0.1, 0.9], [0.4, 0.0, 0.2]) == pytest.approx(0.3, abs=1e-12)


def test_wasserstein_unequal_sizes_by_hand():
    # a = {0, 1} (1/2 each), b = {0.5}: F_a - F_b = 1/2 on [0, 0.5), -1/2 on [0.5, 1): W1 = 0.25 + 0.25
    assert wasserstein_1d([0.0, 1.0], [0.5]) == pytest.approx(0.5, abs=1e-12)
    assert wasserstein_1d([0.3], [0.3, 0.3]) == 0.0


@pytest.mark.parametrize("a, b", [([], [1.0]), ([np.nan], [1.0])])
def test_wasserstein_bad_input(a, b):
    with pytest.raises(ValueError, match="non-empty arrays of finite values"):
        wasserstein_1d(a, b)


def test_labels_by_hand():
    # 2-d unit embeddings at angles; cosine = cos(angle difference).
    def unit(deg):
        r = np.radians(np.asarray(deg, np.float64))
        return np.stack([np.cos(r), np.sin(r)], axis=1).astype(np.float32)

    reference = unit([0, 0, 90, 180])  # identity A twice, B, C
    ref_ids = np.array(["A", "A", "B", "C"])
    # Sample of A (its source is reference 0, excluded) at 0 deg: S_p = {cos 0} = {1};
    # S_n = one of {cos 90, cos 180} = {0} or {-1}: W1 = 1 or 2 per draw.
    labels = sdd_fiqa_labels(unit([0]), np.array(["A"]), np.array([0]), reference, ref_ids, draws=200, seed=0)
    assert 1.4 < labels[0] < 1.6  # the mean over draws of 1 and 2, each with probability 1/2
    # A sample of A at 120 deg (no source excluded): S_p = {cos 120, cos 120} = {-0.5, -0.5};
    # S_n = both others = {cos 30, cos 60} = {0.866, 0.5}: W1 = (1.0 + 1.366) / 2, negative (S_p below S_n).
    labels = sdd_fiqa_labels(unit([120]), np.array(["A"]), np.array([-1]), reference, ref_ids, draws=3, seed=0)
    assert labels[0] == pytest.approx(-(1.0 + 0.5 + np.cos(np.radians(30))) / 2, abs=1e-6)


def test_labels_refuse_an_identity_without_other_references():
    emb = np.eye(2, dtype=np.float32)
    with pytest.raises(ValueError, match="has no other reference photo"):
        sdd_fiqa_labels(emb[:1], np.array(["A"]), np.array([0]), emb, np.array(["A", "B"]))


def test_occlusion_and_degraded_views_are_seeded():
    image = np.full((120, 120, 3), 128, np.uint8)
    lm = np.array([[40, 50], [80, 50], [60, 70], [45, 90], [75, 90]], np.float32)
    a = occlude_lower_face(image, lm, np.random.default_rng(1))
    b = occlude_lower_face(image, lm, np.random.default_rng(1))
    assert np.array_equal(a, b)
    assert (a[95, 60] != 128).any() and (a[20, 60] == 128).all()  # the chin is covered, the forehead is not
    with pytest.raises(ValueError, match=r"landmarks should be \(5, 2\)"):
        occlude_lower_face(image, lm[:4], np.random.default_rng(1))
    one = degrade_face(image, lm, 40.0, BENCHMARK_MIX, np.random.default_rng([3, 4]))
    two = degrade_face(image, lm, 40.0, BENCHMARK_MIX, np.random.default_rng([3, 4]))
    assert np.array_equal(one[0], two[0]) and one[2] == two[2]
    assert 20.0 <= one[2]["width"] <= 40.0 and one[0].shape[1] == round(120 * one[2]["width"] / 40.0)


def test_error_versus_reject_by_hand():
    genuine = np.array([0.1, 0.9, 0.2, 0.8])  # at threshold 0.5 the first and third probes fail
    curve = error_versus_reject(genuine, 0.5, genuine)  # rejecting the worst genuine scores first
    at = {r: curve[i] for i, r in enumerate(REJECTED_FRACTIONS)}
    assert at[0.0] == 0.5 and at[0.25] == pytest.approx(1 / 3) and at[0.5] == 0.0
    # Rejecting the best first keeps the failures: FNMR 0.5 -> 2/3 -> 1.
    worst_first = error_versus_reject(genuine, 0.5, -genuine)
    assert worst_first[0] == 0.5 and worst_first[25] == pytest.approx(2 / 3) and worst_first[50] == 1.0
    with pytest.raises(ValueError, match="one quality per genuine score"):
        error_versus_reject(genuine, 0.5, genuine[:3])


def test_oracle_gain_share():
    rng = np.random.default_rng(0)
    genuine, impostor = rng.uniform(0, 1, 400), np.linspace(0.0, 0.5, 101)  # threshold at FMR 1e-2: 0.495
    assert oracle_gain_share(genuine, impostor, genuine, 1e-2) == pytest.approx(1.0)
    assert oracle_gain_share(genuine, impostor, -genuine, 1e-2) < 0  # worse than no rejection
    assert abs(oracle_gain_share(genuine, impostor, rng.uniform(size=400), 1e-2)) < 0.15  # a random order: ~0
    with pytest.raises(ValueError, match="no probe fails"):
        oracle_gain_share(genuine + 1.0, impostor, genuine, 1e-2)
    with pytest.raises(ValueError, match="an FMR in"):
        oracle_gain_share(genuine, impostor, genuine, 1.5)

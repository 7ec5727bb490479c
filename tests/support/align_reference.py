"""NumPy reference of face alignment's fit: the test oracle of lanner.face.align and lanner._C.align_transforms."""

from __future__ import annotations

import numpy as np

__all__ = ["umeyama"]


def umeyama(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Reference least-squares similarity src -> dst (Umeyama 1991, by SVD, reflection excluded), (2, 3)."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    cov = (dst - mu_d).T @ (src - mu_s) / len(src)
    u, d, vt = np.linalg.svd(cov)
    sign = np.diag([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt))])
    rotation = u @ sign @ vt
    scale = np.trace(np.diag(d) @ sign) / ((src - mu_s) ** 2).sum(1).mean()
    return np.hstack([scale * rotation, (mu_d - scale * rotation @ mu_s)[:, None]])

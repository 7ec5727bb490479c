import numpy as np
import torch


def to_tensor(pic):
    """HxWxC array -> CxHxW float tensor (scaled to [0, 1] for uint8), like torchvision's."""
    arr = np.asarray(pic)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    t = torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))
    if t.dtype == torch.uint8:
        return t.float().div(255)
    return t

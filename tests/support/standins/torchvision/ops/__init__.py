from .boxes import batched_nms, nms  # noqa: F401

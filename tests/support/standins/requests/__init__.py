"""Stand-in for ``requests`` (not a Lanner dependency): facenet-pytorch imports it at module
level only to download InceptionResnetV1 weights, which the MTCNN reference never does."""

from . import adapters  # noqa: F401


class Session:  # pragma: no cover - only here so facenet-pytorch imports
    def __init__(self, *args, **kwargs):
        raise RuntimeError("network access is not available in Lanner's reference stand-in")

class HTTPAdapter:  # pragma: no cover - see requests/__init__.py
    def __init__(self, *args, **kwargs):
        raise RuntimeError("network access is not available in Lanner's reference stand-in")

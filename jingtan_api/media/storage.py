"""Where image bytes live: a small interface and the default local-disk implementation.

Keys are content hashes with an extension (``<sha256>.png``), so a stored object never changes: writing
the same key twice is a no-op and readers may cache forever. Another backend (an S3-compatible bucket)
implements the same three methods and is chosen where the app is built.
"""

import os
import re
import tempfile
from pathlib import Path
from typing import Protocol

KEY = re.compile(r"^[0-9a-f]{64}\.(png|jpg|webp)$")


class Storage(Protocol):
    def put(self, key: str, data: bytes) -> None: ...

    def get(self, key: str) -> bytes | None: ...

    def exists(self, key: str) -> bool: ...


class LocalDiskStorage:
    """Files under ``root`` (created on first write), written atomically (temp file + rename)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        if not KEY.match(key):
            raise ValueError(f"invalid media key {key!r}")
        return self.root / key[:2] / key

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        if path.exists():
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".upload-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def get(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, ValueError):
            return None

    def exists(self, key: str) -> bool:
        try:
            return self._path(key).exists()
        except ValueError:
            return False

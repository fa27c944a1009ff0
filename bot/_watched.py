"""A data file admins edit while the bot runs: re-read when it changes, the last good version kept on error."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

from bot._yaml import YamlError

T = TypeVar("T")


class WatchedFile(Generic[T]):
    """`get()` returns the file's parsed content, re-read when its modification time changes.

    A broken edit (a `YamlError` from `load`) is kept in `error` (file:line, for logs and `check`) and the
    last good content stays in use, so a typo in `data/*.yaml` never stops the bot or empties a list.
    """

    def __init__(self, path: Path, load: Callable[[Path], T], empty: T) -> None:
        self.path = path
        self._load = load
        self._value = empty
        self._stamp: int | None = -1
        self.error: YamlError | None = None
        self.version = 0
        """Goes up each time new content is loaded, so derived indexes know to rebuild."""

    def get(self) -> T:
        stamp = self.path.stat().st_mtime_ns if self.path.exists() else None
        if stamp != self._stamp:
            self._stamp = stamp
            try:
                self._value, self.error = self._load(self.path), None
                self.version += 1
            except YamlError as err:
                self.error = err
        return self._value

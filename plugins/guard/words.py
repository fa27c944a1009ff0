"""`data/guard.yaml`, the admins' list of banned words and allowed domains, re-read when it changes.

A broken edit is reported with file:line and the last good list keeps working.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from bot import YamlError, load_yaml, pydantic_error_to_yaml_error


class GuardWords(BaseModel):
    model_config = ConfigDict(extra="forbid")

    banned_words: list[str] = []
    allowed_domains: list[str] = []


def load_words(path: Path) -> GuardWords:
    """Read the file; a missing file means no banned words, a broken one is a YamlError with the line."""
    if not path.exists():
        return GuardWords()
    doc = load_yaml(path)
    try:
        return GuardWords.model_validate(doc.data or {})
    except ValidationError as err:
        raise pydantic_error_to_yaml_error(doc, err) from None


class WordsFile:
    """The word list, re-read when the file's modification time changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: int | None = -1
        self._words = GuardWords()
        self.error: YamlError | None = None

    def get(self) -> GuardWords:
        stamp = self.path.stat().st_mtime_ns if self.path.exists() else None
        if stamp != self._stamp:
            self._stamp = stamp
            try:
                self._words, self.error = load_words(self.path), None
            except YamlError as err:
                self.error = err
        return self._words

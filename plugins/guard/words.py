"""`data/guard.yaml`: the admins' list of banned words and allowed domains, checked with file:line."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from bot import load_yaml, pydantic_error_to_yaml_error


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

"""`data/faq.yaml`: the admins' questions and answers, checked with file:line and re-read when it changes."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from bot import YamlError, load_yaml, parse_duration, pydantic_error_to_yaml_error


class FaqEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=64)
    questions: list[str] = []
    """Ways members ask it; matching compares the message with each (fuzzy, after word segmentation)."""
    keywords: list[str] = []
    """Words that on their own make the entry a candidate (all of one line must appear: "敏感肌 精华")."""
    answer: str = Field(min_length=1)
    """The reply: a template (jinja2), so it can use {{ member.display }} and the like."""
    rooms: list[str] = []
    """Topic patterns (`快闪*`) of the rooms it answers in; empty: every room."""
    cooldown: str | None = None
    """Overrides the plugin's cooldown for this entry."""

    @field_validator("cooldown")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration(value)
        return value

    @model_validator(mode="after")
    def _asked_somehow(self) -> FaqEntry:
        if not self.questions and not self.keywords:
            raise ValueError("每条问答至少要有 questions 或 keywords 之一")
        return self


class FaqBank(BaseModel):
    model_config = ConfigDict(extra="forbid")

    entries: list[FaqEntry] = []


def load_bank(path: Path) -> FaqBank:
    """Read the file; missing means no entries, broken is a YamlError with the line."""
    if not path.exists():
        return FaqBank()
    doc = load_yaml(path)
    try:
        bank = FaqBank.model_validate(doc.data or {})
    except ValidationError as err:
        raise pydantic_error_to_yaml_error(doc, err) from None
    seen: dict[str, int] = {}
    for index, entry in enumerate(bank.entries):
        if entry.id in seen:
            raise YamlError(doc.file, doc.line("entries", index, "id"),
                            f"问答 id「{entry.id}」重复（第 {seen[entry.id] + 1} 条已用）")
        seen[entry.id] = index
    return bank

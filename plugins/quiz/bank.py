"""Question banks: `data/quiz/*.yaml`, hand-written by admins, validated with file and line."""

from __future__ import annotations

import string
from collections.abc import Iterator
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from bot import YamlError, load_yaml, pydantic_error_to_yaml_error

from .matching import choice_index, normalize_answer

LETTERS = string.ascii_uppercase


class Question(BaseModel):
    """A choice question (`choices` + `answer: B`) or a free one (`answers: [...]`)."""

    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)

    question: str = Field(min_length=1)
    choices: list[str] | None = Field(None, min_length=2, max_length=10)
    answer: str | None = None
    """For a choice question: the letter (or text) of the right choice. Else: one accepted answer."""
    answers: list[str] = []
    """More accepted answers (free questions: synonyms, 中英文写法)."""
    explanation: str = ""
    points: int | None = Field(None, ge=0, le=10000)

    @model_validator(mode="after")
    def _answer_given(self) -> Question:
        if self.answer is None and not self.answers:
            raise ValueError("要写 answer（或 answers）：正确答案")
        if self.choices is not None:
            if self.answer is None:
                raise ValueError("选择题要写 answer：正确选项的字母")
            if choice_index(self.answer, self.choices) is None:
                raise ValueError(f"answer {self.answer!r} 不在选项 A-{LETTERS[len(self.choices) - 1]} 里")
        elif not any(normalize_answer(a) for a in self.accepted()):
            raise ValueError("有一个答案去掉空格和标点后是空的")
        return self

    def accepted(self) -> list[str]:
        return [a for a in [self.answer, *self.answers] if a is not None]

    def right_choice(self) -> int | None:
        return None if self.choices is None or self.answer is None else choice_index(self.answer, self.choices)

    def answer_text(self) -> str:
        """The answer as the reveal shows it: `B. 透明质酸`, or the first accepted answer."""
        index = self.right_choice()
        if index is not None and self.choices is not None:
            return f"{LETTERS[index]}. {self.choices[index]}"
        return self.accepted()[0]


class Bank(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    points: int = Field(10, ge=0, le=10000)
    """Points for a right answer unless a question sets its own."""
    questions: list[Question] = Field(min_length=1)


def load_bank(path: Path) -> Bank:
    """Parse and validate one bank; raise YamlError (file:line) if it is wrong."""
    if not path.resolve().is_relative_to(path.parent.resolve()):  # questions are posted: no server files
        raise YamlError(str(path), None, "题库文件是指向题库文件夹之外的符号链接，不能使用")
    doc = load_yaml(path)
    try:
        return Bank.model_validate(doc.data)
    except ValidationError as err:
        raise pydantic_error_to_yaml_error(doc, err, model=Bank) from None


def bank_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.yaml")) + sorted(folder.glob("*.yml"))


def find_bank(folder: Path, wanted: str | None) -> tuple[str, Bank]:
    """A bank by file stem or `name` (the first bank if `wanted` is empty); LookupError if none fits."""
    broken: list[str] = []
    names: list[str] = []
    for path in bank_files(folder):
        try:
            bank = load_bank(path)
        except YamlError as err:  # its message without the file's path: members read this
            broken.append(f"{path.stem}（{err.message}）")
            continue
        names.append(bank.name or path.stem)
        if not wanted or wanted in (path.stem, bank.name):
            return path.stem, bank
    # Members read this: bank names only, never the server's paths (admins find the details in `qunbot check`).
    found = f"现有题库：{'、'.join(names)}" if names else "还没有可用的题库"
    if broken:
        found += f"；有错误的题库：{'、'.join(broken)}，请管理员运行 qunbot check"
    raise LookupError(found)


def check_banks(folder: Path) -> Iterator[str]:
    for path in bank_files(folder):
        try:
            load_bank(path)
        except YamlError as err:
            yield str(err)

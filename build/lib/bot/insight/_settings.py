"""`[plugins.insight]` in qunbot.toml: tag rules, lifecycle stage rules, schedule and the purchase token."""

from __future__ import annotations

from datetime import timedelta
from functools import cached_property
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, field_validator

from bot._durations import parse_duration
from bot.insight._rules import STAGES, Rule, compile_rule

DEFAULT_TAGS = {
    "active": "active_days(7) >= 3",
    "silent": "quiet_days >= 14",
    "KOC": "invited_stayed >= 3 and 'active' in tags",
}
DEFAULT_STAGES = {
    "interested": "active_days(30) >= 3 or signin_days(30) >= 3 or quiz_answers >= 1 or lottery_entries >= 1",
    "purchased": "purchases >= 1",
    "loyal": "purchases >= 2 or (purchases >= 1 and 'active' in tags)",
}


def _compiles(source: str) -> str:
    compile_rule("", source)
    return source


RuleSource = Annotated[str, AfterValidator(_compiles)]
"""A rule expression, checked when the config loads (the error's key names the tag, so the line is found)."""


class InsightConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    tags: dict[str, RuleSource] = DEFAULT_TAGS
    """Tag name -> rule, evaluated in this order (a rule may test tags set above it)."""
    stages: dict[str, RuleSource] = DEFAULT_STAGES
    """interested / purchased / loyal -> rule; a member's stage is the furthest whose rule holds."""
    recompute_every: str = "1h"
    keep_messages: str = "90d"
    """How long message times are kept (activity windows cannot reach further back)."""
    purchase_token_env: str = "QUNBOT_PURCHASE_TOKEN"
    """The environment variable holding the bearer token of POST /api/purchases (unset: no endpoint)."""
    tag_words: list[str] = ["打标签"]
    untag_words: list[str] = ["删标签"]
    show_words: list[str] = ["查标签"]

    @field_validator("stages")
    @classmethod
    def _stages(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if name not in STAGES[1:]:
                raise ValueError(f"unknown stage {name!r}: stages are {', '.join(STAGES[1:])} (aware is everyone)")
        return value

    @field_validator("recompute_every", "keep_messages")
    @classmethod
    def _duration(cls, value: str) -> str:
        if parse_duration(value) <= timedelta(0):
            raise ValueError(f"{value!r} must be a positive duration such as 1h or 90d")
        return value

    @cached_property
    def tag_rules(self) -> tuple[Rule, ...]:
        return tuple(compile_rule(name, source) for name, source in self.tags.items())

    @cached_property
    def stage_rules(self) -> tuple[Rule, ...]:
        return tuple(compile_rule(name, self.stages[name]) for name in STAGES[1:] if name in self.stages)

    @property
    def interval(self) -> timedelta:
        return parse_duration(self.recompute_every)

    @property
    def retention(self) -> timedelta:
        return parse_duration(self.keep_messages)

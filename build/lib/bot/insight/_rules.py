"""Tag and stage rules: one expression per tag, e.g. `active_days(7) >= 3`, over a member's facts.

Expressions are jinja2 expressions compiled in the sandbox: operators write them in `qunbot.toml`,
and they can compare numbers, test tags (`'active' in tags`) and call the window functions below,
but cannot reach Python internals. Unknown names are errors when the config is loaded.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jinja2.meta
from jinja2 import StrictUndefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

STAGES = ("aware", "interested", "purchased", "loyal")
"""The AIPL funnel in order; every member in a room is at least aware."""

FACTS = {
    "active_days": "active_days(n): days with at least one message in the last n days",
    "messages": "messages(n): messages in the last n days",
    "signin_days": "signin_days(n): sign-in days in the last n days (points plugin)",
    "quiet_days": "whole days since the member last spoke (else joined, else since the bot first saw the room speak)",
    "days_in_room": "whole days since the member joined (0 if the bot does not know)",
    "invited": "members they invited into this room",
    "invited_stayed": "members they invited who are still in the room",
    "points": "points balance in this room (points plugin)",
    "signin_streak": "current sign-in streak (points plugin)",
    "quiz_answers": "quiz answers given in this room",
    "quiz_correct": "correct quiz answers",
    "lottery_entries": "lottery draws entered in this room",
    "lottery_wins": "lottery draws won",
    "purchases": "purchases reported for this member (this room or no room given)",
    "spent": "purchase total in yuan",
    "tags": "the member's tags so far: manual ones and the rules above this one",
    "is_admin": "true for room admins",
}

_ENV = ImmutableSandboxedEnvironment(undefined=StrictUndefined)


@dataclass(frozen=True)
class Rule:
    name: str
    source: str
    check: Callable[..., Any]


def compile_rule(name: str, source: str) -> Rule:
    """Compile one expression; ValueError (for the config error) names the rule (if named) and the problem."""
    label = f"rule {name!r}: " if name else ""
    try:
        parsed = _ENV.parse("{{ " + source + " }}")
        unknown = sorted(jinja2.meta.find_undeclared_variables(parsed) - set(FACTS))
        check = _ENV.compile_expression(source, undefined_to_none=False)
    except jinja2.TemplateSyntaxError as err:
        raise ValueError(f"{label}{err.message} in {source!r}") from None
    if unknown:
        raise ValueError(f"{label}unknown name(s) {', '.join(unknown)} in {source!r}; "
                         f"known: {', '.join(FACTS)}")
    return Rule(name, source, check)


def evaluate(rule: Rule, facts: Mapping[str, Any]) -> bool:
    try:
        return bool(rule.check(**facts))
    except Exception as err:  # a rule that fails for one member must not stop the others
        raise RuleError(f"rule {rule.name!r} ({rule.source}) failed: {err}") from err


class RuleError(Exception):
    """A rule expression failed at evaluation time (a type error such as comparing text to a number)."""

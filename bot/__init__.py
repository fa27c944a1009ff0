"""qunbot: run WeChat community groups by SOP, with plugins for the rituals that keep them alive.

The public plugin API is re-exported here; modules starting with `_` are private.
"""

from bot._config import ConfigError, ProjectConfig
from bot._context import Context, MemberInfo, MembershipInfo, Merge, RoomInfo
from bot._db import Prepared, UTCDateTime, dialect_insert
from bot._durations import parse_duration
from bot._events import (
    ActionInvoked,
    DirectMessage,
    Event,
    MemberRef,
    MemberRenamed,
    MembersJoined,
    MembersLeft,
    Outgoing,
    RoomMessage,
    RoomTopicChanged,
    TimerFired,
)
from bot._i18n import explain_validation
from bot._migrations import Migration
from bot._models import OutboxMessage
from bot._plugin import Matcher, Plugin
from bot._rules import (
    EVERYONE,
    OPERATOR,
    ROOM_ADMIN,
    Permission,
    Rule,
    in_room,
    is_direct_message,
    is_room_message,
    to_me,
)
from bot._templates import Rendered, TemplateError
from bot._unique import insert_unique
from bot._watched import WatchedFile
from bot._yaml import YamlDoc, YamlError, load_yaml, pydantic_error_to_yaml_error
from bot.adapters._base import Capabilities, RoomQuota

__version__ = "0.1.0"

__all__ = [
    "EVERYONE",
    "OPERATOR",
    "ROOM_ADMIN",
    "ActionInvoked",
    "Capabilities",
    "ConfigError",
    "Context",
    "DirectMessage",
    "Event",
    "Matcher",
    "MemberInfo",
    "MemberRef",
    "MemberRenamed",
    "MembersJoined",
    "MembersLeft",
    "MembershipInfo",
    "Merge",
    "Migration",
    "OutboxMessage",
    "Outgoing",
    "Permission",
    "Plugin",
    "Prepared",
    "ProjectConfig",
    "Rendered",
    "RoomInfo",
    "RoomMessage",
    "RoomQuota",
    "RoomTopicChanged",
    "Rule",
    "TemplateError",
    "TimerFired",
    "UTCDateTime",
    "WatchedFile",
    "YamlDoc",
    "YamlError",
    "dialect_insert",
    "explain_validation",
    "in_room",
    "insert_unique",
    "is_direct_message",
    "is_room_message",
    "load_yaml",
    "parse_duration",
    "pydantic_error_to_yaml_error",
    "to_me",
]

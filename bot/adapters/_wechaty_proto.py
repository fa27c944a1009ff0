"""Wire messages python-wechaty's protobuf (wechaty-grpc 0.20) encodes in the 0.x layout only.

wechaty-grpc 1.x (`proto/wechaty/puppet/room.proto`) moved the topic to set from field 2 (a
`google.protobuf.StringValue`, now deprecated and ignored by 1.x services) to field 3
(`optional string topic = 3`). A 1.x service that finds no field 3 treats the request as a
topic *read*. This request carries both fields, so either line sets the topic. Imported only
with the Wechaty extra installed (it needs betterproto).
"""

from dataclasses import dataclass
from typing import Optional  # betterproto 1.2 reads the hints: it knows Optional[...], not `X | None`

import betterproto


@dataclass(eq=False, repr=False)
class RoomTopicSet(betterproto.Message):
    """`RoomTopicRequest` readable by 0.x (field 2) and 1.x (field 3) services."""

    id: str = betterproto.string_field(1)
    topic_0x: Optional[str] = betterproto.message_field(2, wraps=betterproto.TYPE_STRING)  # noqa: UP045
    topic: str = betterproto.string_field(3, group="_topic")  # proto3 `optional`


@dataclass(eq=False, repr=False)
class RoomTopicAnswer(betterproto.Message):
    """`RoomTopicResponse` of either line: 0.x answers in field 1 (StringValue), 1.x in field 2."""

    topic_0x: Optional[str] = betterproto.message_field(1, wraps=betterproto.TYPE_STRING)  # noqa: UP045
    topic: str = betterproto.string_field(2)

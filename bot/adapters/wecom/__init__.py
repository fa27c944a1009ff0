"""WeCom (企业微信) customer groups through the official API: `adapter = "wecom"` (docs/wecom.md)."""

from bot.adapters.wecom._adapter import WELCOME_ACTION, WecomAdapter
from bot.adapters.wecom._client import WecomApiError, WecomClient, WecomRateLimited
from bot.adapters.wecom._crypto import CallbackRefused, MsgCrypt, signature
from bot.adapters.wecom._models import WecomMedia, WecomTask, WecomTaskRoom, WecomWelcome

__all__ = ["WELCOME_ACTION", "CallbackRefused", "MsgCrypt", "WecomAdapter", "WecomApiError", "WecomClient",
           "WecomMedia", "WecomRateLimited", "WecomTask", "WecomTaskRoom", "WecomWelcome", "signature"]

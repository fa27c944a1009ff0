"""Member insight: per-member facts, tags from rules and by hand, AIPL lifecycle stages, purchases.

The `insight` plugin (plugins/insight) turns it on: importing this package attaches the insight
engine to every bot that has the plugin enabled. docs/dashboard.md describes the rules and the JSON
of the purchase endpoint.
"""

from bot._simulation import register_component
from bot.insight._engine import InsightEngine, make_engine
from bot.insight._models import InsightMessage, InsightPurchase, InsightStage, InsightTag
from bot.insight._rules import FACTS, STAGES
from bot.insight._service import InsightService, Purchase
from bot.insight._settings import InsightConfig

register_component(make_engine)

__all__ = [
    "FACTS",
    "STAGES",
    "InsightConfig",
    "InsightEngine",
    "InsightMessage",
    "InsightPurchase",
    "InsightService",
    "InsightStage",
    "InsightTag",
    "Purchase",
]

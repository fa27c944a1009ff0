"""The SOP engine: scheduled posts, sequences and onboarding from `sop/*.yaml` (see docs/sop.md).

Importing this package attaches the engine to every bot `bot._simulation` builds and adds the SOP
file checks to `qunbot check`; `bot._simulation` and `bot._checks` import it, so nobody else has to.
"""

from bot._checks import register_check
from bot._simulation import register_component
from bot.sop._check import check_project
from bot.sop._engine import SopEngine, make_engine

register_component(make_engine)
register_check(check_project)

__all__ = ["SopEngine", "check_project"]

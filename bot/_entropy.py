"""Secret random values for plugins: from the OS when the bot runs, repeatable when it is simulated.

`qunbot run` builds its runtime without a seed, so every value comes from `secrets`. `qunbot simulate`
and `BotHarness` pass the scenario's `seed`, and then a value is HMAC(seed, label): two runs of one
scenario draw the same lottery winners, as the simulate contract's `seed` promises.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets


def secret_hex(seed: int | None, label: str) -> str:
    """32 bytes as 64 lowercase hex characters; `label` tells apart the values of one simulated run."""
    if seed is None:
        return secrets.token_hex(32)
    return hmac.new(f"qunbot-simulation-seed:{seed}".encode(), label.encode(), hashlib.sha256).hexdigest()

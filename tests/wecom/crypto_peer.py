"""Run Tencent's `@wecom/crypto` (tests/wecom_peer, pinned, `npm ci`) to sign and encrypt WeCom callbacks."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

PEER = Path(__file__).resolve().parent.parent / "wecom_peer"


def unavailable() -> str | None:
    if shutil.which("node") is None:
        return "node is not installed (the WeCom peer runs Tencent's @wecom/crypto)"
    if not (PEER / "node_modules" / "@wecom" / "crypto").is_dir():
        return "run `npm ci` in tests/wecom_peer (scripts/test does)"
    return None


def peer(**request: Any) -> dict[str, str]:
    done = subprocess.run(["node", str(PEER / "peer.mjs"), json.dumps(request)], capture_output=True, text=True,
                          timeout=30, check=True)
    return json.loads(done.stdout)

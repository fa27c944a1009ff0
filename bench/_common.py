"""What every benchmark shares: resident memory, percentiles, the machine, and the result shape."""

from __future__ import annotations

import os
import platform
import resource
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def rss_mb() -> float:
    """Resident memory of this process now, in MB (Linux /proc; elsewhere the peak, from getrusage)."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation; 0.0 for no values."""
    if not values:
        return 0.0
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=1000, method="inclusive")[max(0, min(998, round(q * 10) - 1))]


def machine() -> dict[str, Any]:
    cpu = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                    if line.startswith("model name")), cpu)
    memory_gb = None
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        total = next(line for line in meminfo.read_text().splitlines() if line.startswith("MemTotal:"))
        memory_gb = round(int(total.split()[1]) / 1024 / 1024, 1)
    return {"cpu": cpu, "nproc": os.cpu_count(), "memory_gb": memory_gb, "python": platform.python_version(),
            "platform": platform.platform()}


@dataclass
class Target:
    """One figure held against its target: `value <= limit` (at_most) or `value >= limit`."""

    name: str
    value: float
    limit: float
    at_most: bool = False

    @property
    def met(self) -> bool:
        return self.value <= self.limit if self.at_most else self.value >= self.limit

    def as_json(self) -> dict[str, Any]:
        target = ("<= " if self.at_most else ">= ") + f"{self.limit:g}"
        return {"name": self.name, "value": self.value, "target": target, "met": self.met}


@dataclass
class Result:
    """A benchmark's figures (name -> number), the targets they are held to, and notes."""

    name: str
    figures: dict[str, float | int | str] = field(default_factory=dict)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "figures": self.figures, "targets": [t.as_json() for t in self.targets],
                "notes": self.notes}


def rounded(value: float, digits: int = 3) -> float:
    """Figures in the JSON to a sensible precision (three significant digits past the integer part)."""
    return round(value, digits) if abs(value) < 100 else round(value, 1)

"""Balancing accounts over the `qunbot run` processes that share one database.

Each process keeps a row in `core_cluster_node` alive with its heartbeat, as it keeps its leases.
From the live rows and the live leases every process works out the same fair shares: with N accounts
and M processes, N // M each, and the N % M processes that hold the most now (then by name) one more,
so a settled fleet stays put. A process under its share claims free accounts (`bot/_lease.py` `claim`);
one over it hands accounts over cleanly (stop sending, finish the send in flight, release the lease).
A draining process counts for nothing: its share is 0 and the others' grow.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, or_, select
from sqlalchemy.engine import Engine

from bot._db import dialect_insert
from bot._lease import db_now
from bot._models import AccountLease, ClusterNode

_NODES = ClusterNode.__table__  # type: ignore[attr-defined]
_LEASES = AccountLease.__table__  # type: ignore[attr-defined]
FORGET_AFTER = timedelta(days=1)
"""Rows of processes gone this long are deleted (they only matter while they may come back)."""


def fair_shares(accounts: int, held: Mapping[str, int]) -> dict[str, int]:
    """How many accounts each live process should hold: floor or ceil of accounts / processes.

    `held` maps each live (not draining) process to how many accounts it holds now; the extra accounts
    go to those holding the most (ties by name), so no account moves when the fleet is already balanced.
    """
    if not held:
        return {}
    base, extra = divmod(accounts, len(held))
    ranked = sorted(held, key=lambda node: (-held[node], node))
    return {node: base + (1 if rank < extra else 0) for rank, node in enumerate(ranked)}


@dataclass(frozen=True, slots=True)
class FleetView:
    """What one heartbeat saw: the live processes and who holds which account."""

    nodes: dict[str, int]
    """Live, not draining processes -> accounts they hold (by live leases)."""
    holders: dict[str, str]
    """Account -> the process holding its live lease."""
    draining: bool
    """This process's row says it should drain (set by SIGUSR1 here or by `qunbot run --drain`)."""


class Membership:
    """This process's row in `core_cluster_node`, and the fleet as seen at each heartbeat."""

    def __init__(self, engine: Engine, node: str, ttl: float) -> None:
        self._engine = engine
        self.node = node
        self.ttl = ttl
        self._insert = dialect_insert(engine.dialect.name)

    def beat(self, *, draining: bool = False) -> FleetView:
        """Say this process is alive (and whether it drains), and read the fleet, in one transaction."""
        with self._engine.begin() as conn:
            now = db_now(conn)
            stmt = self._insert(_NODES).values(node=self.node, started_at=now, heartbeat_at=now,
                                               expires_at=now + timedelta(seconds=self.ttl), draining=draining)
            stmt = stmt.on_conflict_do_update(
                index_elements=["node"],
                set_={"heartbeat_at": stmt.excluded.heartbeat_at, "expires_at": stmt.excluded.expires_at,
                      "draining": or_(stmt.excluded.draining, _NODES.c.draining)},
            ).returning(_NODES.c.draining)
            drain = bool(conn.execute(stmt).scalar_one())
            live = conn.execute(select(_NODES.c.node).where(_NODES.c.expires_at > now,
                                                            _NODES.c.draining.is_(False))).scalars().all()
            holders = {account: owner for account, owner in conn.execute(
                select(_LEASES.c.account, _LEASES.c.owner).where(_LEASES.c.expires_at > now))}
            conn.execute(delete(_NODES).where(_NODES.c.expires_at < now - FORGET_AFTER))
        counts = Counter(holders.values())
        return FleetView(nodes={node: counts[node] for node in live}, holders=holders, draining=drain)

    def leave(self) -> None:
        """A clean stop: the others stop counting this process at once."""
        with self._engine.begin() as conn:
            conn.execute(delete(_NODES).where(_NODES.c.node == self.node))


def request_drain(engine: Engine, prefix: str) -> list[str]:
    """Mark the live processes whose name starts with `prefix` as draining; returns their names."""
    with engine.begin() as conn:
        now = db_now(conn)
        names = conn.execute(select(_NODES.c.node).where(_NODES.c.expires_at > now,
                                                         _NODES.c.node.startswith(prefix, autoescape=True))
                             ).scalars().all()
        if names:
            conn.execute(_NODES.update().where(_NODES.c.node.in_(names)).values(draining=True))
    return list(names)


def live_nodes(engine: Engine) -> list[str]:
    """Names of the processes whose rows are live (draining or not)."""
    with engine.begin() as conn:
        now = db_now(conn)
        return list(conn.execute(select(_NODES.c.node).where(_NODES.c.expires_at > now)).scalars())

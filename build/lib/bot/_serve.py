"""What `qunbot run` runs: one runtime whose accounts are held through database leases.

Every configured account has a lease (`bot/_lease.py`). Each heartbeat this process renews the
leases it holds and tries to take the others; an account runs here only while its lease does.
A second process on the same database is thus a hot standby: it takes an account over within
`lease_ttl + heartbeat` of the holder dying, at once if the holder stopped cleanly. Scheduled work
is safe to evaluate in every process: SOP posts and plugin timers are claimed by unique keys in the
database, and only the lease holder's outbox sends.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from contextlib import suppress

from sqlalchemy.exc import SQLAlchemyError

from bot._lease import Lease
from bot._runtime import Runtime
from bot._simulation import Component, build_components

log = logging.getLogger("qunbot.serve")


def default_owner(node: str = "") -> str:
    """A name unique to this process: the configured node (or host name), the pid and a random suffix."""
    return f"{node or socket.gethostname()}/{os.getpid()}/{uuid.uuid4().hex[:6]}"


class Node:
    """Runs a runtime's accounts as long as this process holds their leases."""

    def __init__(self, runtime: Runtime, *, owner: str | None = None) -> None:
        self.rt = runtime
        self.settings = runtime.config.cluster
        self.owner = owner or default_owner(self.settings.node)
        self.leases = {account: Lease(runtime.engine, account, self.owner, self.settings.lease_ttl)
                       for account in runtime.adapters}
        self.components: list[Component] = []

    async def start(self) -> None:
        """Migrate, take the accounts nobody holds, then start the components (the SOP engine)."""
        await self.rt.start(accounts=())
        for account, lease in self.leases.items():
            self.rt.outbox(account).lease = lease
        await self.heartbeat()
        self.components = build_components(self.rt)
        for component in self.components:
            await component.start(self.rt)
        log.info("node %s: holding %s; lease %.0fs, heartbeat %.0fs", self.owner,
                 ", ".join(sorted(self.rt.active)) or "no account yet (standby)", self.settings.lease_ttl,
                 self.settings.heartbeat)

    async def serve(self, stop: asyncio.Event) -> None:
        """Renew and take over leases every heartbeat until `stop` is set."""
        while not stop.is_set():
            with suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.settings.heartbeat)
            if not stop.is_set():
                await self.heartbeat()

    async def stop(self) -> None:
        """Stop the components and accounts, and release the leases so a standby takes over at once."""
        for component in reversed(self.components):
            await component.stop()
        self.components = []
        for account, lease in self.leases.items():
            if account in self.rt.active:
                await self.rt.stop_account(account)
            try:
                lease.release()
            except SQLAlchemyError as err:
                log.warning("account %s: could not release the lease (%s); it expires on its own", account,
                            str(err).splitlines()[0])
        await self.rt.stop()

    async def heartbeat(self) -> None:
        """Renew what this process holds, then take over what nobody holds (renewing again after each start)."""
        await self._renew_all()
        for account, lease in self.leases.items():
            if lease.epoch is not None:
                continue
            try:
                taken = lease.acquire()
            except SQLAlchemyError as err:
                log.warning("account %s: cannot reach the lease table (%s)", account, str(err).splitlines()[0])
                continue
            if taken:
                await self._take(account, lease)
                await self._renew_all()  # starting an account takes time; keep the others' leases fresh

    async def _renew_all(self) -> None:
        for account, lease in self.leases.items():
            if lease.epoch is None:
                continue
            try:
                await self._renew(account, lease)
            except SQLAlchemyError as err:
                log.warning("account %s: lease renewal failed (%s); sends pause in %.0fs unless the database "
                            "answers", account, str(err).splitlines()[0], lease.remaining)

    async def _renew(self, account: str, lease: Lease) -> None:
        was_held = lease.held()
        if lease.renew():
            if not was_held:
                log.warning("account %s: lease renewed after a lapse; sending again", account)
            self.rt.outbox(account).wake()
            return
        holder = lease.holder()
        log.error("account %s: lease lost to %s; stopping the account here", account, holder[0] if holder else "?")
        await self.rt.stop_account(account)

    async def _take(self, account: str, lease: Lease) -> None:
        log.info("account %s: lease taken (epoch %d); starting it", account, lease.epoch)
        try:
            await self.rt.start_account(account)
        except BaseException as err:
            await self.rt.stop_account(account)
            with suppress(SQLAlchemyError):
                lease.release()
            if not isinstance(err, SQLAlchemyError):
                raise
            log.error("account %s: could not start (%s); lease released, trying again next heartbeat", account,
                      str(err).splitlines()[0])
            return
        log.info("account %s: running on %s", account, self.owner)

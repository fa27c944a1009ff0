"""What `qunbot run` runs: one runtime whose accounts are held through database leases.

Every configured account has a lease (`bot/_lease.py`). Each heartbeat this process renews the
leases it holds, says it is alive (`bot/_balance.py`), works out its fair share of the accounts and
claims free ones up to it or hands extra ones over; an account runs here only while its lease does.
Processes on one database thus share the accounts evenly and take over a dead one's within
`lease_ttl + heartbeat`, at once if it stopped cleanly. Scheduled work is safe to evaluate in every
process: SOP posts and plugin timers are claimed by unique keys in the database, and only the lease
holder's outbox sends.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from contextlib import suppress

from sqlalchemy.exc import SQLAlchemyError

from bot._balance import FleetView, Membership, fair_shares
from bot._lease import Lease, claim
from bot._runtime import Runtime
from bot._simulation import Component, build_components

log = logging.getLogger("qunbot.serve")
CLAIM_BATCH = 5
"""Accounts claimed at a time: the fleet is looked at again between batches, so a process alone at
its start does not take everything while the others are still starting."""


def default_owner(node: str = "") -> str:
    """A name unique to this process: the configured node (or host name), the pid and a random suffix."""
    return f"{node or socket.gethostname()}/{os.getpid()}/{uuid.uuid4().hex[:6]}"


class Node:
    """Runs its fair share of a runtime's accounts, as long as this process holds their leases."""

    def __init__(self, runtime: Runtime, *, owner: str | None = None) -> None:
        self.rt = runtime
        self.settings = runtime.config.cluster
        self.owner = owner or default_owner(self.settings.node)
        self.leases = {account: Lease(runtime.engine, account, self.owner, self.settings.lease_ttl)
                       for account in runtime.adapters}
        self.membership = Membership(runtime.engine, self.owner, self.settings.lease_ttl)
        self.components: list[Component] = []
        self.draining = False
        """Set by `drain()` (SIGUSR1) or the database (`qunbot run --drain`): hand every account over, then stop."""
        self.drained = False
        self._drained_since: float | None = None
        self._nudge = asyncio.Event()

    async def start(self) -> None:
        """Migrate, take a share of the accounts nobody holds, then start the components (the SOP engine)."""
        await self.rt.start(accounts=())
        for account, lease in self.leases.items():
            self.rt.outbox(account).lease = lease
        await self.heartbeat()
        self.components = build_components(self.rt)
        for component in self.components:
            await component.start(self.rt)
        log.info("node %s: holding %s; lease %gs, heartbeat %gs", self.owner,
                 ", ".join(sorted(self.rt.active)) or "no account yet (standby)", self.settings.lease_ttl,
                 self.settings.heartbeat)

    def drain(self) -> None:
        """Hand every account to the other processes, then leave `serve` (call from a signal handler)."""
        if not self.draining:
            log.warning("node %s: draining: handing every account to the other processes, then stopping", self.owner)
        self.draining = True
        self._nudge.set()

    async def serve(self, stop: asyncio.Event) -> None:
        """Heartbeat every `heartbeat` seconds until `stop` is set or a drain is done."""
        while not stop.is_set() and not self.drained:
            stopping = asyncio.ensure_future(stop.wait())
            nudged = asyncio.ensure_future(self._nudge.wait())
            await asyncio.wait((stopping, nudged), timeout=self.settings.heartbeat,
                               return_when=asyncio.FIRST_COMPLETED)
            for waiter in (stopping, nudged):
                waiter.cancel()
            self._nudge.clear()
            if not stop.is_set():
                await self.heartbeat()

    async def stop(self) -> None:
        """Leave the fleet, stop the components and accounts, release the leases so others take over at once."""
        try:
            self.membership.leave()
        except SQLAlchemyError as err:
            log.warning("node %s: could not leave the fleet (%s); the others notice when its row expires",
                        self.owner, str(err).splitlines()[0])
        for component in reversed(self.components):
            await component.stop()
        self.components = []
        for account, lease in self.leases.items():
            if account in self.rt.active:
                await self.rt.stop_account(account)
            if lease.epoch is not None and not self.rt.outbox(account).idle:
                log.warning("account %s: a send is still in flight at the stop; the lease is left to expire, and "
                            "the next holder asks WeChat whether it went out", account)
                continue
            try:
                lease.release()
            except SQLAlchemyError as err:
                log.warning("account %s: could not release the lease (%s); it expires on its own", account,
                            str(err).splitlines()[0])
        await self.rt.stop()

    async def heartbeat(self) -> None:
        """Renew what this process holds, then claim up to its fair share or hand the excess over."""
        await self._renew_all()
        view = self._beat()
        if view is None:
            return
        for account in [a for a, lease in self.leases.items() if lease.epoch is not None and a not in self.rt.active]:
            await self._hand_over(account)  # a hand-over that waited for a send in flight
        held = sorted(a for a, lease in self.leases.items() if lease.epoch is not None)
        share = self.share(view, len(held))
        if len(held) > share:
            for account in held[share:]:
                await self._hand_over(account)
                await self._renew_all(due_only=True)
        while view is not None and (wanted := self.share(view, self.holding) - self.holding) > 0:
            if not await self._claim(min(wanted, CLAIM_BATCH)):
                break
            view = self._beat()  # starting accounts takes time: others may have joined meanwhile
        if self.draining and view is not None:
            self._check_drained(view)

    @property
    def holding(self) -> int:
        return sum(lease.epoch is not None for lease in self.leases.values())

    def share(self, view: FleetView, holding: int) -> int:
        """This process's fair share, given the fleet it saw and what it holds now (0 while draining)."""
        if self.draining:
            return 0
        return fair_shares(len(self.leases), {**view.nodes, self.owner: holding})[self.owner]

    def _beat(self) -> FleetView | None:
        try:
            view = self.membership.beat(draining=self.draining)
        except SQLAlchemyError as err:
            log.warning("node %s: cannot reach the fleet table (%s)", self.owner, str(err).splitlines()[0])
            return None
        if view.draining and not self.draining:
            self.drain()
        return view

    async def _claim(self, wanted: int) -> bool:
        """Claim a bounded batch of free accounts and start them; False if none was free or one failed to start."""
        free = [a for a, lease in self.leases.items() if lease.epoch is None]
        asked = time.monotonic()
        try:
            taken = claim(self.rt.engine, self.owner, free, limit=wanted, ttl=self.settings.lease_ttl)
        except SQLAlchemyError as err:
            log.warning("node %s: cannot claim accounts (%s)", self.owner, str(err).splitlines()[0])
            return False
        for account, epoch in sorted(taken.items()):
            self.leases[account].adopt(epoch, asked)
        started = 0
        for account in sorted(taken):
            started += await self._take(account, self.leases[account])
            await self._renew_all(due_only=True)  # starting an account takes time; keep the others' leases fresh
        return bool(taken) and started == len(taken)

    async def _hand_over(self, account: str) -> None:
        """Stop sending, let the send in flight finish and be recorded, then release the lease."""
        lease = self.leases[account]
        if account in self.rt.active:
            log.info("account %s: handing it over to another process (%s)", account,
                     "draining" if self.draining else "fair share")
            await self.rt.stop_account(account)
        if not self.rt.outbox(account).idle:
            log.warning("account %s: a send is still in flight; the lease is kept until it is recorded", account)
            return
        try:
            lease.release()
        except SQLAlchemyError as err:
            log.warning("account %s: could not release the lease (%s); it expires on its own", account,
                        str(err).splitlines()[0])
            return
        log.info("account %s: lease released", account)

    def _check_drained(self, view: FleetView) -> None:
        if any(lease.epoch is not None for lease in self.leases.values()):
            return
        others = {holder for holder in view.holders.values() if holder != self.owner}
        waiting = [a for a in self.leases if view.holders.get(a, self.owner) == self.owner]
        now = time.monotonic()
        if self._drained_since is None:
            self._drained_since = now
        if not waiting or not view.nodes or now - self._drained_since > self.settings.lease_ttl:
            if waiting:
                log.error("node %s: drained, but %d account(s) have no other process to run them (%s)", self.owner,
                          len(waiting), ", ".join(waiting[:5]))
            else:
                log.warning("node %s: drained: every account runs on another process (%d)", self.owner, len(others))
            self.drained = True

    async def _renew_all(self, *, due_only: bool = False) -> None:
        """Renew every lease held (`due_only`: those past half their time, between account starts)."""
        for account, lease in self.leases.items():
            if lease.epoch is None or (due_only and lease.remaining > lease.ttl / 2):
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

    async def _take(self, account: str, lease: Lease) -> bool:
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
            return False
        log.info("account %s: running on %s", account, self.owner)
        return True

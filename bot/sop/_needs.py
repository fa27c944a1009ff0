"""What each SOP step needs from the account that serves its rooms, and which rooms (of which account) a file reaches.

A file step needs to send files, a plugin action step what that plugin needs, a post needs either to post at
will or to go out as a task the owner confirms, a join step that @-mentions needs mentions, a `to: dm` step
direct messages. `qunbot check`, `sop check` and the engine at start say which steps an account cannot serve.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from fnmatch import fnmatchcase

from bot._config import ProjectConfig
from bot._coverage import KnownRoom, lack_sentence
from bot._plugin import Plugin
from bot.adapters._base import Capabilities
from bot.sop._load import LoadedSop
from bot.sop._schema import Step, Targets

POST = ("reply_at_will", "posts_need_confirmation")


def step_needs(step: Step, plugins: Mapping[str, Plugin]) -> list[tuple[str, ...]]:
    """The step's needs, each a tuple of alternatives."""
    if step.action is not None:
        plugin = plugins.get(step.action.plugin)
        return list(plugin.needs) if plugin is not None else []
    needs: list[tuple[str, ...]] = []
    if step.to == "dm":
        needs.append(("direct_messages",))
    else:
        needs.append(POST)
        if step.after_join is not None and step.mention:
            needs.append(("mention",))
    if step.file is not None:
        needs.append(("send_files",))
    return needs


def matches(targets: Targets, room: KnownRoom) -> bool:
    return (room.id in targets.rooms or any(tag in room.tags for tag in targets.tags)
            or (room.topic is not None and any(fnmatchcase(room.topic, p) for p in targets.topics)))


def accounts_reached(targets: Targets, config: ProjectConfig, rooms: Sequence[KnownRoom]) -> set[str]:
    """Accounts serving the rooms a file targets, as far as known (one account serves everything)."""
    if len(config.accounts) == 1:
        return {config.accounts[0].id}
    return {room.account for room in rooms if room.account is not None and matches(targets, room)}


def step_problems(files: Iterable[LoadedSop], config: ProjectConfig, plugins: Mapping[str, Plugin],
                  capabilities: Mapping[str, Capabilities], rooms: Sequence[KnownRoom]) -> list[str]:
    """`file:line: 账号 x：… 步骤 y 需要…` for every enabled step an account serving its rooms cannot do."""
    problems = []
    for loaded in files:
        if not loaded.sop.enabled:
            continue
        reached = sorted(accounts_reached(loaded.sop.targets, config, rooms))
        for step in loaded.sop.steps:
            for account in reached:
                caps = capabilities.get(account)
                if caps is None:
                    continue
                for need in step_needs(step, plugins):
                    if any(caps.has(name) for name in need):
                        continue
                    what = f"步骤 {step.id}"
                    if step.action is not None:
                        what += f"（启动插件动作 {step.action.plugin}.{step.action.name}）"
                    problems.append(f"{loaded.doc.file}:{loaded.line(step)}: 账号 {account}："
                                    f"{lack_sentence(caps, need, [what])}")
    return problems

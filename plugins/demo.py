"""demo: the smallest useful plugin — a menu of what the bot can do, and a reply when @-mentioned.

Read this file first if you are writing a plugin: metadata, a typed config,
handlers declared on the plugin object, words from templates.
"""

from pydantic import BaseModel

from bot import Context, Plugin


class DemoConfig(BaseModel):
    menu_words: list[str] = ["菜单", "帮助", "help"]


plugin = Plugin(
    name="demo",
    description="菜单与 @ 应答：告诉群友机器人能做什么",
    usage="发送「菜单」查看功能；@机器人 打个招呼",
    config=DemoConfig,
    needs={"read_room_messages"},
)

menu = plugin.on_fullmatch("菜单", "帮助", "help", words_from="menu_words", priority=5)


@menu.handle
async def show_menu(ctx: Context) -> None:
    plugins = [p for p in ctx.plugins if p.usage]
    await ctx.reply(template="demo/menu.j2", plugins=plugins)


ping = plugin.on_fullmatch("ping", priority=5)


@ping.handle
async def pong(ctx: Context) -> None:
    await ctx.reply("pong", mention=False)


fallback = plugin.on_mention(priority=99)


@fallback.handle
async def greet(ctx: Context) -> None:
    await ctx.reply(template="demo/mentioned.j2")

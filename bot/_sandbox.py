"""A render budget: a template that loops, calls or builds text without end fails instead of hanging the bot.

Rendering is synchronous Python, so no asyncio timeout can interrupt it. Instead the sandbox counts, in
pure Python, everything a template can repeat: loop iterations, calls (functions, methods, macros, filters),
operators, and the items and characters it reads and builds. Every operation that could build something
big in one step (`'a' * 10**8`, `'%9999999s' | format`, `center`, `join`, `**` on integers...) is checked
*before* it runs. A wall-clock limit, checked at every counted step, is the last line.

What is not counted, and why it stays bounded: work inside one builtin on data already within budget
(comparing, searching or slicing strings and lists; `sort`, `unique`, `groupby`, `dictsort` on at most
`loop_iterations` items; the regular expressions in `urlize`, `wordcount`, `striptags`, `title`), tests
(`is divisibleby`...) and attribute reads. Each such step is bounded by the sizes above, and the clock is
checked at the next counted step. A single builtin call cannot be interrupted, so the clock cannot stop
one slow step, only the next one; `{% include %}`/macro recursion ends in Python's RecursionError.
"""

from __future__ import annotations

import contextvars
import re
import string
import sys
import time
from collections.abc import Iterable, Iterator, Sized
from dataclasses import dataclass
from functools import wraps
from typing import Any

from jinja2 import nodes, pass_context
from jinja2.compiler import CodeGenerator, Frame
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import generate_lorem_ipsum

_MAX_INT_BITS = 4096  # integers past ~1200 digits are never chat text, and `10**10**9` would never finish
_MAX_INDENT = 64
_MAX_NESTING_FRAMES = 500  # Python frames a render may add to the stack it starts on (about 100 levels)


@dataclass(frozen=True)
class RenderBudget:
    """Limits for one render (`[limits]` in qunbot.toml)."""

    loop_iterations: int = 100_000
    """Loop iterations, calls and collection items read or built, together."""
    output_chars: int = 200_000
    """Characters written, and characters read or built by filters, methods and operators, together."""
    seconds: float = 5.0
    """Wall-clock limit: the backstop for work the counters cannot see."""


def render_budget(limits: Any) -> RenderBudget:
    """The budget `[limits]` in qunbot.toml sets (a `LimitSettings`)."""
    return RenderBudget(limits.template_loop_iterations, limits.template_output_chars, limits.template_seconds)


class BudgetExceeded(Exception):
    """A render went over its budget; the message is for the admin who wrote the template."""


class _Meter:
    __slots__ = ("budget", "chars", "deadline", "max_frames", "steps")

    def __init__(self, budget: RenderBudget) -> None:
        self.budget, self.steps, self.chars = budget, 0, 0
        self.deadline = time.monotonic() + budget.seconds
        self.max_frames = _stack_depth() + _MAX_NESTING_FRAMES

    def nest(self) -> None:
        """Refuse to go deeper: a template that includes itself or a macro that calls itself.

        Python's RecursionError is not enough: a library may raise the recursion limit for the whole
        process (py_ecc, which the lottery's beacon check imports, sets it to 100000), and then deep
        template recursion overflows the C stack and kills the bot."""
        try:
            sys._getframe(self.max_frames)
        except ValueError:
            return
        raise BudgetExceeded("模板嵌套太深：include、import、extends 或宏调用自己太多层")

    def step(self, count: int = 1) -> None:
        self.steps += count
        if self.steps > self.budget.loop_iterations:
            raise BudgetExceeded(f"模板的循环和运算太多：超过 {self.budget.loop_iterations} 次"
                                 "（可在 qunbot.toml 的 [limits] template_loop_iterations 调整）")
        if time.monotonic() > self.deadline:
            raise BudgetExceeded(f"模板渲染超过 {self.budget.seconds:g} 秒"
                                 "（可在 qunbot.toml 的 [limits] template_seconds 调整）")

    def text(self, count: int) -> None:
        """Charge `count` characters read, built or written; refuse before building if it would not fit."""
        self.chars += max(count, 0)
        if self.chars > self.budget.output_chars:
            raise BudgetExceeded(f"模板生成的文字太多：超过 {self.budget.output_chars} 字"
                                 "（可在 qunbot.toml 的 [limits] template_output_chars 调整）")
        self.step()

    def size(self, value: Any) -> None:
        """Charge what a value costs to read or keep: characters for text, items for collections."""
        if isinstance(value, str):
            self.text(len(value))
        elif isinstance(value, Sized) and not isinstance(value, range):
            self.step(len(value))

    def take(self, items: Iterable[Any]) -> list[Any]:
        """Materialise an iterable one counted item at a time."""
        taken = []
        for item in items:
            self.step()
            taken.append(item)
        return taken

    def counted(self, items: Iterable[Any]) -> Iterator[Any]:
        for item in items:
            self.step()
            yield item


def _stack_depth() -> int:
    depth, frame = 0, sys._getframe(1)
    while frame is not None:
        depth, frame = depth + 1, frame.f_back
    return depth


_meter: contextvars.ContextVar[_Meter | None] = contextvars.ContextVar("qunbot_render_meter", default=None)


def metering(budget: RenderBudget) -> contextvars.Token[_Meter | None]:
    """Start counting a render; pass the token to `stop_metering` when it ends."""
    return _meter.set(_Meter(budget))


def stop_metering(token: contextvars.Token[_Meter | None]) -> None:
    _meter.reset(token)


def _current() -> _Meter:
    # Outside a render (jinja folding constants at compile time) the default budget still applies.
    return _meter.get() or _Meter(RenderBudget())


# --- size estimates made before an operation runs ------------------------------------------------

_PRINTF = re.compile(r"%(?:\([^)]{0,200}\))?[-#0 +]{0,10}(\*|\d{1,30})?(?:\.(\*|\d{1,30}))?[hlL]?([a-zA-Z%])")
_NUMBER = re.compile(r"\d{1,30}")


def _printf_size(template: str, args: Any) -> int:
    size = len(template)
    for match in _PRINTF.finditer(template):
        if "*" in (match.group(1), match.group(2)):
            raise BudgetExceeded("格式里不能用 * 指定宽度，请直接写数字")
        size += int(match.group(1) or 0) + int(match.group(2) or 0)
    values = args.values() if isinstance(args, dict) else args if isinstance(args, tuple) else (args,)
    return size + sum(len(str(v)) for v in values)


def _format_size(template: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> int:
    size = len(template)
    try:
        fields = list(string.Formatter().parse(template))
    except ValueError:
        return size  # str.format will refuse it itself
    for _, _, spec, _ in fields:
        if spec and "{" in spec:
            raise BudgetExceeded("格式说明里不能再套 {}，请直接写数字")
        size += sum(int(n) for n in _NUMBER.findall(spec or ""))
    return size + sum(len(str(v)) for v in (*args, *kwargs.values()) if isinstance(v, str | int | float))


def _replace_size(text: str, old: str, new: str, count: int = -1) -> int:
    found = len(text) + 1 if old == "" else text.count(old)
    if count is not None and count >= 0:
        found = min(found, count)
    return len(text) + found * (len(new) - len(old))


def _joined(meter: _Meter, items: Iterable[Any], separator: str) -> list[Any]:
    """Materialise what a join will concatenate, counting the characters before they are joined."""
    taken = []
    for item in items:
        meter.step()
        meter.text(len(item) if isinstance(item, str) else 8)
        meter.text(len(separator))
        taken.append(item)
    return taken


def _check_int_product(left: int, right: int, power: bool = False) -> None:
    if power:
        bits = abs(right) * max(abs(left).bit_length() - 1, 0) if right > 0 else 0
    else:
        bits = abs(left).bit_length() + abs(right).bit_length()
    if bits > _MAX_INT_BITS:
        raise BudgetExceeded(f"数字太大：结果会超过 {_MAX_INT_BITS} 位二进制")


def _check_repeat(meter: _Meter, left: Any, right: Any) -> None:
    sequence, times = (left, right) if isinstance(right, int) else (right, left)
    if isinstance(sequence, bool) or not isinstance(times, int) or isinstance(times, bool):
        return
    if isinstance(sequence, int):
        _check_int_product(sequence, times)
    elif isinstance(sequence, str):
        meter.text(len(sequence) * max(times, 0))
    elif isinstance(sequence, list | tuple):
        meter.step(len(sequence) * max(times, 0))


def _check_str_method(meter: _Meter, owner: str, name: str, args: tuple[Any, ...],
                      kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """Refuse a str method that would build too much; return the arguments to call it with."""
    meter.text(len(owner))
    if name in ("center", "ljust", "rjust", "zfill"):
        width = args[0] if args else kwargs.get("width", 0)
        meter.text(width if isinstance(width, int) else 0)
    elif name == "expandtabs":
        size = args[0] if args else kwargs.get("tabsize", 8)
        meter.text(owner.count("\t") * size if isinstance(size, int) else 0)
    elif name == "replace" and len(args) >= 2 and isinstance(args[0], str) and isinstance(args[1], str):
        meter.text(_replace_size(owner, args[0], args[1], *(a for a in args[2:3] if isinstance(a, int))))
    elif name == "join" and args:
        return (_joined(meter, args[0], owner), *args[1:])
    elif name == "format":
        meter.text(_format_size(owner, args, kwargs))
    elif name == "format_map" and args and isinstance(args[0], dict):
        meter.text(_format_size(owner, (), args[0]))
    return args


# --- filters -----------------------------------------------------------------------------------

def _filter_precheck(meter: _Meter, name: str, value: Any, args: tuple[Any, ...],
                     kwargs: dict[str, Any]) -> tuple[Any, tuple[Any, ...]]:
    """Check one filter call before it runs; return the value and arguments to run it with."""
    if isinstance(value, Iterator):
        value = meter.take(value)
    else:
        meter.size(value)
    text = value if isinstance(value, str) else None
    if name == "format" and text is not None:
        meter.text(_printf_size(text, kwargs or args))
    elif name == "center" and text is not None:
        width = args[0] if args else kwargs.get("width", 80)
        meter.text(width if isinstance(width, int) else 0)
    elif name == "indent" and text is not None:
        width = args[0] if args else kwargs.get("width", 4)
        pad = len(width) if isinstance(width, str) else width if isinstance(width, int) else 0
        meter.text((text.count("\n") + 1) * pad)
    elif name == "wordwrap" and text is not None:
        width = args[0] if args else kwargs.get("width", 79)
        wrap = args[2] if len(args) > 2 else kwargs.get("wrapstring") or "\n"
        if isinstance(width, int) and width > 0 and isinstance(wrap, str):
            meter.text((len(text) // width + 1) * len(wrap))
    elif name == "replace" and text is not None and len(args) >= 2:
        meter.text(_replace_size(text, str(args[0]), str(args[1]), *(a for a in args[2:3] if isinstance(a, int))))
    elif name == "join":
        separator = args[0] if args else kwargs.get("d", "")
        value = _joined(meter, value, separator if isinstance(separator, str) else "")
    elif name == "batch" and (len(args) > 1 or "fill_with" in kwargs):
        size = args[0] if args else kwargs.get("linecount", 0)
        meter.step(size if isinstance(size, int) else 0)
    elif name == "slice":
        slices = args[0] if args else kwargs.get("slices", 0)
        meter.step(slices if isinstance(slices, int) else 0)
    elif name == "tojson":
        indent = args[0] if args else kwargs.get("indent")
        if isinstance(indent, int) and indent > _MAX_INDENT:
            raise BudgetExceeded(f"tojson 的缩进太大（最多 {_MAX_INDENT}）")
    return value, args


def _budgeted_filter(name: str, func: Any) -> Any:
    passes = getattr(func, "jinja_pass_arg", None)

    @wraps(func)
    def run(*args: Any, **kwargs: Any) -> Any:
        meter = _current()
        meter.step()
        lead = 1 if passes is not None else 0
        if len(args) > lead:
            value, rest = _filter_precheck(meter, name, args[lead], args[lead + 1:], kwargs)
            args = (*args[:lead], value, *rest)
        result = func(*args, **kwargs)
        meter.size(result)
        return result

    return run


def _budgeted_range(*args: int) -> range:
    numbers = range(*args)
    meter = _current()
    if len(numbers) > meter.budget.loop_iterations:
        raise BudgetExceeded(f"range 太大：{len(numbers)} 个数，超过 {meter.budget.loop_iterations}"
                             "（可在 qunbot.toml 的 [limits] template_loop_iterations 调整）")
    return numbers


def _budgeted_lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:
    _current().text(n * max * 12)  # a lorem word is under 12 characters with its space
    return generate_lorem_ipsum(n, html, min, max)


# --- the environment ------------------------------------------------------------------------------

class _CodeGenerator(CodeGenerator):
    """Charges the constant text of every output, and routes `~` through a checked concatenation."""

    def visit_Output(self, node: nodes.Output, frame: Frame) -> None:
        constant = sum(len(child.data) for child in node.nodes if isinstance(child, nodes.TemplateData))
        if constant:
            self.writeline(f"environment.qunbot_written({constant})")
        super().visit_Output(node, frame)

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.qunbot_concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


class BudgetedEnvironment(ImmutableSandboxedEnvironment):
    """jinja2's immutable sandbox, plus the render budget."""

    code_generator_class = _CodeGenerator
    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, **options: Any) -> None:
        super().__init__(finalize=self._written, **options)
        self.globals["range"] = _budgeted_range
        self.globals["lipsum"] = _budgeted_lipsum
        self.filters = _BudgetedFilters(self.filters)

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        for loop in tree.find_all(nodes.For):
            loop.iter = nodes.Filter(loop.iter, "qunbot_loop", [], [], None, None, lineno=loop.lineno)
        return tree

    @staticmethod
    def _written(value: Any) -> Any:
        _current().text(len(value) if isinstance(value, str) else len(str(value)))
        return value

    @staticmethod
    def qunbot_written(count: int) -> None:
        _current().text(count)

    @staticmethod
    def qunbot_concat(parts: tuple[Any, ...]) -> str:
        meter = _current()
        texts = [part if isinstance(part, str) else str(part) for part in parts]
        meter.text(sum(map(len, texts)))
        return "".join(texts)

    def _load_template(self, *args: Any, **kwargs: Any) -> Any:
        _current().nest()  # include, import and extends all load through here, once per level
        return super()._load_template(*args, **kwargs)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        meter = _current()
        meter.step()
        meter.nest()
        method = getattr(__obj, "__wrapped__", __obj)  # jinja wraps str.format to sandbox it
        owner = getattr(method, "__self__", None)
        if isinstance(owner, str):
            args = _check_str_method(meter, owner, getattr(method, "__name__", ""), args, kwargs)
        elif isinstance(owner, Sized):
            meter.size(owner)
        for value in (*args, *kwargs.values()):
            meter.size(value)
        result = super().call(__context, __obj, *args, **kwargs)
        meter.size(result)
        return result

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        meter = _current()
        meter.step()
        if operator == "*":
            _check_repeat(meter, left, right)
        elif operator == "**" and isinstance(left, int) and isinstance(right, int):
            _check_int_product(left, right, power=True)
        elif operator == "+" and isinstance(left, str) and isinstance(right, str):
            meter.text(len(left) + len(right))
        elif operator == "+" and isinstance(left, list | tuple) and isinstance(right, list | tuple):
            meter.step(len(left) + len(right))
        elif operator == "%" and isinstance(left, str):
            meter.text(_printf_size(left, right))
        return super().call_binop(context, operator, left, right)


@pass_context
def _loop(context: Any, items: Iterable[Any]) -> Iterator[Any]:
    """Wraps every `{% for %}` iterable (added by the parser): each iteration is counted."""
    return _current().counted(items)


class _BudgetedFilters(dict[str, Any]):
    """The filter table: every filter, built in or added later, is wrapped on the way in."""

    def __init__(self, filters: dict[str, Any]) -> None:
        super().__init__()
        self.update(filters)
        self["qunbot_loop"] = _loop

    def __setitem__(self, name: str, func: Any) -> None:
        super().__setitem__(name, func if name == "qunbot_loop" else _budgeted_filter(name, func))

    def update(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        for name, func in dict(*args, **kwargs).items():
            self[name] = func


# --- what `check` can see without rendering ---------------------------------------------------------

def static_overrun(tree: nodes.Template, budget: RenderBudget) -> tuple[int, str] | None:
    """The first place a template is over budget whatever its data: nested loops over constant ranges,
    or constant text repeated past the output limit. (line, message), or None."""
    return _overrun(tree, 1, budget)


def _overrun(node: nodes.Node, times: int, budget: RenderBudget) -> tuple[int, str] | None:
    for child in node.iter_child_nodes():
        inner = times
        if isinstance(child, nodes.For):
            source = child.iter.node if isinstance(child.iter, nodes.Filter) and child.iter.name == "qunbot_loop" \
                else child.iter
            inner = times * (_constant_length(source) or 1)
            if inner > budget.loop_iterations:
                return child.lineno, (f"模板的循环和运算太多：嵌套循环共 {inner} 次，超过 {budget.loop_iterations} 次"
                                      "（可在 qunbot.toml 的 [limits] template_loop_iterations 调整）")
        elif isinstance(child, nodes.Mul):
            size = _constant_repeat(child)
            if size is not None and size * times > budget.output_chars:
                return child.lineno, (f"模板生成的文字太多：超过 {budget.output_chars} 字"
                                      "（可在 qunbot.toml 的 [limits] template_output_chars 调整）")
        found = _overrun(child, inner, budget)
        if found is not None:
            return found
    return None


def _constant_int(node: nodes.Node) -> int | None:
    if isinstance(node, nodes.Const) and isinstance(node.value, int) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, nodes.Pow | nodes.Mul):
        left, right = _constant_int(node.left), _constant_int(node.right)
        if left is None or right is None:
            return None
        try:
            _check_int_product(left, right, power=isinstance(node, nodes.Pow))
        except BudgetExceeded:
            return None
        return left ** right if isinstance(node, nodes.Pow) else left * right
    return None


def _constant_length(node: nodes.Node) -> int | None:
    """How many items a constant `range(...)` or literal list yields."""
    if isinstance(node, nodes.Call) and isinstance(node.node, nodes.Name) and node.node.name == "range" \
            and not node.kwargs and node.dyn_args is None and node.dyn_kwargs is None:
        args = [_constant_int(arg) for arg in node.args]
        if args and all(arg is not None for arg in args) and len(args) <= 3 and args[2:3] != [0]:
            return len(range(*args))  # type: ignore[arg-type]
    if isinstance(node, nodes.List | nodes.Tuple):
        return len(node.items)
    return None


def _constant_repeat(node: nodes.Mul) -> int | None:
    """Characters a constant `'text' * n` would build."""
    for text, count in ((node.left, node.right), (node.right, node.left)):
        if isinstance(text, nodes.Const) and isinstance(text.value, str):
            number = _constant_int(count)
            if number is not None:
                return len(text.value) * number
    return None

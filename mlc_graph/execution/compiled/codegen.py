"""Python source per selection plan: the field loop unrolled, the way graphql-jit does it for JavaScript.

For each SelectionPlan one function `build(runner, source) -> dict` is generated once per plan: the
response keys are literals, plain attributes are read with `source.name`, resolvers are called with their
calling convention spelled out, builtin scalars pass through after an exact type check, and child objects
are built by their own generated function. Everything the generated code refers to (resolver functions,
serializers, argument dicts, child builders) is bound in the function's namespace, never interpolated into
the source: only identifiers, literals from `repr()` and attribute names that are Python identifiers are.
The semantics are runtime.Runner's: anything but plain success raises Bail.
"""

from __future__ import annotations

from typing import Any

from mlc_graph.execution.compiled.plan import (
    ASYNC,
    ATTR,
    LEAF,
    LIST,
    OBJECT,
    SYNC,
    TYPENAME,
    Completer,
    FieldPlan,
    SelectionPlan,
)
from mlc_graph.execution.compiled.runtime import Bail

_PASS = {
    "str": "({v} if type({v}) is str else {s}({v}))",
    "int": "({v} if type({v}) is int and -2147483648 <= {v} <= 2147483647 else {s}({v}))",
    "bool": "({v} if type({v}) is bool else {s}({v}))",
    "float": "({v} if type({v}) is float and -_inf < {v} < _inf else {s}({v}))",
}


def _null_item() -> Any:
    raise Bail


class _Source:
    """One function's source lines and the names it binds."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.names: dict[str, Any] = {"Bail": Bail, "_inf": float("inf"), "_null_item": _null_item}

    def bind(self, prefix: str, value: Any) -> str:
        name = f"{prefix}{len(self.names)}"
        self.names[name] = value
        return name

    def emit(self, indent: int, line: str) -> None:
        self.lines.append("    " * indent + line)


def generate_all(root: SelectionPlan) -> None:
    """Generate the builder of every plan under `root`, children first."""
    for plan in _post_order(root):
        plan.build = _generate(plan)


def _post_order(plan: SelectionPlan) -> list[SelectionPlan]:
    found: list[SelectionPlan] = []

    def visit_completer(complete: Completer) -> None:
        if complete.plan is not None:
            visit(complete.plan)
        for child in complete.plans.values():
            visit(child)
        if complete.item is not None:
            visit_completer(complete.item)

    def visit(p: SelectionPlan) -> None:
        for f in p.fields:
            visit_completer(f.complete)
        found.append(p)

    visit(plan)
    return found


def _generate(plan: SelectionPlan) -> Any:
    src = _Source()
    src.emit(0, "def build(runner, source):")
    if plan.memoize:
        src.emit(1, f"memo = runner.memos[{plan.index}]")
        src.emit(1, "hit = memo.get(id(source))")
        src.emit(1, "if hit is not None:")
        src.emit(2, "return hit[1]")
    src.emit(1, "info = runner.info")
    if plan.is_type_of is not None:
        check = src.bind("is_type_of", plan.is_type_of)
        src.emit(1, f"if not {check}(source, info):")
        src.emit(2, "raise Bail")
    src.emit(1, "out = {}")
    if plan.memoize:
        src.emit(1, "memo[id(source)] = (source, out)  # keeps the source alive: its id stays unique")
    for field in plan.fields:
        _field(src, plan, field)
    src.emit(1, "return out")
    code = "\n".join(src.lines) + "\n"
    namespace = dict(src.names)
    exec(compile(code, f"<compiled plan {plan.type_name}#{plan.index}>", "exec"), namespace)  # noqa: S102
    build = namespace["build"]
    build.__source__ = code  # for debugging: print(plan.build.__source__)
    return build


def _call(src: _Source, field: FieldPlan) -> str:
    func = src.bind("resolver", field.func)
    if field.arg_slot >= 0:
        args = f"**runner.args[{field.arg_slot}]"
    elif field.args:
        args = "**" + src.bind("args", field.args)
    else:
        args = ""
    parts = [p for p in (field.convention, args) if p]
    return f"{func}({', '.join(parts)})"


def _field(src: _Source, plan: SelectionPlan, field: FieldPlan) -> None:
    key = repr(field.key)
    if field.kind == TYPENAME:
        src.emit(1, f"out[{key}] = {field.typename!r}")
        return
    if field.batch is not None:
        ref = src.bind("field", field)
        src.emit(1, f"out[{key}] = None")
        src.emit(1, f"pending = runner.batched.get({ref})")
        src.emit(1, "if pending is None:")
        src.emit(2, f"runner.batched[{ref}] = ([source], [(out, {key})])")
        src.emit(1, "else:")
        src.emit(2, "pending[0].append(source)")
        src.emit(2, f"pending[1].append((out, {key}))")
        return
    if field.kind == ASYNC:
        complete = src.bind("completer", field.complete)
        src.emit(1, f"out[{key}] = None  # holds the key's place until the coroutine returns")
        start = "runner.start_task" if plan.index == 0 else "runner.step_new"
        src.emit(1, f"{start}({_call(src, field)}, {complete}, out, {key})")
        return
    if field.kind == ATTR:
        if not field.attr.isidentifier():
            value = f"getattr(source, {field.attr!r})"
        else:
            value = f"source.{field.attr}"
    else:
        assert field.kind == SYNC
        value = _call(src, field)
    src.emit(1, f"v = {value}")
    _complete(src, field.complete, "v", f"out[{key}]", 1)


def _complete(src: _Source, complete: Completer, value: str, target: str, indent: int) -> None:
    """Emit code that stores the completed `value` into `target`."""
    if complete.nonnull:
        src.emit(indent, f"if {value} is None:")
        src.emit(indent + 1, "raise Bail")
        src.emit(indent, f"{target} = {_expression(src, complete, value)}")
        return
    src.emit(indent, f"if {value} is None:")
    src.emit(indent + 1, f"{target} = None")
    src.emit(indent, "else:")
    src.emit(indent + 1, f"{target} = {_expression(src, complete, value)}")


def _expression(src: _Source, complete: Completer, value: str) -> str:
    """An expression completing a value known not to be None."""
    if complete.kind == LEAF:
        serialize = src.bind("serialize", complete.serialize)
        template = _PASS.get(complete.passthrough)
        return template.format(v=value, s=serialize) if template else f"{serialize}({value})"
    if complete.kind == OBJECT:
        assert complete.plan is not None
        return f"{src.bind('build', complete.plan.build)}(runner, {value})"
    if complete.kind == LIST and complete.item is not None and complete.item.kind == OBJECT:
        item = complete.item
        assert item.plan is not None
        build = src.bind("build", item.plan.build)
        missing = "_null_item()" if item.nonnull else "None"
        check = src.bind("list_check", _list_check)
        return f"[{build}(runner, x) if x is not None else {missing} for x in {check}({value})]"
    # Other lists and abstract types: the runner's general completion.
    return f"runner.complete({src.bind('completer', complete)}, {value})"


def _list_check(value: Any) -> Any:
    if type(value) is not list and type(value) is not tuple:
        raise Bail  # graphql-core accepts any iterable; the rare others run there
    return value

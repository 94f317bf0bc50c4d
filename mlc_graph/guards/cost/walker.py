"""`actualQueryCost` walks compiled per priced plan: the result tree visited by straight-line code.

`report.actual_cost` interprets a plan: for every object of the answer it pops a (selection, object) pair,
loops over the selection's priced fields and pushes the children. On the teacher dashboard (about 2,000
objects) that interpretation was 7 % of the server's CPU (py-spy, issue 11). A plan is fixed once priced,
and a selection tree is as deep as the document (validation caps depth at 15), so it compiles to nested
`if`/`for` blocks with the keys and weights as constants: no stack, no tuples, no loop over fields.

The same plans may share subtrees (the planner memoises fragments), so the inlined code is as large as
the tree with every shared subtree written out: a plan whose expansion passes `MAX_NODES` priced fields,
or nests more lists than `MAX_LOOPS` (CPython allows 20 nested blocks), keeps the interpreted walk. So do
lists of lists below the first level, which no field of the schema returns.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mlc_graph.guards.cost.plan import Selection
from mlc_graph.guards.cost.report import actual_cost

Walker = Callable[[Any], int]

MAX_NODES = 400
MAX_LOOPS = 16


def _deep(selection: Selection, weight: int, items: list[Any]) -> int:
    """A list inside a list, priced as the interpreted walk prices it: every object at any depth."""
    total = 0
    while items:
        nested: list[Any] = []
        for item in items:
            if type(item) is dict:
                total += weight + actual_cost(selection, item)
            elif type(item) is list:
                nested.extend(item)
        items = nested
    return total


def _expanded(selection: Selection, memo: dict[int, int], limit: int) -> int:
    """Priced fields in the tree with shared subtrees written out (stops counting past `limit`)."""
    known = memo.get(id(selection))
    if known is not None:
        return known
    count = 0
    for _, _, child in selection.priced:
        count += 1 if child is None else 1 + _expanded(child, memo, limit)
        if count > limit:
            break
    memo[id(selection)] = count
    return count


def _loops(selection: Selection, memo: dict[int, int]) -> int:
    """The deepest nesting of list loops the compiled code would have."""
    known = memo.get(id(selection))
    if known is not None:
        return known
    memo[id(selection)] = deepest = max(
        (1 + _loops(child, memo) for _, _, child in selection.priced if child is not None), default=0
    )
    return deepest


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.children: list[Selection] = []
        self.names = 0

    def var(self) -> str:
        self.names += 1
        return f"v{self.names}"

    def emit(self, depth: int, text: str) -> None:
        self.lines.append("    " * depth + text)

    def selection(self, node: Selection, obj: str, depth: int) -> None:
        for key, weight, child in node.priced:
            value = self.var()
            self.emit(depth, f"{value} = {obj}.get({key!r})")
            if child is None:
                self.emit(depth, f"if {value} is not None:")
                self.emit(depth + 1, f"t += {weight}")
                continue
            self.emit(depth, f"if type({value}) is dict:")
            if weight:
                self.emit(depth + 1, f"t += {weight}")
            self.selection(child, value, depth + 1)
            self.emit(depth + 1, "pass")
            item = self.var()
            self.emit(depth, f"elif type({value}) is list:")
            self.emit(depth + 1, f"for {item} in {value}:")
            self.emit(depth + 2, f"if type({item}) is dict:")
            if weight:
                self.emit(depth + 3, f"t += {weight}")
            self.selection(child, item, depth + 3)
            self.emit(depth + 3, "pass")
            self.children.append(child)
            self.emit(depth + 2, f"elif type({item}) is list:")
            self.emit(depth + 3, f"t += _deep(C[{len(self.children) - 1}], {weight}, {item})")


def compile_walker(selection: Selection) -> Walker:
    """A function of an answer's `data` equal to `actual_cost(selection, data)`."""
    if _expanded(selection, {}, MAX_NODES) > MAX_NODES or _loops(selection, {}) > MAX_LOOPS:
        return lambda data: actual_cost(selection, data)
    writer = _Writer()
    writer.emit(0, "def walk(d):")
    writer.emit(1, "if type(d) is not dict:")
    writer.emit(2, "return 0")
    writer.emit(1, "t = 0")
    writer.selection(selection, "d", 1)
    writer.emit(1, "return t")
    namespace: dict[str, Any] = {"_deep": _deep, "C": writer.children}
    exec(compile("\n".join(writer.lines), "<cost walker>", "exec"), namespace)  # noqa: S102 - our own code
    walk: Walker = namespace["walk"]
    return walk

"""What a priced plan tells the client: actual cost of a result, per-field breakdown, the multiplying path."""

from __future__ import annotations

from typing import Any

from mlc_graph.guards.cost.plan import PlanField, Selection

BREAKDOWN_LIMIT = 200  # entries; the tree under a fragment-heavy query can be far larger than useful


def actual_cost(selection: Selection, data: Any) -> int:
    """The same prices applied to the values really returned (lists at their real length).

    Iterative over (selection, object) pairs and only over the fields that cost something (precomputed in
    `Selection.priced`): a full W1 answer is ~2,000 objects, walked after every request.
    """
    if not isinstance(data, dict):
        return 0
    total = 0
    stack: list[tuple[Selection, dict[str, Any]]] = [(selection, data)]
    pop, push = stack.pop, stack.append
    while stack:
        node, obj = pop()
        for key, weight, child in node.priced:
            value = obj.get(key)
            if value is None:
                continue
            if child is None:
                total += weight  # a scalar with a declared @cost
            elif type(value) is dict:
                total += weight
                push((child, value))
            elif type(value) is list:
                items = value
                while items:
                    nested: list[Any] = []
                    for item in items:
                        if type(item) is dict:
                            total += weight
                            push((child, item))
                        elif type(item) is list:
                            nested.extend(item)  # [[T]]: each item priced like one of a flat list
                    items = nested
    return total


def heaviest_path(selection: Selection) -> tuple[int, tuple[PlanField, ...]]:
    """The chain of fields whose list sizes multiply to the most, and that product."""
    memo: dict[int, tuple[int, tuple[PlanField, ...]]] = {}

    def walk(node: Selection) -> tuple[int, tuple[PlanField, ...]]:
        known = memo.get(id(node))
        if known is not None:
            return known
        best: tuple[int, tuple[PlanField, ...]] = (1, ())
        best_cost = -1
        for field in node.fields.values():
            if field.selection is None:
                continue
            factor, path = walk(field.selection)
            factor *= field.size
            if factor > best[0] or (factor == best[0] and field.cost > best_cost and factor > 1):
                best, best_cost = (factor, (field, *path)), field.cost
        memo[id(node)] = best
        return best

    factor, path = walk(selection)
    # End the path at the last field that multiplies; name a connection rather than its `edges`.
    last = max((i for i, field in enumerate(path) if field.size != 1), default=-1)
    path = path[: last + 1]
    if path and path[-1].sized_by_parent:
        path = path[:-1]
    return factor, path


def describe_path(path: tuple[PlanField, ...]) -> str:
    return ".".join(field.key for field in path)


def lowering_hint(path: tuple[PlanField, ...]) -> str:
    """What to change along the heaviest path: the slicing arguments its fields really have (connections
    take `first` only), or, when no field on it takes one, fewer of those fields."""
    arguments = sorted({name for field in path for name in field.slicing})
    if not arguments:
        return "select fewer of them or split the query"
    named = " or ".join(f"`{name}`" for name in arguments)
    return f"lower {named} along that path or split the query"


def breakdown(selection: Selection, limit: int = BREAKDOWN_LIMIT) -> list[dict[str, Any]]:
    """Per response path: how many values the field returns in total and the cost they add."""
    entries: list[dict[str, Any]] = []

    def walk(node: Selection, prefix: str, multiplier: int) -> None:
        for field in node.fields.values():
            if len(entries) >= limit:
                return
            if field.cost == 0 and field.selection is None:
                continue
            path = f"{prefix}.{field.key}" if prefix else field.key
            count = multiplier * field.size
            entries.append(
                {
                    "path": path,
                    "coordinate": field.coordinate,
                    "count": count,
                    "cost": multiplier * field.cost,
                }
            )
            if field.selection is not None:
                walk(field.selection, path, count)

    walk(selection, "", 1)
    return entries

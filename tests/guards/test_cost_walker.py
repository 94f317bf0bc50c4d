"""The compiled actual-cost walk equals the interpreted one (report.actual_cost) on any answer shape."""

from __future__ import annotations

from typing import Any

from graphql import parse
from hypothesis import given, settings
from hypothesis import strategies as st

from mlc_graph.guards.cost import walker
from mlc_graph.guards.cost.plan import Selection
from mlc_graph.guards.cost.report import actual_cost
from mlc_graph.guards.cost.walker import compile_walker
from tests.guards.test_cost_properties import ANALYZER, priced_queries


@st.composite
def answers(draw: st.DrawFn, selection: Selection, depth: int = 0) -> dict[str, Any]:
    """An answer object for `selection`: each priced key absent, null, a value, an object, a list of
    objects (with nulls, and now and then a list inside the list), or a value of the wrong kind."""
    obj: dict[str, Any] = {}
    for key, _, child in selection.priced:
        kind = draw(st.sampled_from(["absent", "null", "scalar", "object", "list", "nested"]))
        if kind == "absent":
            continue
        if kind == "null":
            obj[key] = None
        elif kind == "scalar" or child is None or depth > 4:
            obj[key] = draw(st.one_of(st.integers(), st.text(max_size=3), st.booleans()))
        elif kind == "object":
            obj[key] = draw(answers(child, depth + 1))
        else:
            items: list[Any] = draw(st.lists(st.one_of(st.none(), answers(child, depth + 1)), max_size=3))
            if kind == "nested":
                items.append([draw(answers(child, depth + 1)), [draw(answers(child, depth + 1))], None])
            obj[key] = items
    return obj


@settings(max_examples=300, deadline=None)
@given(query=priced_queries(), data=st.data())
def test_compiled_walk_equals_the_interpreted_one(query: tuple[str, list[str]], data: st.DataObject) -> None:
    text, slots = query
    analysis = ANALYZER.analyze(parse(text), dict.fromkeys(slots, 3))
    walk = compile_walker(analysis.plan)
    answer = data.draw(answers(analysis.plan))
    assert walk(answer) == actual_cost(analysis.plan, answer)
    assert analysis.actual(answer) == actual_cost(analysis.plan, answer)
    assert walk(None) == walk([]) == 0


DASHBOARD = """query($t: ID!) { teacher(id: $t) { students(first: 50) { edges { node { id
  assignments(first: 10) { edges { node { id game { title category { name } } } } } } } } } }"""


def test_a_plan_past_the_size_limit_keeps_the_interpreted_walk(monkeypatch: Any) -> None:
    analysis = ANALYZER.analyze(parse(DASHBOARD), {"t": "x"})
    node = {"node": {"id": "a", "game": {"title": "t", "category": {"name": "c"}}}}
    answer = {"teacher": {"students": {"edges": [{"node": {"assignments": {"edges": [node] * 4}}}] * 3}}}
    compiled = compile_walker(analysis.plan)
    assert compiled.__code__.co_filename == "<cost walker>"
    monkeypatch.setattr(walker, "MAX_NODES", 2)
    fallback = compile_walker(analysis.plan)
    assert fallback.__code__.co_filename != "<cost walker>"
    assert compiled(answer) == fallback(answer) == actual_cost(analysis.plan, answer) > 0

"""Running a plan: the success path only, with resolver coroutines driven without one Task each.

The runner completes synchronous fields depth-first as graphql-core does, and starts every resolver
coroutine on the spot. A coroutine that suspends on a future (a DataLoader load, a query) is parked on
that future; when the future is done the coroutine is resumed, like asyncio.Task would, but without a
Task, a call_soon and a gather per coroutine. All loads issued in one pass of the event loop still land
in one DataLoader batch, so statement counts are graphql-core's.

Anything that is not plainly successful (a resolver raises, a null in a non-null position, a leaf that
does not serialize, an object that fails is_type_of, an iterable that is not a list) raises `Bail`: the
caller then runs the operation on graphql-core, which produces the exact errors, paths, locations and
null propagation. Coroutines still parked at that moment are handed to ordinary Tasks to finish.

Constraint for resolvers: they run inside the request's task, so they must not use `asyncio.timeout()`
directly (its cancellation would target the request); `asyncio.wait_for` (own task) is fine.
"""

from __future__ import annotations

import asyncio
import types
from collections.abc import Coroutine, Generator
from typing import Any

from graphql.pyutils import is_awaitable

from mlc_graph.execution.compiled.compat import (
    FUTURE_BLOCKING,
    VariableValues,
    get_argument_values,
    resolve_info,
)
from mlc_graph.execution.compiled.plan import (
    ABSTRACT,
    LEAF,
    LIST,
    OBJECT,
    Completer,
    FieldPlan,
    Plan,
    SelectionPlan,
)

_BATCH = object()  # the key of an entry whose value is a batch resolver's list, one item per target


class Bail(Exception):  # noqa: N818 - control flow: leave the rest to graphql-core
    """The compiled run stops; graphql-core runs the operation instead."""


class ResolverInfo:
    """What our resolvers read from `info` (only `.context`; see tests/test_compiled_differential.py)."""

    __slots__ = ("context",)

    def __init__(self, context: Any) -> None:
        self.context = context


# (coroutine, or None for a root field's Task; how to complete; target container; key in it)
Entry = tuple[Coroutine[Any, Any, Any] | None, Completer, Any, Any]


@types.coroutine
def _resume(coro: Coroutine[Any, Any, Any], fut: Any) -> Generator[Any, None, Any]:
    """Wait for the future a parked coroutine awaits, then let the awaiting Task drive the coroutine."""
    if not fut.done():
        setattr(fut, FUTURE_BLOCKING, True)
        yield fut
    return (yield from coro)  # types.coroutine allows delegating to a coroutine


async def _finish(coro: Coroutine[Any, Any, Any], fut: Any) -> Any:
    return await _resume(coro, fut)


def _retrieve(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()  # the error is graphql-core's to report on the rerun; do not log it twice


class Runner:
    """One execution of a plan."""

    __slots__ = (
        "_flush_scheduled",
        "_loop",
        "_wake",
        "args",
        "batched",
        "context",
        "failure",
        "info",
        "memos",
        "orphans",
        "plan",
        "roots",
        "variables",
        "waiting",
    )

    def __init__(self, plan: Plan, context: Any, variables: VariableValues) -> None:
        self.plan = plan
        self.context = context
        self.variables = variables
        self.info = ResolverInfo(context)
        self.memos: list[dict[int, tuple[Any, dict[str, Any]]]] = [{} for _ in range(plan.plan_count)]
        self.waiting: dict[Any, list[Entry]] = {}
        self.orphans: list[tuple[Entry, Any]] = []
        self.roots: list[Entry] = []
        self.failure: BaseException | None = None
        self._flush_scheduled = False
        self._wake: asyncio.Future[None] | None = None
        self._loop = asyncio.get_running_loop()
        self.args: list[Any] = []
        self.batched: dict[FieldPlan, tuple[list[Any], list[tuple[dict[str, Any], str]]]] = {}

    def prepare_arguments(self) -> None:
        convert = self.plan.convert
        for slot in self.plan.argument_slots:
            raw = get_argument_values(slot.field_def, slot.node, self.variables)
            self.args.append(convert(slot.strawberry_field, raw))

    async def run(self) -> dict[str, Any]:
        self.prepare_arguments()
        data = self.complete_object(self.plan.root, None)
        if len(self.roots) == 1:
            # One root field (most operations): the request's own task awaits it, no Task of its own.
            coro, complete, out, key = self.roots.pop()
            self.deliver((None, complete, out, key), await coro)  # type: ignore[misc]
        else:
            self._start_root_tasks()
        self.flush()
        await self.drain()
        return data

    # -- completion ------------------------------------------------------------------------------

    def complete_object(self, plan: SelectionPlan, source: Any) -> dict[str, Any]:
        # The plan's generated builder (mlc_graph.execution.compiled.codegen) completes the object's fields.
        return plan.build(self, source)  # type: ignore[misc]

    def step_new(self, coro: Coroutine[Any, Any, Any], complete: Completer, out: Any, key: Any) -> None:
        self.step((coro, complete, out, key))

    def complete(self, complete: Completer, value: Any) -> Any:
        if value is None:
            if complete.nonnull:
                raise Bail
            return None
        kind = complete.kind
        if kind == LEAF:
            return complete.serialize(value)  # type: ignore[misc]
        if kind == OBJECT:
            return self.complete_object(complete.plan, value)  # type: ignore[arg-type]
        if kind == LIST:
            if type(value) is not list and type(value) is not tuple:
                raise Bail  # graphql-core accepts any iterable; the rare others run there
            item = complete.item
            assert item is not None
            if item.kind == OBJECT and not item.nonnull:
                plan = item.plan
                return [None if v is None else self.complete_object(plan, v) for v in value]  # type: ignore[arg-type]
            return [self.complete(item, v) for v in value]
        if kind == ABSTRACT:
            name = self.resolve_type(complete, value)
            plan = complete.plans.get(name) if isinstance(name, str) else None
            if plan is None:
                raise Bail
            return self.complete_object(plan, value)
        raise Bail  # pragma: no cover - the compiler only builds the kinds above

    def resolve_type(self, complete: Completer, value: Any) -> Any:
        """The runtime type through the schema's own resolve_type (Strawberry's, then is_type_of)."""
        abstract = complete.abstract
        assert abstract is not None and abstract.resolve_type is not None
        plan = self.plan
        info = resolve_info(
            field_name=complete.field_name,
            field_nodes=complete.field_nodes,
            return_type=abstract,
            parent_type=complete.parent_type,
            schema=plan.schema,
            fragments=plan.fragments,
            operation=plan.operation,
            variable_values=self.variables,
            context=self.context,
        )
        name = abstract.resolve_type(value, info, abstract)
        if is_awaitable(name):
            close = getattr(name, "close", None)
            if close is not None:
                close()  # an awaitable type resolver: not worth modelling, graphql-core handles it
            raise Bail
        return name

    # -- the coroutine driver --------------------------------------------------------------------

    def step(self, entry: Entry) -> None:
        """Run a coroutine to its next suspension; complete its value when it returns."""
        coro = entry[0]
        assert coro is not None
        try:
            yielded = coro.send(None)
        except StopIteration as stop:
            self.deliver(entry, stop.value)
            return
        if yielded is None:
            # A bare yield (asyncio.sleep(0)): resume on the next pass of the loop, as a Task would.
            yielded = self._loop.create_future()
            yielded.set_result(None)
        elif getattr(yielded, FUTURE_BLOCKING, None) is None:
            coro.close()
            raise Bail  # not an asyncio future: leave such resolvers to graphql-core
        else:
            setattr(yielded, FUTURE_BLOCKING, False)
        waiters = self.waiting.get(yielded)
        if waiters is None:
            self.waiting[yielded] = [entry]
            yielded.add_done_callback(self._on_done)
        else:
            waiters.append(entry)

    def deliver(self, entry: Entry, value: Any) -> None:
        complete = entry[1]
        if entry[3] is _BATCH:
            targets = entry[2]
            if type(value) is not list or len(value) != len(targets):
                raise Bail
            for (out, key), item in zip(targets, value, strict=True):
                self.deliver((None, complete, out, key), item)
            return
        if value is None:
            if complete.nonnull:
                raise Bail
            entry[2][entry[3]] = None
        elif complete.kind == LEAF:
            entry[2][entry[3]] = complete.serialize(value)  # type: ignore[misc]
        else:
            entry[2][entry[3]] = self.complete(complete, value)

    def flush(self) -> None:
        """Call the batch resolvers for every parent collected in this pass (and those their values add)."""
        while self.batched:
            batched, self.batched = self.batched, {}
            for field, (sources, targets) in batched.items():
                args = field.args if field.arg_slot < 0 else self.args[field.arg_slot]
                assert field.batch is not None
                self.step((field.batch(sources, self.info, args), field.complete, targets, _BATCH))

    def start_task(self, coro: Coroutine[Any, Any, Any], complete: Completer, out: Any, key: Any) -> None:
        """Root fields run in a task, as under graphql-core: they may talk to the database directly, and
        asyncpg's acquire timeout (asyncio.timeout) needs a current task. run() starts them."""
        self.roots.append((coro, complete, out, key))

    def _start_root_tasks(self) -> None:
        for coro, complete, out, key in self.roots:
            self._root_task(coro, complete, out, key)  # type: ignore[arg-type]
        self.roots.clear()

    def _root_task(self, coro: Coroutine[Any, Any, Any], complete: Completer, out: Any, key: Any) -> None:
        task = self._loop.create_task(coro)
        task.add_done_callback(_retrieve)
        self.waiting[task] = [(None, complete, out, key)]
        task.add_done_callback(self._on_done)

    def _on_done(self, fut: Any) -> None:
        # Resume right here, in the future's callback, as Task.__wakeup does: the coroutines then run in
        # the same pass of the event loop as they would under graphql-core, so DataLoader batches match.
        if self.failure is not None:
            self._maybe_wake()
            return
        entries = self.waiting.pop(fut, None)
        if entries is None:
            self._maybe_wake()
            return
        for position, entry in enumerate(entries):
            try:
                if entry[0] is None:
                    self.deliver(entry, fut.result())  # a root field's Task
                else:
                    self.step(entry)
            except BaseException as exc:  # handed to drain(), which re-raises it
                self.orphans.extend((e, fut) for e in entries[position + 1 :])
                self.failure = exc
                break
        self._maybe_wake()

    def _flush_later(self) -> None:
        self._flush_scheduled = False
        if self.failure is None and not self.waiting:
            try:
                self.flush()
            except BaseException as exc:  # handed to drain(), which re-raises it
                self.failure = exc
        self._maybe_wake()

    def _maybe_wake(self) -> None:
        """Flush the batch resolvers when nothing is parked any more; wake drain() when all is done.

        Batches wait for quiescence: every resolver of the request has returned or waits for a batch.
        Parents that arrive from different database answers (a student's scores and best scores, both
        asking for games) then share one batch whatever the order and timing of those answers, so the
        statement count does not depend on how fast the database replies.
        """
        if self.failure is None and self.batched and not self.waiting and not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush_later)  # after the other callbacks of this pass
        wake = self._wake
        if wake is None or wake.done():
            return
        if self.failure is not None or not (self.waiting or self._flush_scheduled or self.batched):
            wake.set_result(None)

    async def drain(self) -> None:
        """Wait until every parked coroutine has finished (or one failed)."""
        # A failure may have come while nobody waited (children of a sync root field failing while the
        # request's task awaited the single async root): then there is nothing to wait for.
        if self.failure is None and (self.waiting or self._flush_scheduled or self.batched):
            self._wake = self._loop.create_future()
            self._maybe_wake()  # schedules a pending flush when nothing is parked
            await self._wake
        if self.failure is not None:
            raise self.failure

    def abandon(self) -> list[asyncio.Task[Any]]:
        """Hand every parked coroutine to a Task of its own (after a bail or a cancellation)."""
        if self.failure is None:
            self.failure = Bail()  # a flush still scheduled must not start anything more
        self.batched.clear()
        for entry in self.roots:
            entry[0].close()  # type: ignore[union-attr]  # root coroutines never started
        self.roots.clear()
        tasks: list[asyncio.Task[Any]] = []
        parked = [(entry, fut) for fut, entries in self.waiting.items() for entry in entries]
        for fut in self.waiting:
            fut.remove_done_callback(self._on_done)
        self.waiting.clear()
        parked.extend(self.orphans)
        self.orphans.clear()
        for entry, fut in parked:
            if entry[0] is None:
                if not fut.done():
                    tasks.append(fut)
                continue
            task = asyncio.ensure_future(_finish(entry[0], fut))
            task.add_done_callback(_retrieve)
            tasks.append(task)
        return tasks

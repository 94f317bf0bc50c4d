"""The compiled executor: graphql-core's results at a fraction of its CPU (issue 7).

`CompiledExecutor.execute` takes what `graphql.execute` takes (a parsed, validated document) and returns
the same ExecutionResult. Per document and operation it compiles a plan once (compiled.plan);
per request it runs the plan (mlc_graph.execution.compiled.runtime). Three ways lead to graphql-core instead:

- the document uses something the compiler does not model (mutations, introspection, directives other
  than @skip/@include, Strawberry field extensions): decided once per document and remembered;
- the variables do not coerce: graphql-core reports that;
- the compiled run meets anything but plain success (an error, a null in a non-null field): it stops and
  graphql-core runs the operation on the request's context, so errors, paths, locations, their order and
  null propagation are graphql-core's own. The compiled run uses a copy of the context with its own
  DataLoaders and statement count (`_isolated`), so the rerun starts from the same empty caches a plain
  graphql-core run would and reports its statement count; an error costs the partial compiled run extra.

Results are byte-identical to graphql-core's (tests/test_compiled_differential.py and
tests/test_compiled_hypothesis.py run both and compare orjson bytes).
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from graphql import (
    DocumentNode,
    ExecutionResult,
    FragmentDefinitionNode,
    GraphQLSchema,
    OperationDefinitionNode,
    execute,
)

from mlc_graph.execution.compiled.codegen import generate_all
from mlc_graph.execution.compiled.compat import VariableValues, get_variable_values, strawberry_schema_of
from mlc_graph.execution.compiled.plan import BatchResolver, Compiler, Plan, Unsupported, skip_variables
from mlc_graph.execution.compiled.runtime import Bail, Runner
from mlc_graph.execution.compiled.variables import VariableCoercer
from mlc_graph.platform.db import QueryStats

log = logging.getLogger(__name__)

EXECUTORS = ("compiled", "graphql-core")


@dataclass(slots=True, eq=False)
class _DocumentPlans:
    document: DocumentNode  # held so that id(document) stays unique while the entry lives
    fragments: dict[str, FragmentDefinitionNode]
    skip_names: dict[int, tuple[str, ...]] = field(default_factory=dict)  # by id(operation)
    coercers: dict[int, VariableCoercer] = field(default_factory=dict)  # by id(operation)
    sightings: int = 0
    plans: dict[tuple[Any, ...], Plan | None] = field(default_factory=dict)


@dataclass(slots=True)
class ExecutorStats:
    """Counters for tests, the profile script and metrics."""

    compiled: int = 0
    fallbacks: int = 0
    bails: int = 0
    plans: int = 0
    unsupported: int = 0


class CompiledExecutor:
    """One per app (plans are cached here, bounded); safe to share between concurrent requests."""

    def __init__(
        self,
        schema: GraphQLSchema,
        *,
        hide_suggestions: bool = False,
        cache_size: int = 1024,
        compile_after: int = 1,
        batch_resolvers: Mapping[object, BatchResolver] | None = None,
    ) -> None:
        strawberry_schema = strawberry_schema_of(schema)
        if strawberry_schema is None:
            raise ValueError("the compiled executor needs a Strawberry schema's graphql-core schema")
        self.schema = schema
        self.strawberry_schema = strawberry_schema
        self.hide_suggestions = hide_suggestions
        self.cache_size = max(1, cache_size)
        # Compiling costs a few milliseconds: with compile_after=2 a document is compiled the second time
        # the same parsed document comes (the pipeline's document cache hands it out again), so one-off
        # and uncacheable documents never pay for it; until then graphql-core runs them.
        self.compile_after = max(1, compile_after)
        self.stats = ExecutorStats()
        # resolver function -> its batch form; the schema's owner hands them in (this package imports
        # no resolvers), and a resolver without one is called once per parent.
        self.batch_resolvers: Mapping[object, BatchResolver] = batch_resolvers or {}
        self._documents: OrderedDict[int, _DocumentPlans] = OrderedDict()

    @classmethod
    def for_schema(
        cls,
        schema: GraphQLSchema,
        *,
        hide_suggestions: bool = False,
        cache_size: int = 1024,
        compile_after: int = 2,
        batch_resolvers: Mapping[object, BatchResolver] | None = None,
    ) -> CompiledExecutor | None:
        """An executor for a Strawberry-built schema; None for any other (it then runs on graphql-core)."""
        if strawberry_schema_of(schema) is None:
            return None
        return cls(
            schema,
            hide_suggestions=hide_suggestions,
            cache_size=cache_size,
            compile_after=compile_after,
            batch_resolvers=batch_resolvers,
        )

    def _document_plans(self, document: DocumentNode) -> _DocumentPlans:
        entry = self._documents.get(id(document))
        if entry is not None and entry.document is document:
            self._documents.move_to_end(id(document))
            return entry
        fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
        entry = _DocumentPlans(document, fragments)
        self._documents[id(document)] = entry
        while len(self._documents) > self.cache_size:
            self._documents.popitem(last=False)
        return entry

    def plan_for(
        self,
        document: DocumentNode,
        operation: OperationDefinitionNode,
        variables: VariableValues,
        entry: _DocumentPlans | None = None,
    ) -> Plan | None:
        """The compiled plan for this operation and these @skip/@include values; None: use graphql-core."""
        if entry is None:
            entry = self._document_plans(document)
        if entry.sightings < self.compile_after:
            entry.sightings += 1
            if entry.sightings < self.compile_after:
                return None  # not seen often enough yet to be worth compiling
        names = entry.skip_names.get(id(operation))
        if names is None:
            names = entry.skip_names[id(operation)] = skip_variables(operation, entry.fragments)
        coerced = variables.coerced
        key = (id(operation), *(coerced.get(name) for name in names))
        if key in entry.plans:
            return entry.plans[key]
        plan: Plan | None
        try:
            skip_values = {name: coerced.get(name) for name in names}
            plan = Compiler(
                self.schema,
                self.strawberry_schema,
                operation,
                entry.fragments,
                skip_values,
                self.batch_resolvers,
            ).compile()
            generate_all(plan.root)
            self.stats.plans += 1
        except Unsupported as reason:
            log.debug("document left to graphql-core: %s", reason)
            self.stats.unsupported += 1
            plan = None
        except Exception:
            # A compiler bug must cost speed, not answers: this document runs on graphql-core.
            log.exception("compiling an operation failed; graphql-core runs it")
            self.stats.unsupported += 1
            plan = None
        entry.plans[key] = plan
        return plan

    async def execute(
        self,
        document: DocumentNode,
        operation: OperationDefinitionNode,
        context: Any,
        variables: Mapping[str, Any] | None,
        operation_name: str | None,
    ) -> ExecutionResult:
        entry = self._document_plans(document)
        coercer = entry.coercers.get(id(operation))
        if coercer is None:
            coercer = entry.coercers[id(operation)] = VariableCoercer(
                self.schema, operation.variable_definitions or ()
            )
        coerced: VariableValues | list[Any] | None = coercer.coerce(variables or {})
        if coerced is None:  # an error or a default: graphql-core's own coercion decides
            coerced = get_variable_values(
                self.schema,
                operation.variable_definitions or (),
                dict(variables or {}),
                50,
                self.hide_suggestions,
            )
        plan = None if isinstance(coerced, list) else self.plan_for(document, operation, coerced, entry)
        if plan is not None:
            assert isinstance(coerced, VariableValues)
            run_context = _isolated(context)
            runner = Runner(plan, run_context, coerced)
            try:
                data = await runner.run()
            except asyncio.CancelledError:
                for task in runner.abandon():
                    task.cancel()
                raise
            except Exception as exc:
                tasks = runner.abandon()
                if tasks:
                    await asyncio.gather(*tasks, return_exceptions=True)
                self.stats.bails += 1
                if not isinstance(exc, Bail):
                    log.debug("compiled run stopped by %r; graphql-core reruns", exc)
            else:
                self.stats.compiled += 1
                if run_context is not context:
                    _merge(context.stats, run_context.stats)
                return ExecutionResult(data, None)
        else:
            self.stats.fallbacks += 1
        return await self.execute_graphql_core(document, context, variables, operation_name)

    async def execute_graphql_core(
        self,
        document: DocumentNode,
        context: Any,
        variables: Mapping[str, Any] | None,
        operation_name: str | None,
    ) -> ExecutionResult:
        result = execute(
            self.schema,
            document,
            None,
            context,
            dict(variables) if variables is not None else None,
            operation_name,
            hide_suggestions=self.hide_suggestions,
        )
        if not isinstance(result, ExecutionResult):
            result = await result
        assert isinstance(result, ExecutionResult)
        return result


def _isolated(context: Any) -> Any:
    """The context the compiled run uses: the request's, with its own DataLoaders and statement count.

    If the run bails, graphql-core reruns on the request's untouched loaders, exactly as it would have
    run alone: same DataLoader timing (so the same order of errors) and the same statement count; what
    the abandoned run read is discarded with its loaders. On success its count joins the request's.
    A context without `isolated()` (another schema's) is used as it is.
    """
    isolated = getattr(context, "isolated", None)
    return isolated() if callable(isolated) else context


def _merge(into: QueryStats, stats: QueryStats) -> None:
    into.statements += stats.statements
    into.seconds += stats.seconds
    if into.keep_texts:
        into.texts.extend(stats.texts)


__all__ = ["EXECUTORS", "CompiledExecutor", "ExecutorStats"]

"""Run one operation: admit it through the stages (mlc_graph.execution.stages), execute, finish, answer.

The hot path skips Strawberry's view and `schema.execute`: documents are parsed and validated once per
distinct text (mlc_graph.execution.documents), queries run on compiled plans (byte-identical to
graphql-core, which runs everything else), and the result becomes an `Outcome` the transport sends.

Errors reach the client as they are when they are GraphQL's own (parse, validation, coercion) or an
`ApiError`; a `Refusal` from a stage becomes its body and status; a database that is down becomes
SERVICE_UNAVAILABLE; anything else is masked as INTERNAL_SERVER_ERROR with the request id and logged.
"""

from __future__ import annotations

import logging
from inspect import isawaitable
from typing import Any

from graphql import ExecutionResult, GraphQLSchema, execute

from mlc_graph.execution.compiled import CompiledExecutor
from mlc_graph.execution.documents import DocumentCache, Documents
from mlc_graph.execution.masking import client_error, unavailable, whole_response_unavailable
from mlc_graph.execution.request import OperationRequest, Outcome
from mlc_graph.execution.stages import Admission
from mlc_graph.platform.errors import DatabaseUnavailableError, Refusal, refusal_body, request_error

log = logging.getLogger(__name__)


class Pipeline:
    """One per app: the documents, the admission stages and the executors."""

    def __init__(
        self,
        schema: GraphQLSchema,
        documents: Documents,
        admission: Admission,
        *,
        compiled: CompiledExecutor | None,
        production: bool,
    ) -> None:
        self.schema = schema
        self.documents = documents
        self.admission = admission
        self.compiled = compiled
        self.production = production

    @property
    def cache(self) -> DocumentCache:
        return self.documents.cache

    async def admit(self, request: OperationRequest) -> None:
        """Every stage in order; raises `Refusal` (or a database error) when one refuses."""
        for stage in self.admission.stages:
            done = stage.run(request)
            if done is not None:
                await done

    async def complete(self, request: OperationRequest) -> Outcome:
        """Execute an admitted operation (unless a stage answered instead), run the finishers, answer."""
        if request.result is None:
            request.result = await self._execute(request)
        for finisher in self.admission.finishers:
            done = finisher.run(request)
            if done is not None:
                await done
        return self._outcome(request, request.result)

    async def run(self, request: OperationRequest) -> Outcome:
        """Admit and complete one operation; never raises (bugs are masked and logged)."""
        outcome = await self._guarded(request)
        if request.context.response_headers and (outcome.cache is None or not outcome.cache.public):
            # Headers a stage set for every response of the request (RateLimit-*), refused or not; they
            # are the caller's own, so an answer shared caches may serve to anyone goes without them.
            outcome.headers = {**request.context.response_headers, **outcome.headers}
        return outcome

    async def _guarded(self, request: OperationRequest) -> Outcome:
        try:
            await self.admit(request)
            return await self.complete(request)
        except Refusal as refused:
            return Outcome(
                refusal_body(refused.errors), refused.status, refused.legacy_status, refused.headers
            )
        except DatabaseUnavailableError:
            log.warning("database unavailable", extra={"request_id": request.context.request_id})
            return unavailable()
        except Exception:
            log.exception("request failed", extra={"request_id": request.context.request_id})
            error = request_error(
                "Internal server error", "INTERNAL_SERVER_ERROR", requestId=request.context.request_id
            )
            return Outcome(refusal_body(error), 500, 500)

    async def _execute(self, request: OperationRequest) -> ExecutionResult:
        document, operation = request.document, request.operation
        assert document is not None and operation is not None  # provided by the document stage
        name = request.params.operation_name
        if self.compiled is not None:
            result = await self.compiled.execute(
                document, operation, request.context, request.params.variables, name
            )
            if result is not None:
                return result
        executed = execute(
            self.schema,
            document,
            None,
            request.context,
            request.params.variables,
            name,
            hide_suggestions=self.production,
        )
        if isawaitable(executed):
            executed = await executed
        assert isinstance(executed, ExecutionResult)
        return executed

    def _outcome(self, request: OperationRequest, result: ExecutionResult) -> Outcome:
        context = request.context
        body: dict[str, Any] = {}
        status = 200
        legacy_status = 200
        headers: dict[str, str] = {}
        if result.errors:
            errors = [client_error(e, context.request_id) for e in result.errors]
            if result.data is None and all(e.path is None for e in result.errors):
                # Execution never started (variables failed to coerce): a request error, no `data` entry.
                # 400 for legacy clients too: the spec only recommends 200 there, and the product asks
                # for a 4xx on wrongly typed variables so clients and proxies see the bad request.
                status = legacy_status = 400
            else:
                body["data"] = result.data
                if whole_response_unavailable(result.data, errors):
                    status = legacy_status = 503
                    headers["Retry-After"] = "1"
            body["errors"] = errors
        else:
            body["data"] = result.data
        if context.settings.debug_sql_count:
            context.extensions["sqlStatements"] = context.stats.statements
        if context.extensions:
            body["extensions"] = context.extensions
        cache = request.answer_policy() if request.cache is not None else None  # POSTs skip the call
        return Outcome(body, status, legacy_status, headers, cache)

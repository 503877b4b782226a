"""One page of the Durable extension's instance query, for client functions.

The SDK's ``DurableOrchestrationClient.get_status_by`` cannot page: it sends no ``top`` and drops the
``x-ms-continuation-token`` response header, so it answers only the first page (100 instances by the
extension's default). :func:`query_instances` asks the same HTTP API the client uses (the binding's
``rpcBaseUrl``) for one page and hands back the token for the next::

    GET {rpcBaseUrl}instances/?instanceIdPrefix=..&runtimeStatus=..&top=..&showInput=false
        x-ms-continuation-token: <token of the previous page>
    200 [status, ...]      x-ms-continuation-token: <token of the next page, empty after the last>
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode

import azure.durable_functions as df

from backup.azure.transport import Transport
from backup.errors import BadRequestError, InvalidInputError, ServerError, UnexpectedResponseError

__all__ = ["CONTINUATION_HEADER", "query_instances"]

CONTINUATION_HEADER = "x-ms-continuation-token"


def _rpc_base_url(client: df.DurableOrchestrationClient) -> str:
    # The binding's rpcBaseUrl, which the SDK keeps (and uses for every call it makes) but does not
    # expose publicly.
    bindings = getattr(client, "_orchestration_bindings", None)
    base = getattr(bindings, "rpc_base_url", None)
    if not isinstance(base, str) or not base:
        raise ServerError(status=502, code=None, error_message="the durable client binding has no rpcBaseUrl")
    return base if base.endswith("/") else base + "/"


async def query_instances(
    client: df.DurableOrchestrationClient,
    *,
    prefix: str,
    top: int,
    statuses: Sequence[str] = (),
    continuation: str | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of the instances whose id starts with ``prefix`` (status JSON objects, without input),
    and the continuation token of the next page (``None`` after the last)."""
    query = {"instanceIdPrefix": prefix, "top": str(top), "showInput": "false"}
    if statuses:
        query["runtimeStatus"] = ",".join(statuses)
    url = f"{_rpc_base_url(client)}instances/?{urlencode(query)}"
    headers = {CONTINUATION_HEADER: continuation} if continuation else {}

    def get() -> tuple[list[dict[str, Any]], str | None]:
        transport = Transport(timeout=(5.0, 60.0))
        try:
            response = transport.request("GET", url, headers=headers, ok={200})
        except BadRequestError:
            if continuation:
                raise InvalidInputError("continuationToken", "was refused by the status store") from None
            raise
        finally:
            transport.session.close()
        try:
            page = response.json()
        except ValueError:
            page = None
        if not isinstance(page, list) or not all(isinstance(item, dict) for item in page):
            raise UnexpectedResponseError("body", "an instance query answers a list of statuses").for_request(
                method="GET", url=url, request_id=None
            )
        return page, response.headers.get(CONTINUATION_HEADER) or None

    return await asyncio.to_thread(get)

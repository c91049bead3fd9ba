"""The official Elasticsearch client, as `esper index` and its benchmark use it.

`JsonNode` is the transport's urllib3 node with one change: the client's compatibility media type
(`application/vnd.elasticsearch+json; compatible-with=N`, sent as Content-Type and Accept) is rewritten to
plain `application/json`. Elasticsearch accepts both; OpenSearch-compatible servers (osmem-server, which the
tests and benchmark use because no Elasticsearch runs here) answer the compatibility type with 406.
"""

from __future__ import annotations

from typing import Any

from elastic_transport import HttpHeaders, Urllib3HttpNode
from elastic_transport._node import NodeApiResponse
from elasticsearch import Elasticsearch

JSON = "application/json"
NDJSON = "application/x-ndjson"
COMPAT_MARKER = "compatible-with"


def plain_media_type(value: str) -> str:
    """`application/vnd.elasticsearch+x-ndjson; compatible-with=9` → application/x-ndjson, and so on."""
    if COMPAT_MARKER not in value:
        return value
    return NDJSON if "ndjson" in value else JSON


class JsonNode(Urllib3HttpNode):
    def perform_request(  # type: ignore[override]
        self,
        method: str,
        target: str,
        body: bytes | None = None,
        headers: HttpHeaders | None = None,
        **options: Any,
    ) -> NodeApiResponse:
        rewritten = HttpHeaders(headers or {})
        for name in ("content-type", "accept"):
            value = rewritten.get(name) or self._headers.get(name)
            if value:
                rewritten[name] = plain_media_type(value)
        return super().perform_request(method, target, body, rewritten, **options)


def es_client(url: str, timeout_s: float = 30.0) -> Elasticsearch:
    return Elasticsearch(url, node_class=JsonNode, request_timeout=timeout_s)

"""`esper index`: the requests the official client sends (a local listener; always runs), and indexing into
osmem-server, an in-memory OpenSearch-compatible server (no Elasticsearch exists here or in CI), with the
indexer killed at random points and resumed."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domains.nissa.elastic import es_client
from domains.nissa.indexer import DEFAULT_INDEX, Batch, Cursor, Indexer, IndexingError, prefetched
from eventstore import open_store
from leyline.datadir import DataDir
from tests.nissa.helpers import simulated_runs

ROOT = Path(__file__).resolve().parents[2]


class _Elastic(BaseHTTPRequestHandler):
    """Answers like Elasticsearch 9 just enough for the client, and records every request."""

    server: Any
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""

    def _answer(self, document: Any) -> None:
        body = json.dumps(document).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Elastic-Product", "Elasticsearch")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _record(self) -> tuple[str, bytes]:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.requests.append((self.command, self.path, dict(self.headers.items()), body))
        return self.path.split("?")[0], body

    def do_GET(self) -> None:
        self._record()
        self._answer(
            {"version": {"number": "9.0.0", "build_flavor": "default"}, "tagline": "You Know, for Search"}
        )

    def do_PUT(self) -> None:
        path, body = self._record()
        if path.endswith("/_bulk"):
            self._bulk(body)
        else:
            self._answer({"acknowledged": True})

    def do_POST(self) -> None:
        _, body = self._record()
        self._bulk(body)

    def _bulk(self, body: bytes) -> None:
        lines = [json.loads(line) for line in body.decode().splitlines() if line]
        refuse = self.server.refuse
        items = [
            {"index": {**action["index"], "status": 400, "error": {"type": "mapper_parsing_exception"}}}
            if action["index"]["_id"] in refuse
            else {"index": {**action["index"], "status": 201, "result": "created"}}
            for action in lines[::2]
        ]
        errors = any("error" in item["index"] for item in items)
        self._answer({"took": 1, "errors": errors, "items": items})


@contextmanager
def wire() -> Iterator[Any]:
    server: Any = ThreadingHTTPServer(("127.0.0.1", 0), _Elastic)
    server.requests = []
    server.refuse = set()  # event ids whose documents the server refuses
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        server.url = f"http://127.0.0.1:{server.server_address[1]}"
        yield server
    finally:
        server.shutdown()
        server.server_close()


def _header(headers: dict[str, str], name: str) -> str:
    return {key.lower(): value for key, value in headers.items()}.get(name, "")


def test_the_client_sends_a_template_and_bulk_requests_keyed_by_event_id(tmp_path: Path) -> None:
    simulated_runs(tmp_path, runs=1, epochs=5)
    store = open_store(DataDir(tmp_path).log)
    try:
        events = list(store.read_all())
        with wire() as server:
            es = es_client(server.url)
            indexer = Indexer(store, es, Cursor.load(DataDir(tmp_path).index, server.url, DEFAULT_INDEX))
            indexer.prepare()
            indexer.catch_up(batch=50)
            es.close()
            requests = server.requests
    finally:
        store.close()
    for _, _, headers, _ in requests:
        assert "compatible-with" not in _header(headers, "content-type") + _header(headers, "accept")
    template = next(r for r in requests if r[1].startswith(f"/_index_template/{DEFAULT_INDEX}"))
    body = json.loads(template[3])
    assert body["index_patterns"] == [f"{DEFAULT_INDEX}*"]
    properties = body["template"]["mappings"]["properties"]
    assert properties["event_id"] == {"type": "keyword"} and properties["global_position"] == {"type": "long"}
    assert properties["payload"] == {"type": "object", "enabled": False}
    bulks = [r for r in requests if r[1].split("?")[0].endswith("/_bulk")]
    assert len(bulks) == -(-len(events) // 50)
    lines = [json.loads(line) for r in bulks for line in r[3].decode().splitlines() if line]
    actions, documents = lines[::2], lines[1::2]
    assert [a["index"]["_id"] for a in actions] == [e.event_id for e in events]
    assert {a["index"]["_index"] for a in actions} == {DEFAULT_INDEX}
    assert [d["global_position"] for d in documents] == [e.global_position for e in events]
    assert documents[0]["event_type"] == events[0].event_type and documents[0]["payload"]
    assert all(_header(r[2], "content-type") == "application/x-ndjson" for r in bulks)
    assert (
        Cursor.load(DataDir(tmp_path).index, server.url, DEFAULT_INDEX).position == events[-1].global_position
    )


def test_refused_documents_stop_the_indexer_before_its_cursor_passes_them(tmp_path: Path) -> None:
    simulated_runs(tmp_path, runs=1, epochs=5)
    store = open_store(DataDir(tmp_path).log)
    try:
        events = list(store.read_all())
        with wire() as server:
            server.refuse = {events[25].event_id}
            es = es_client(server.url)
            cursor = Cursor.load(DataDir(tmp_path).index, server.url, DEFAULT_INDEX)
            with pytest.raises(IndexingError, match="1 document"):
                Indexer(store, es, cursor).catch_up(batch=10)
            es.close()
    finally:
        store.close()
    # batches 1 and 2 were acknowledged, the third (holding the 26th event) was not
    assert cursor.position == events[19].global_position


def _batch(number: int) -> Batch:
    return Batch(str(number).encode(), 1, number)


@given(st.integers(0, 30), st.integers(1, 4))
def test_prefetched_batches_come_in_order(count: int, depth: int) -> None:
    made = [_batch(n) for n in range(count)]
    assert list(prefetched(iter(made), depth)) == made


def test_prefetching_raises_the_producers_error_and_stops_with_its_consumer() -> None:
    def failing() -> Iterator[Batch]:
        yield _batch(1)
        raise OSError("the log went away")

    consumed = prefetched(failing())
    assert next(consumed) == _batch(1)
    with pytest.raises(OSError, match="went away"):
        next(consumed)
    produced: list[int] = []

    def endless() -> Iterator[Batch]:
        number = 0
        while True:
            produced.append(number)
            yield _batch(number)
            number += 1

    early = prefetched(endless(), depth=2)
    assert next(early) == _batch(0)
    early.close()  # the consumer stops: the producer thread ends (close joins it)
    stopped_at = len(produced)
    assert stopped_at <= 5 and len(produced) == stopped_at


def _esper_index(data_dir: Path, url: str, *options: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ops.cli",
            "index",
            "--data-dir",
            str(data_dir),
            "--es",
            url,
            "--json",
            *options,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def _indexed_ids(url: str) -> list[str]:
    es = es_client(url)
    try:
        es.indices.refresh(index=DEFAULT_INDEX)
        hits = es.search(index=DEFAULT_INDEX, size=10000, source=False, query={"match_all": {}})["hits"][
            "hits"
        ]
        return [hit["_id"] for hit in hits]
    finally:
        es.close()


def test_index_into_osmem_is_idempotent(tmp_path: Path, osmem_url: str) -> None:
    simulated_runs(tmp_path, runs=2, epochs=10)
    store = open_store(DataDir(tmp_path).log)
    try:
        expected = sorted(e.event_id for e in store.read_all())
    finally:
        store.close()
    first = _esper_index(tmp_path, osmem_url)
    out, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    assert json.loads(out)["indexed"] == len(expected)
    again = _esper_index(tmp_path, osmem_url)
    out, err = again.communicate(timeout=120)
    assert again.returncode == 0 and json.loads(out)["indexed"] == 0
    assert sorted(_indexed_ids(osmem_url)) == expected


KILLS = 3


def _cursor_position(data_dir: Path, url: str) -> int:
    return Cursor.load(DataDir(data_dir).index, url, DEFAULT_INDEX).position


@pytest.mark.slow
def test_a_killed_indexer_resumes_without_losing_or_repeating_events(tmp_path: Path, osmem_url: str) -> None:
    simulated_runs(tmp_path, runs=6, epochs=40)
    store = open_store(DataDir(tmp_path).log)
    try:
        expected = sorted(e.event_id for e in store.read_all())
    finally:
        store.close()
    rng = random.Random(17)
    kills = 0
    cut_midway = []
    for _ in range(KILLS + 1):
        before = _cursor_position(tmp_path, osmem_url)
        process = _esper_index(tmp_path, osmem_url, "--batch", "100")
        # Kill only once this process has indexed something (a condition, not a bet on timing), then at a
        # random point a little later: with a batch of 100 the index is then partly written.
        deadline = time.monotonic() + 120
        while (
            kills < KILLS
            and process.poll() is None
            and _cursor_position(tmp_path, osmem_url) <= before
            and time.monotonic() < deadline
        ):
            time.sleep(0.005)
        if kills < KILLS and process.poll() is None:
            time.sleep(rng.uniform(0, 0.05))
            process.send_signal(signal.SIGKILL)
            process.wait()
            kills += 1
            cut_midway.append(0 < _cursor_position(tmp_path, osmem_url) < len(expected))
            continue
        _, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, stderr
        break
    assert kills == KILLS and any(cut_midway), "no kill landed while the index was partly written"
    ids = _indexed_ids(osmem_url)
    assert len(ids) == len(set(ids)) and sorted(ids) == expected

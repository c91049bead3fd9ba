"""Every `esper` subcommand × a corpus of bad inputs, run as the user runs them (subprocesses): never a
traceback, only the exit codes README's "Exit codes" table documents (0, 1, 2), the error on stderr's last
line (when there is one: `esper db status` reports a stopped projection on stdout), and the code the table
names where a class of input has one (an argument that is not UTF-8, a malformed or other-scheme URL and a
--data-dir that is a regular file are bad usage, 2; an id that names nothing is 1)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from domains.tolaria.aggregate import run_stream
from eventstore import open_store
from leyline import new_envelope, pb
from leyline.datadir import DataDir
from projections.db import open_db, resolve_url
from tests.tolaria.helpers import SMALL

ROOT = Path(__file__).resolve().parents[1]
POISON = b"\xff\xff\xff"  # no protobuf message parses this
PARALLEL = 4  # esper processes at once: most of their time is start-up

pytestmark = pytest.mark.slow  # ~90 processes: a minute or more on two busy cores


@dataclass(frozen=True)
class Value:
    name: str
    text: str | bytes  # bytes: passed to the process as they are (not UTF-8)
    kinds: frozenset[str]  # the kinds of argument it is tried on


def corpus(tmp: Path) -> list[Value]:
    regular = tmp / "regular-file"
    regular.write_text("not a directory, not a config\n")
    return [
        Value("empty", "", frozenset({"id", "url", "path", "name"})),
        Value("huge", "9" * 30, frozenset({"id", "number"})),
        Value("negative", "-5", frozenset({"number"})),
        Value("malformed-url", "redis://[::1:6379/0", frozenset({"url"})),
        Value("other-scheme", "http://127.0.0.1:1/x", frozenset({"url"})),
        Value("unknown-id", "nope", frozenset({"id", "number", "name"})),
        Value("missing-path", str(tmp / "missing" / "deeper"), frozenset({"path"})),
        Value("regular-file", str(regular), frozenset({"path"})),
    ]


NOT_UTF8 = b"\xff\xfe"  # tried once on every subcommand: the command line refuses it before parsing

# (argv with X where the value goes, the kind of argument X is); every subcommand has at least one
SLOTS: list[tuple[list[str], str]] = [
    (["audit", "run", "X"], "id"),
    (["audit", "run", "rgood", "--as-of", "X"], "number"),
    (["bench", "X"], "name"),
    (["blueprints", "show", "X"], "id"),
    (["db", "status", "--db", "X"], "url"),
    (["mirror", "--redis", "X"], "url"),
    (["rebuild", "X"], "name"),
    (["recover", "--store", "X"], "url"),
    (["replay", "--from", "X"], "number"),
    (["rollback", "--run", "rgood", "--to-epoch", "X"], "number"),
    (["run", "--seed", "X"], "number"),
    (["run", "--redis", "X"], "url"),
    (["run", "--resume", "--run-id", "X"], "id"),
    (["verify", "--store", "X"], "url"),
]
# --data-dir X for every subcommand, on an invocation that reads the data directory (blueprints imports
# torch to read the catalogue: only the regular file, refused while parsing, is tried there)
DATA_DIR_SLOTS: list[list[str]] = [
    ["audit", "run", "rgood"],
    ["bench", "nope"],
    ["blueprints", "show", "BP001"],
    ["db", "status"],
    ["mirror", "--redis", "redis://127.0.0.1:1/0"],
    ["rebuild", "--all"],
    ["recover"],
    ["replay"],
    ["rollback", "--run", "rgood", "--to-epoch", "1"],
    ["run", "--resume"],
    ["verify"],
]
ID_COMMANDS = {"audit", "blueprints", "rollback", "run"}  # where an id is looked up
# the log's undecodable payload, met by the commands that read or fold it: (argv, the code)
ON_POISON: list[tuple[list[str], int]] = [
    (["recover"], 1),  # the projections that cannot decode it stop there, named in one line
    (["rebuild", "--all"], 1),
    (["db", "status"], 1),
    (["audit", "run", "rpoison"], 1),
    (["run", "--resume", "--run-id", "rpoison"], 1),
    (["rollback", "--run", "rpoison", "--to-epoch", "1"], 1),
    (["replay"], 0),  # printed with its payload as base64 and the decoding error
    (["verify"], 0),  # the log itself is sound
]


def expected_codes(argv: list[str], kind: str, value: Value) -> set[int]:
    """The codes README's table allows for this input; a single one where the table names the class."""
    if kind == "url" and value.name in {"malformed-url", "other-scheme"}:
        return {2}
    if kind == "path" and value.name == "regular-file":
        return {2}
    if kind == "id" and value.name == "unknown-id" and argv[0] in ID_COMMANDS:
        return {1}
    return {0, 1, 2}


def poisoned_data_dir(root: Path) -> Path:
    """A data directory whose log holds a run `rgood` (one RunStarted) and an undecodable payload."""
    store = open_store(DataDir(root).log, create=True)
    good = new_envelope("RunStarted", run_stream("rgood"), pb.RunStarted(run_id="rgood"))
    poison = new_envelope("RunStarted", run_stream("rpoison"), pb.RunStarted(run_id="rpoison"))
    poison.payload = POISON
    store.append([good])
    store.append([poison])
    store.close()
    # migrated once here: the cases run in parallel, and first opens of one SQLite file race to migrate it
    open_db(resolve_url(root)).dispose()
    return root


@dataclass(frozen=True)
class Case:
    argv: list[str | bytes]
    codes: set[int]

    def label(self) -> str:
        return " ".join(a if isinstance(a, str) else repr(a) for a in self.argv)


def cases(tmp: Path, data_dir: Path) -> Iterator[Case]:
    values = corpus(tmp)
    config = tmp / "small.json"
    config.write_text(json.dumps({**SMALL, "epochs": 1}))
    for template, kind in SLOTS:
        for value in values:
            if kind not in value.kinds:
                continue
            argv: list[str | bytes] = [value.text if part == "X" else part for part in template]
            if template[0] == "run":  # a run the value leaves valid trains one small epoch
                argv += ["--config", str(config)]
            yield Case([*argv, "--data-dir", str(data_dir)], expected_codes(template, kind, value))
    for base in DATA_DIR_SLOTS:
        for value in values:
            if "path" in value.kinds and (base[0] != "blueprints" or value.name == "regular-file"):
                yield Case([*base, "--data-dir", value.text], expected_codes(base, "path", value))
        yield Case([*base, NOT_UTF8, "--data-dir", str(data_dir)], {2})
    for command, code in ON_POISON:
        yield Case([*command, "--data-dir", str(data_dir)], {code})


def esper(argv: list[str | bytes], cwd: Path) -> subprocess.CompletedProcess[bytes]:
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    for variable in ("ESPER_DATA_DIR", "ESPER_STORE_URL", "ESPER_DB_URL", "REDIS_URL"):
        environment.pop(variable, None)
    return subprocess.run(
        [
            sys.executable.encode(),
            b"-m",
            b"ops.cli",
            *(a.encode() if isinstance(a, str) else a for a in argv),
        ],
        cwd=cwd,
        env=environment,
        capture_output=True,
        timeout=300,
    )


def test_bad_input_never_gets_a_traceback_and_gets_the_documented_code(tmp_path: Path) -> None:
    data_dir = poisoned_data_dir(tmp_path / "data")
    work = tmp_path / "work"  # the current directory: an empty --data-dir means it
    work.mkdir()
    all_cases = list(cases(tmp_path, data_dir))
    with ThreadPoolExecutor(PARALLEL) as pool:
        results = list(pool.map(lambda case: esper(case.argv, work), all_cases))
    failures = []
    for case, result in zip(all_cases, results, strict=True):
        stderr = result.stderr.decode(errors="replace")
        last = stderr.strip().splitlines()[-1] if stderr.strip() else ""
        if "Traceback" in stderr or result.returncode not in case.codes:
            failures.append(f"{case.label()}: exit {result.returncode}, stderr ends {stderr[-300:]!r}")
        elif result.returncode != 0 and last and not last.startswith("esper"):
            failures.append(f"{case.label()}: the error is not stderr's last line: {stderr[-300:]!r}")
    assert not failures, f"{len(failures)} of {len(all_cases)} cases:\n" + "\n".join(failures)

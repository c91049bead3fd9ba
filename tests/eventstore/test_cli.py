"""`esper verify`, `esper recover` and `esper replay`: output, exit codes, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eventstore.file import FileStore
from ops.cli import main
from tests.eventstore.conftest import make_event


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    with FileStore(tmp_path / "data" / "log") as store:
        for index in range(4):
            store.append([make_event("run-r1", note=f"run {index}"), make_event(f"seed-r1.{index}")])
    return tmp_path / "data"


def segment(data_dir: Path) -> Path:
    return data_dir / "log" / f"{1:020d}.wal"


def test_verify_sound_log(capsys: pytest.CaptureFixture[str], data_dir: Path) -> None:
    code, out, _ = run(capsys, "verify", "--data-dir", str(data_dir), "--json")
    report = json.loads(out)
    assert code == 0 and report["ok"] is True
    assert (report["records"], report["head"], report["streams"]) == (8, 8, 5)
    code, out, _ = run(capsys, "verify", "--data-dir", str(data_dir))
    assert code == 0 and out.startswith("log OK: 8 events")


def test_verify_names_the_damaged_record(capsys: pytest.CaptureFixture[str], data_dir: Path) -> None:
    with FileStore(data_dir / "log") as store:
        offset = store._log.segments[0].offsets[4]
    data = bytearray(segment(data_dir).read_bytes())
    data[offset + 50] ^= 0xFF
    segment(data_dir).write_bytes(bytes(data))
    code, out, _ = run(capsys, "verify", "--data-dir", str(data_dir), "--json")
    problem = json.loads(out)["problem"]
    assert code == 1
    assert (problem["segment"], problem["offset"], problem["position"]) == (segment(data_dir).name, offset, 5)
    code, out, _ = run(capsys, "verify", "--data-dir", str(data_dir))
    assert code == 1 and f"at byte offset {offset} (global position 5)" in out
    code, _, err = run(capsys, "recover", "--data-dir", str(data_dir))
    assert code == 1
    assert err.count("\n") == 1 and "global position 5" in err and "esper verify" in err


def test_recover_truncates_a_torn_tail(capsys: pytest.CaptureFixture[str], data_dir: Path) -> None:
    with segment(data_dir).open("ab") as handle:
        handle.write(b"\xe5\x5e\x01\x7a torn")
    code, out, _ = run(capsys, "verify", "--data-dir", str(data_dir))
    assert code == 1 and "torn tail" in out
    code, out, _ = run(capsys, "recover", "--data-dir", str(data_dir), "--json")
    steps = json.loads(out)["steps"]
    assert code == 0 and steps[0]["step"] == "log", "the log is recovered before anything that reads it"
    assert steps[0]["truncated_bytes"] == 9 and steps[0]["head"] == 8
    code, out, _ = run(capsys, "recover", "--data-dir", str(data_dir))
    assert code == 0 and out.startswith("log: ") and "truncated" not in out
    assert run(capsys, "verify", "--data-dir", str(data_dir))[0] == 0


def test_replay_json_lines_with_filters(capsys: pytest.CaptureFixture[str], data_dir: Path) -> None:
    code, out, _ = run(capsys, "replay", "--data-dir", str(data_dir))
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [line["position"] for line in lines] == list(range(1, 9))
    assert lines[0]["payload"] == {"run_id": "run 0"} and lines[0]["stream_version"] == 1
    code, out, _ = run(
        capsys, "replay", "--data-dir", str(data_dir), "--category", "seed", "--from", "3", "--to", "6"
    )
    assert [json.loads(line)["stream"] for line in out.splitlines()] == ["seed-r1.1", "seed-r1.2"]
    code, out, _ = run(
        capsys, "replay", "--data-dir", str(data_dir), "--stream", "run-r1", "--stream", "seed-r1.0", "--json"
    )
    assert [json.loads(line)["position"] for line in out.splitlines()] == [1, 2, 3, 5, 7]
    code, out, _ = run(capsys, "replay", "--data-dir", str(data_dir), "--type", "AlertFired")
    assert code == 0 and out == ""


@pytest.mark.parametrize("command", ["verify", "recover", "replay"])
def test_bad_input_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, command: str
) -> None:
    code, _, err = run(capsys, command, "--data-dir", str(tmp_path / "absent"))
    assert code == 2 and err.count("\n") == 1 and "does not exist" in err
    (tmp_path / "empty").mkdir()
    code, _, err = run(capsys, command, "--data-dir", str(tmp_path / "empty"))
    assert code == 2 and err.count("\n") == 1 and "no event log" in err
    (tmp_path / "other" / "log").mkdir(parents=True)
    (tmp_path / "other" / "log" / "x.txt").write_text("x")
    code, _, err = run(capsys, command, "--data-dir", str(tmp_path / "other"))
    assert code == 2 and err.count("\n") == 1 and "not an esper event store" in err
    code, _, err = run(capsys, command, "--store", "http://example.org/x")
    assert code == 2 and err.count("\n") == 1


@pytest.mark.parametrize("command", ["verify", "recover", "replay"])
def test_a_url_that_does_not_answer(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    monkeypatch.setenv("ESPER_STORE_URL", "postgresql://postgres@127.0.0.1:1/esper")
    code, _, err = run(capsys, command)
    assert code == 1 and err.count("\n") == 1 and "does not answer" in err


def test_replay_rejects_a_reversed_range(capsys: pytest.CaptureFixture[str], data_dir: Path) -> None:
    code, _, err = run(capsys, "replay", "--data-dir", str(data_dir), "--from", "5", "--to", "2")
    assert code == 2 and "--to" in err


@pytest.mark.postgres
def test_commands_on_a_postgres_store(capsys: pytest.CaptureFixture[str], postgres_server: str) -> None:
    from eventstore.postgres import PostgresStore

    with PostgresStore(postgres_server) as store:
        store.append([make_event("run-r9"), make_event("seed-r9.1")])
    try:
        code, out, _ = run(capsys, "verify", "--store", postgres_server, "--json")
        assert code == 0 and json.loads(out)["records"] == 2
        code, out, _ = run(capsys, "replay", "--store", postgres_server, "--category", "seed")
        assert code == 0 and [json.loads(line)["position"] for line in out.splitlines()] == [2]
        code, out, _ = run(capsys, "recover", "--store", postgres_server, "--json")
        assert code == 0 and json.loads(out)["steps"][0]["head"] == 2
    finally:
        with PostgresStore(postgres_server) as store:
            store.drop()

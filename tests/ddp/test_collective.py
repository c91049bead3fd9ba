"""The pieces of data parallelism that need no second process: shards, agreement, the shared clock."""

from __future__ import annotations

import torch
from hypothesis import given
from hypothesis import strategies as st

from domains.tolaria.boundary import BoundaryClock, Decision, shared_command
from domains.tolaria.collective import (
    RankDesync,
    RankFailure,
    SingleProcess,
    agreement_digest,
    first_divergent,
    local_batch_size,
    shard_order,
)
from domains.tolaria.data import epoch_order
from leyline import new_envelope, pb


@given(st.integers(1, 300), st.integers(1, 5), st.integers(0, 2**32), st.integers(1, 50))
def test_shards_cover_the_epoch_alike_on_every_rank(size: int, world: int, seed: int, epoch: int) -> None:
    order = epoch_order(seed, epoch, size)
    shards = [shard_order(order, rank, world) for rank in range(world)]
    assert len({len(shard) for shard in shards}) == 1  # the same number of steps on every rank
    assert set(torch.cat(shards).tolist()) == set(range(size))
    assert sum(len(s) for s in shards) - size < world  # padding: fewer than one index per rank
    again = [shard_order(epoch_order(seed, epoch, size), rank, world) for rank in range(world)]
    assert all(torch.equal(a, b) for a, b in zip(shards, again, strict=True))


def test_the_global_batch_is_split_over_the_ranks() -> None:
    assert local_batch_size(64, 1) == 64
    assert local_batch_size(64, 2) == 32
    assert local_batch_size(3, 4) == 1


def test_one_process_is_the_run_it_was() -> None:
    single = SingleProcess()
    order, model, sums = torch.arange(5), torch.nn.Linear(2, 2), [torch.ones(()), torch.zeros(())]
    assert single.shard(order) is order and single.wrap(model) is model
    assert single.sum(sums, 1) is sums and single.local_batch(64) == 64
    assert single.broadcast(b"decision", 1) == b"decision"
    single.agree(b"anything", 1)


def test_a_digest_names_what_the_ranks_must_share() -> None:
    slots = [("1", "1", "(8, 4, 4)", "2", "1", "BP009", "abc")]
    parameters = [("conv.weight", (8, 1, 3, 3))]
    base = agreement_digest(slots, parameters, (4, 16, 0))
    assert agreement_digest(list(reversed(slots)), parameters, (4, 16, 0)) == base
    assert agreement_digest(slots, [*parameters, ("slot1.seed.skew", (3,))], (4, 16, 0)) != base
    assert agreement_digest(slots, parameters, (4, 17, 0)) != base
    assert first_divergent([base, base, base]) is None
    assert first_divergent([base, base, b"other"]) == 2


def test_a_desync_names_its_rank_and_epoch() -> None:
    error = RankDesync(1, 4, "its slots differ")
    assert isinstance(error, RankFailure) and (error.rank, error.epoch) == (1, 4)
    assert str(error) == "rank 1 at epoch 4: its slots differ"


def test_the_followers_clock_reads_rank_0s_reading() -> None:
    leader, follower = BoundaryClock(leads=True), BoundaryClock(leads=False)
    reading = leader()
    assert reading > 0 and leader.reading == reading
    follower.reading = Decision(now_ms=reading).now_ms
    assert follower() == reading


@given(st.binary(max_size=5000), st.booleans(), st.integers(0, 2**62))
def test_a_decision_crosses_the_wire_whole(command: bytes, rolls_back: bool, now_ms: int) -> None:
    decision = Decision(command, rolls_back, now_ms)
    assert Decision.decode(decision.encode()) == decision


def test_a_rollback_command_is_not_shared_as_a_command() -> None:
    def issued(command_type: int) -> pb.EventEnvelope:
        command = pb.AdaptationCommand(command_id="c", command_type=command_type)  # type: ignore[arg-type]
        return new_envelope(
            "AdaptationCommandIssued", "command-c", pb.AdaptationCommandIssued(command=command)
        )

    assert shared_command([issued(pb.COMMAND_TYPE_ROLLBACK)]) == b""
    seed = issued(pb.COMMAND_TYPE_SEED)
    assert shared_command([seed]) == seed.SerializeToString()

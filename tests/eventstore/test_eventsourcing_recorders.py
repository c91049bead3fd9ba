"""The `eventsourcing` library's own recorder test cases, unmodified, against Esper's file store and
PostgreSQL store through eventstore.eventsourcing_recorders (issue 19); then an application on top.

Each class only says how to make a recorder or the factory (a fresh store each time: notification ids
start at 1 in the library's cases). Besides the four cases the issue names (aggregate, application,
non-interleaving notification ids, infrastructure factory) the tracking and process recorder cases run
too, and the application recorder's optional subscription case.
"""

from __future__ import annotations

import tempfile
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import pytest
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event
from eventsourcing.persistence import InfrastructureFactory
from eventsourcing.tests import persistence as cases
from eventsourcing.utils import Environment

from eventstore.eventsourcing_recorders import (
    EsperAggregateRecorder,
    EsperApplicationRecorder,
    EsperFactory,
    EsperProcessRecorder,
    EsperTrackingRecorder,
)
from tests.postgres import scratch_database

MODULE = "eventstore.eventsourcing_recorders"


class _FileStores:
    """A fresh file store per recorder or factory, removed when the test ends."""

    def new_location(self) -> str:
        stack = ExitStack()
        self.addCleanup(stack.close)  # type: ignore[attr-defined]
        return stack.enter_context(tempfile.TemporaryDirectory(prefix="esper-es-")) + "/log"

    def new_factory(self) -> EsperFactory:
        factory = InfrastructureFactory.construct(
            Environment(env={"PERSISTENCE_MODULE": MODULE, "ESPER_STORE_URL": self.new_location()})
        )
        self.addCleanup(factory.close)  # type: ignore[attr-defined]
        assert isinstance(factory, EsperFactory)
        return factory


class _PostgresStores(_FileStores):
    """A fresh PostgreSQL database per recorder or factory, dropped when the test ends."""

    def new_location(self) -> str:
        stack = ExitStack()
        self.addCleanup(stack.close)  # type: ignore[attr-defined]
        return stack.enter_context(scratch_database("esper_esrec"))


# ---------------------------------------------------------------- the file store


class TestFileAggregateRecorder(_FileStores, cases.AggregateRecorderTestCase):
    def create_recorder(self) -> EsperAggregateRecorder:
        return self.new_factory().aggregate_recorder()  # type: ignore[return-value]


class TestFileApplicationRecorder(_FileStores, cases.ApplicationRecorderTestCase):
    def create_recorder(self) -> EsperApplicationRecorder:
        return self.new_factory().application_recorder()  # type: ignore[return-value]

    def test_insert_subscribe(self) -> None:
        self.optional_test_insert_subscribe()


class TestFileNonInterleavingNotificationIDs(_FileStores, cases.NonInterleavingNotificationIDsBaseCase):
    def create_recorder(self) -> EsperApplicationRecorder:
        return self.new_factory().application_recorder()  # type: ignore[return-value]


class TestFileTrackingRecorder(_FileStores, cases.TrackingRecorderTestCase):
    def create_recorder(self) -> EsperTrackingRecorder:
        return self.new_factory().tracking_recorder()


class TestFileProcessRecorder(_FileStores, cases.ProcessRecorderTestCase):
    def create_recorder(self) -> EsperProcessRecorder:
        return self.new_factory().process_recorder()  # type: ignore[return-value]


class SubclassedTrackingRecorder(EsperTrackingRecorder):
    """A tracking recorder class the factory is asked for by argument and by topic."""


class TestFileInfrastructureFactory(_FileStores, cases.InfrastructureFactoryTestCase[EsperFactory]):
    def setUp(self) -> None:
        self.env = Environment(
            "TestCase", {"PERSISTENCE_MODULE": MODULE, "ESPER_STORE_URL": self.new_location()}
        )
        super().setUp()

    def expected_factory_class(self) -> type[EsperFactory]:
        return EsperFactory

    def expected_aggregate_recorder_class(self) -> type[EsperAggregateRecorder]:
        return EsperAggregateRecorder

    def expected_application_recorder_class(self) -> type[EsperApplicationRecorder]:
        return EsperApplicationRecorder

    def expected_tracking_recorder_class(self) -> type[EsperTrackingRecorder]:
        return EsperTrackingRecorder

    def tracking_recorder_subclass(self) -> type[EsperTrackingRecorder]:
        return SubclassedTrackingRecorder

    def expected_process_recorder_class(self) -> type[EsperProcessRecorder]:
        return EsperProcessRecorder


# ---------------------------------------------------------------- PostgreSQL


@pytest.mark.postgres
class TestPostgresAggregateRecorder(_PostgresStores, TestFileAggregateRecorder):
    pass


@pytest.mark.postgres
class TestPostgresApplicationRecorder(_PostgresStores, TestFileApplicationRecorder):
    pass


@pytest.mark.postgres
class TestPostgresNonInterleavingNotificationIDs(_PostgresStores, TestFileNonInterleavingNotificationIDs):
    pass


@pytest.mark.postgres
class TestPostgresTrackingRecorder(_PostgresStores, TestFileTrackingRecorder):
    pass


@pytest.mark.postgres
class TestPostgresProcessRecorder(_PostgresStores, TestFileProcessRecorder):
    pass


@pytest.mark.postgres
class TestPostgresInfrastructureFactory(_PostgresStores, TestFileInfrastructureFactory):
    pass


# ---------------------------------------------------------------- an application on Esper's log


class Account(Aggregate):
    @event("Opened")
    def __init__(self, owner: str) -> None:
        self.owner = owner
        self.balance = 0

    @event("Credited")
    def credit(self, amount: int) -> None:
        self.balance += amount


class Bank(Application[UUID]):
    snapshotting_intervals = {Account: 3}  # noqa: RUF012 (the library's class attribute)

    def open(self, owner: str) -> UUID:
        account = Account(owner)
        self.save(account)
        return account.id

    def credit(self, account_id: UUID, amount: int) -> None:
        account: Account = self.repository.get(account_id)
        account.credit(amount)
        self.save(account)


@dataclass
class _Stored:
    balance: int
    version: int


@pytest.mark.parametrize("backend", ["file", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_an_application_runs_on_esper_and_survives_a_reopen(tmp_path: Any, backend: str) -> None:
    with ExitStack() as stack:
        location = (
            str(tmp_path / "log")
            if backend == "file"
            else stack.enter_context(scratch_database("esper_esapp"))
        )
        env = {"PERSISTENCE_MODULE": MODULE, "ESPER_STORE_URL": location}
        bank = Bank(env=env)
        assert isinstance(bank.factory, EsperFactory)
        account_id = bank.open("ada")
        for amount in (5, 7, 11, 13):
            bank.credit(account_id, amount)
        notifications = bank.notification_log.select(start=1, limit=10)
        assert [n.topic.rpartition(".")[2] for n in notifications] == ["Opened", *["Credited"] * 4]
        bank.close()

        reopened = Bank(env=env)
        account: Account = reopened.repository.get(account_id)
        assert _Stored(account.balance, account.version) == _Stored(36, 5)
        assert reopened.snapshots is not None and reopened.snapshots.get(account_id) is not None
        older: Account = reopened.repository.get(account_id, version=2)
        assert older.balance == 5
        reopened.close()

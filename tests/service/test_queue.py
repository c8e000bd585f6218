"""The job queue on SQLite and a real PostgreSQL server: idempotent submission, leases, fencing,
expiry and hand-over, cancellation, and concurrent claims that never hand one job to two workers."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from itertools import count
from pathlib import Path

import pytest

from ember.autotune.service.auth import authenticate, create_token, digest
from ember.autotune.service.queue import JobQueue, JobSpec
from ember.errors import UsageError
from tests.autotune._postgres import missing_reason, postgres_server

CPU = {"kind": "llvm", "mcpu": "cooperlake", "num-cores": 2}
_databases = count()


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    reason = missing_reason()
    if reason:
        pytest.skip(f"no PostgreSQL server for the tests: {reason}")
    with postgres_server() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "queue.db")
    import psycopg

    server = request.getfixturevalue("postgres_url")
    name = f"ember_queue_{next(_databases)}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return server.rsplit("/", 1)[0] + "/" + name


@pytest.fixture
def queue(url: str) -> Iterator[JobQueue]:
    q = JobQueue.open(url)
    yield q
    q.close()


def _spec(request_id: str | None = None) -> JobSpec:
    return JobSpec("tasks", CPU, trials=8, request_id=request_id)


def test_a_retried_submission_is_accepted_once(queue):
    first, created = queue.submit(_spec("req-1"), b"[]", "alice")
    again, created_again = queue.submit(_spec("req-1"), b"[]", "alice")
    assert created
    assert not created_again
    assert again.id == first.id
    assert queue.counts()["queued"] == 1
    assert queue.payload(first.id) == b"[]"


def test_a_claimed_job_is_leased_to_one_worker(queue):
    job, _ = queue.submit(_spec(), b"x", "alice")
    claimed = queue.claim("w1", lease_sec=60)
    assert claimed is not None
    assert claimed.id == job.id
    assert claimed.status == "running"
    assert claimed.worker == "w1"
    assert claimed.attempts == 1
    assert queue.claim("w2", lease_sec=60) is None  # leased, not expired
    assert queue.renew(job.id, "w1", 60)
    assert not queue.renew(job.id, "w2", 60)  # only the holder renews
    assert queue.progress(job.id, "w1", 4, 8, 1.5)
    assert not queue.progress(job.id, "w2", 8, 8, 1.0)  # fenced: changes nothing
    assert queue.finish(job.id, "w1")
    done = queue.get(job.id)
    assert done.status == "done"
    assert done.measured == 4
    assert done.planned == 8
    assert [(t, b) for t, b, _ in queue.curve(job.id)] == [(4, 1.5)]


def test_an_expired_lease_moves_the_job_to_another_worker(queue):
    job, _ = queue.submit(_spec(), b"x", "alice")
    queue.claim("dead", lease_sec=0.2)
    time.sleep(0.3)
    resumed = queue.claim("alive", lease_sec=60)
    assert resumed.id == job.id
    assert resumed.worker == "alive"
    assert resumed.attempts == 2
    # the old worker's late writes are refused: it learns its lease is gone
    assert not queue.progress(job.id, "dead", 8, 8, 1.0)
    assert not queue.finish(job.id, "dead", "late")
    assert queue.finish(job.id, "alive")
    assert queue.get(job.id).status == "done"


def test_a_job_that_keeps_losing_its_workers_fails(queue):
    job, _ = queue.submit(_spec(), b"x", "alice")
    for attempt in range(2):
        assert queue.claim(f"w{attempt}", lease_sec=0.05, max_attempts=2) is not None
        time.sleep(0.1)
    assert queue.claim("w9", lease_sec=60, max_attempts=2) is None
    failed = queue.get(job.id)
    assert failed.status == "failed"
    assert "its worker was lost 2 times" in failed.error


def test_cancel_stops_the_lease_and_release_requeues(queue):
    running, _ = queue.submit(_spec(), b"x", "alice")
    queue.claim("w1", lease_sec=60)
    assert queue.cancel(running.id).status == "cancelled"
    assert not queue.renew(running.id, "w1", 60)  # the worker sees it at its next beat
    handed_back, _ = queue.submit(_spec(), b"y", "alice")
    queue.claim("w1", lease_sec=60)
    assert queue.release(handed_back.id, "w1")
    assert queue.claim("w2", lease_sec=60).id == handed_back.id
    assert queue.cancel(10**9) is None


def test_concurrent_workers_never_share_a_job(url):
    setup = JobQueue.open(url)
    jobs = {setup.submit(_spec(f"r{i}"), b"x", "alice")[0].id for i in range(20)}
    claims: list[tuple[str, int]] = []
    lock = threading.Lock()

    def work(name: str) -> None:
        q = JobQueue.open(url)  # a connection each, as separate worker processes have
        while (job := q.claim(name, lease_sec=60)) is not None:
            with lock:
                claims.append((name, job.id))
        q.close()

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(job for _, job in claims) == sorted(jobs)  # each job claimed exactly once
    setup.close()


def test_named_tokens_are_stored_hashed(queue):
    token = create_token(queue, "alice")
    assert queue.token_name(digest(token)) == "alice"
    rows = queue.conn.query("SELECT digest FROM ember_service_tokens")
    assert token not in str(rows)
    assert authenticate(queue, f"Bearer {token}", None) == "alice"
    assert authenticate(queue, "Bearer env-secret", "env-secret") == "env"
    assert authenticate(queue, "Bearer wrong", "env-secret") is None
    assert authenticate(queue, f"Basic {token}", None) is None
    assert authenticate(queue, None, "env-secret") is None
    with pytest.raises(UsageError, match="a token named 'alice' exists already"):
        create_token(queue, "alice")
    with pytest.raises(UsageError, match="token name 'a b'"):
        create_token(queue, "a b")

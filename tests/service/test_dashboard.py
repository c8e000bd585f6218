"""The dashboard in headless Chromium against a real `ember serve`: a job's card shows its live
progress and tuning curve, and updates without a reload when the job progresses.

The test plays the worker through the queue (claim, progress reports): the same calls a worker
makes, without spending minutes on measurements the page does not care about."""

from __future__ import annotations

import pytest

from ember.autotune.service.queue import JobQueue
from tests.service._chromium import browser, missing_reason
from tests.service._processes import TOKEN, service
from tests.service._records import CPU

TASK = {"name": "fused_matmul", "weight": 2, "workload": ["123", "AAAA"]}
CARD = "document.querySelector('[data-job=\"{id}\"]')"


@pytest.fixture
def chromium_available() -> None:
    reason = missing_reason()
    if reason:
        pytest.skip(reason)


def test_dashboard_shows_live_progress_and_curves(tmp_path, chromium_available):
    with service(tmp_path) as server, server.client() as api:
        job = api.post("/v1/jobs/tasks", json={"tasks": [TASK], "trials": 8, "target": CPU}).json()
        queue = JobQueue.open(str(server.database))
        assert queue.claim("worker-a", lease_sec=600).id == job["id"]
        for measured, best in ((2, 0.90), (4, 0.52), (6, 0.47)):
            assert queue.progress(job["id"], "worker-a", measured, 8, best)
        card = CARD.format(id=job["id"])
        with browser() as page:
            page.open(f"{server.url}/#token={TOKEN}")
            page.wait_for(f"{card} && {card}.dataset.status === 'running'")
            assert page.evaluate(f"{card}.querySelector('.measured').textContent") == "6 / 8 trials"
            assert page.evaluate(f"{card}.querySelectorAll('svg.curve circle').length") == 3
            label = page.evaluate(f"{card}.querySelector('svg.curve').getAttribute('aria-label')")
            assert label == "best latency 0.4700 ms after 6 trials"
            assert "1 busy workers" in page.evaluate("document.getElementById('stats').textContent")
            page.screenshot(tmp_path / "running.png")
            # the page polls: progress and the end show up without a reload
            assert queue.progress(job["id"], "worker-a", 8, 8, 0.31)
            assert queue.finish(job["id"], "worker-a")
            page.wait_for(f"{card}.dataset.status === 'done'", timeout_sec=30)
            assert page.evaluate(f"{card}.querySelector('.measured').textContent") == "8 / 8 trials"
            assert page.evaluate(f"{card}.querySelectorAll('svg.curve circle').length") == 4
            assert not page.evaluate("location.hash")  # the token left the address bar
            page.screenshot(tmp_path / "done.png")
        queue.close()


def test_dashboard_asks_for_a_token_and_refuses_a_wrong_one(tmp_path, chromium_available):
    with service(tmp_path) as server, browser() as page:
        page.open(f"{server.url}/")
        page.wait_for("!document.getElementById('login').hidden")
        page.open(f"{server.url}/?again#token=wrong")  # a new URL: the page loads anew
        message = page.wait_for(
            "!document.getElementById('error').hidden && document.getElementById('error').textContent"
        )
        assert message == "missing or unknown bearer token"

"""The durable job store: what survives a restart, and the poison-job rule."""

from __future__ import annotations

from pathlib import Path

from modules.processing.jobs.job_store import POISON_ERROR, JobStore


def test_jobs_keep_their_order_payload_and_outcome(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.sqlite")
    store.add("a", "txt2img", {"payload": {"prompt": "one"}})
    store.add("b", "txt2img", {"payload": {"prompt": "two"}})
    store.mark_running("a")
    store.mark_finished("a", "done", result={"paths": ["/x.png"]})
    assert store.get("a").state == "done" and store.get("a").result == {"paths": ["/x.png"]}
    assert store.get("b").payload == {"payload": {"prompt": "two"}}
    jobs, total = store.page(limit=1)
    assert total == 2 and [j.id for j in jobs] == ["b"]  # newest first
    assert store.page(state="done")[1] == 1 and store.get("missing") is None
    store.forget("b")
    assert store.get("b") is None


def test_a_restart_requeues_waiting_jobs_retries_a_running_one_once_then_fails_it(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite"
    store = JobStore(path)
    for job_id in ("running", "waiting-1", "waiting-2"):
        store.add(job_id, "txt2img", {"payload": {}})
    store.mark_running("running")
    store.close()

    after_first_crash = JobStore(path).recover()  # a new process opens the same file
    assert [(j.id, j.restarts) for j in after_first_crash] == [("running", 1), ("waiting-1", 0), ("waiting-2", 0)]

    again = JobStore(path)
    again.mark_running("running")  # it crashes the server a second time
    assert [j.id for j in JobStore(path).recover()] == ["waiting-1", "waiting-2"]
    poisoned = JobStore(path).get("running")
    assert (poisoned.state, poisoned.error, poisoned.restarts) == ("failed", POISON_ERROR, 2)

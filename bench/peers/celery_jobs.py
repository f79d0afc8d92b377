"""Celery peer of `switchyard-bench jobs` (B3): a no-op task that records when it started.

Broker: Redis at BENCH_BROKER (the driver starts it with appendfsync always). Late acks, one
task prefetched per process, so a task is acknowledged only after it ran (Celery's
at-least-once mode). Each task appends "ID LATENCY_US" to the Redis list `done`, which the
driver reads to count executions and enqueue-to-start latency.

    python3 celery_jobs.py enqueue N          # queue tasks 0..N-1
    celery -A celery_jobs worker -c 8 ...     # run them (the driver starts this)
"""

import os
import sys
import time

import redis
from celery import Celery

BROKER = os.environ.get("BENCH_BROKER", "redis://127.0.0.1:6379/0")

app = Celery("celery_jobs", broker=BROKER)
app.conf.update(
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    task_ignore_result=True,
    broker_transport_options={"visibility_timeout": 5},
    task_default_queue="bench",
    broker_connection_retry_on_startup=True,
)

_done = None


def done_list():
    global _done
    if _done is None:
        _done = redis.Redis.from_url(BROKER)
    return _done


@app.task(name="noop")
def noop(job_id, enq_us):
    started = time.time_ns() // 1000
    done_list().rpush("done", f"{job_id} {started - enq_us}")


def enqueue(n):
    for i in range(n):
        noop.apply_async((i, time.time_ns() // 1000))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "enqueue":
        enqueue(int(sys.argv[2]))
    else:
        sys.exit("usage: celery_jobs.py enqueue N")

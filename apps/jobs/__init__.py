"""Durable jobs (SPEC-JOBS-001): the `jobs` table is each job's truth; RQ workers or the in-process
runner execute it, one claimed attempt at a time.

- `types.py`   JobStatus, JobKind, JobMode, ErrorKind and `JobView`, a job as callers read it
- `store.py`   the rows: create, claim (attempt + 1, lease), heartbeat, commit only while owned
- `kinds.py`   what each kind does (ingest a stored payload, reindex, learn)
- `executor.py` one job's attempts: claim, heartbeat, run under a timeout, retry with backoff
- `queue.py`   RQ: enqueue a job id, queue depth and workers, a short connect timeout
- `runner.py`  in-process execution (bounded concurrency) and the recovery sweep
- `monitor.py` the automatic rollback of the `durable_worker` flag
- `service.py` what the API and CLI call: submit (queue or fallback; owner and quota), wait, watch, cancel,
               retry, migrate, stats
- `worker.py`  the RQ job function and `dtrag worker`
"""

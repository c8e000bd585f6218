"""The tuning service: an HTTP API (FastAPI) over a job queue kept in the tuning database, worker
processes that tune jobs on the devices of a TVM RPC tracker, bearer-token auth, and a dashboard.

    app.py          routes and the OpenAPI spec         queue.py       jobs, leases, tokens (SQL)
    schemas.py      request/response bodies             worker.py      claim, tune, renew, finish
    http_errors.py  JSON errors, the body-size limit    supervisor.py  `ember serve --workers N`
    auth.py         bearer tokens, stored hashed         task_tuning.py tuning a task list
    client.py       `--service URL` clients             records_wire.py records over HTTP
    static/         the dashboard page

Nothing here is imported by `import ember`; the modules import FastAPI/TVM only where needed.
"""

"""gomailpy's local stack: the whole system on one machine, without Docker or an AWS account.

- `up`: `gomail up` (what `make up` runs): LocalStack, the queues, the stand-ins, the API and
  pipeline nodes as child processes, a live status line, Ctrl-C stops it all.
- `localstack`: LocalStack installed into a venv of its own and started on a free loopback port
  (`python -m gomailpy_local.localstack install | run`); the tests and benchmarks use it too.
- `standins`: an SMTP relay and a SendGrid that capture what they receive and fail on demand.

Development tooling, not part of the production package: `pip install -e ./local` from a
checkout (scripts/setup.sh does it). It brings aiosmtpd and moto with it.
"""

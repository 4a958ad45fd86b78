# The README's two commands. Both set everything up first and are safe to run again.
.PHONY: up test setup bench lint

up: setup
	.venv/bin/gomail up --config config/gomailpy.yaml

test:
	bash scripts/test.sh

setup:
	bash scripts/setup.sh

lint: setup
	.venv/bin/ruff check . && .venv/bin/mypy

bench: setup
	.venv/bin/python -m bench.api_throughput && .venv/bin/python -m bench.pipeline_drain && .venv/bin/python -m bench.sqs_calls

.PHONY: run test install lint bench clean-testbed

run:
	scripts/run.sh

test:
	scripts/test.sh

install:
	scripts/bootstrap.sh

lint: install
	.venv/bin/ruff check .

testbed-down:
	.venv/bin/python -m dockmon_site.testbed down

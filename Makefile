.PHONY: run test install lint bench clean-testbed lock-deps upgrade-deps

run:
	scripts/run.sh

test:
	scripts/test.sh

install:
	scripts/bootstrap.sh

lint: install
	.venv/bin/ruff check .

# Dependencies (README.md): re-pin after an edit of a requirements-*.in file (pins that still fit
# are kept), or move every package to the newest release its .in allows. Both write the hashes.
lock-deps:
	scripts/compile-requirements.sh

upgrade-deps:
	scripts/compile-requirements.sh --upgrade

testbed-down:
	.venv/bin/python -m testkit.testbed down

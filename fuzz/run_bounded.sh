#!/bin/sh
# Fuzzes one harness for a bounded time, as CTest's fuzz_<name>_run does:
#   run_bounded.sh HARNESS SECONDS CORPUS ARTIFACT_DIR
# New inputs go to a scratch directory that is removed afterwards, so the
# repository's corpus is read, never written. A crash (or leak, timeout,
# out-of-memory) fails the run and is kept under ARTIFACT_DIR.
set -eu
harness=$1 seconds=$2 corpus=$3 artifacts=$4
name=$(basename "$harness")
scratch=$(mktemp -d "${TMPDIR:-/tmp}/$name.XXXXXX")
trap 'rm -rf "$scratch"' EXIT INT TERM
mkdir -p "$artifacts"
# -timeout: one input taking this long is a hang worth a report.
# -rss_limit_mb: a leak across inputs shows up before the machine suffers.
"$harness" -max_total_time="$seconds" -timeout=25 -rss_limit_mb=2560 \
    -print_final_stats=1 -artifact_prefix="$artifacts/$name-" "$scratch" "$corpus"

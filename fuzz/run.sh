#!/usr/bin/env bash
# Runs fuzz targets one after the other, each on one core for SECS seconds (default 600):
#   fuzz/run.sh [TARGET...]        (all targets when none is named)
# Needs cargo-fuzz; runs it on stable with RUSTC_BOOTSTRAP=1 (see README.md). The instrumented
# build goes to FUZZ_TARGET_DIR (default /tmp/activestack-fuzz-target), each run's libFuzzer
# output to logs/TARGET.log, and the closing figures are printed at the end.
set -euo pipefail
cd "$(dirname "$0")"
export RUSTC_BOOTSTRAP=1
secs=${SECS:-600}
target_dir=${FUZZ_TARGET_DIR:-/tmp/activestack-fuzz-target}
if [ $# -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list)
fi
mkdir -p logs
cargo fuzz build --target-dir "$target_dir"
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t"
    extra=()
    if [ "$t" = config ]; then
        extra=(../conf)
    fi
    echo "== $t: ${secs} s"
    status=0
    nice -n 10 cargo fuzz run --target-dir "$target_dir" "$t" "corpus/$t" "seeds/$t" "${extra[@]}" -- \
        -jobs=1 -workers=1 -max_total_time="$secs" -timeout=10 -print_final_stats=1 \
        >"logs/$t.log" 2>&1 || status=$?
    # With -jobs, libFuzzer writes the job's own output to fuzz-0.log.
    if [ -f fuzz-0.log ]; then
        cat fuzz-0.log >>"logs/$t.log"
        rm -f fuzz-0.log
    fi
    echo "exit $status"
    grep -E '^#[0-9]+.*(DONE|pulse|NEW|REDUCE)' "logs/$t.log" | tail -1 || true
    grep -E 'stat::(number_of_executed_units|average_exec_per_sec|new_units_added)' "logs/$t.log" || true
    ls "artifacts/$t" 2>/dev/null || true
done

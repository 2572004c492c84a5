#!/bin/bash
# Runs one libFuzzer target of the fuzz preset and prints a RESULTS.md table row.
#   fuzz/run_fuzzer.sh TARGET MAX_SECONDS [RUNS] [extra libFuzzer flags...]
# New inputs go to build/fuzz/work/TARGET (the committed seeds in fuzz/corpus/TARGET are read only);
# crashes are written to build/fuzz/crashes/TARGET/.
set -uo pipefail
cd "$(dirname "$0")/.."
target=$1 seconds=$2 runs=${3:-1000000}
shift $(( $# < 3 ? $# : 3 ))
bin=${FUZZ_BIN:-build/fuzz/fuzz/fuzz_$target}
work=build/fuzz/work/$target crashes=build/fuzz/crashes/$target
mkdir -p "$work" "$crashes"
log=build/fuzz/logs/$target.log
mkdir -p build/fuzz/logs
cmd=("$bin" -rss_limit_mb=2048 -malloc_limit_mb=1024 -max_total_time="$seconds" -runs="$runs" -timeout=25
     -print_final_stats=1 -artifact_prefix="$crashes/" "$@" "$work" "fuzz/corpus/$target" "fuzz/regressions/$target")
mkdir -p "fuzz/regressions/$target"
start=$(date +%s)
set +e
"${cmd[@]}" > "$log" 2>&1
rc=$?
set -e
end=$(date +%s)
execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | awk "{print \$NF}" | tail -1)
eps=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | awk "{print \$NF}" | tail -1)
rss=$(grep -o 'stat::peak_rss_mb: *[0-9]*' "$log" | awk "{print \$NF}" | tail -1)
units=$(ls "$work" | wc -l)
ncrash=$(ls "$crashes" | wc -l)
echo "| $target | ${execs:-?} | ${eps:-?} | $((end - start)) s | $units | ${rss:-?} MB | rc=$rc, $ncrash artifacts | \`${cmd[*]}\` |"

#!/bin/bash
# Runs each libFuzzer target for N seconds (default 60): first on every
# input that once failed (fuzz/regressions/TARGET), then exploring from
# the seeds, the Azure fixtures and what earlier runs found.  Prints the
# executions per target; a crash leaves its input in fuzz/crashes, to be
# copied into fuzz/regressions once fixed.  "N passed, N failed" at the end.

cd "$(dirname "$0")/.." || exit 2
seconds=${1:-60}
fixtures=${FIXTURES:-../shared/fixtures/azure-rest-api-specs}
passed=0
failed=0
mkdir -p fuzz/corpus fuzz/crashes
for f in fuzz/fuzz_config fuzz/fuzz_json fuzz/fuzz_target \
    fuzz/fuzz_wsframe; do
	name=${f#fuzz/fuzz_}
	mkdir -p "fuzz/corpus/$name" "fuzz/regressions/$name"
	extra=
	[ "$name" = json ] && [ -d "$fixtures" ] && extra=$fixtures
	log=fuzz/crashes/$name.log
	ok=1
	if ls fuzz/regressions/$name/* >/dev/null 2>&1; then
		"$f" fuzz/regressions/$name/* >"$log" 2>&1 || ok=0
	fi
	if [ $ok = 1 ]; then
		"$f" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=1024 \
		    -artifact_prefix=fuzz/crashes/$name- "fuzz/corpus/$name" \
		    "fuzz/seeds/$name" $extra >"$log" 2>&1 || ok=0
	fi
	runs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" |
	    tail -1 | grep -o '[0-9]*$')
	[ -n "$runs" ] || runs=$(grep -oE '#[0-9]+' "$log" | tail -1 | tr -d '#')
	if [ $ok = 1 ]; then
		echo "ok - fuzz_$name: ${runs:-?} executions in ${seconds} s"
		passed=$((passed + 1))
	else
		tail -n 40 "$log"
		echo "not ok - fuzz_$name (see $log)"
		failed=$((failed + 1))
	fi
done
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]

#!/bin/bash
# Every test, as CI runs it, on a fresh Debian 12 machine:
#   1. install what is missing, build with gcc (-Werror) and with clang;
#   2. the style check;
#   3. the emulator's own self-test;
#   4. the unit and end-to-end suites on the gcc build (valgrind included);
#   5. the same suites under AddressSanitizer and UndefinedBehaviorSanitizer;
#   6. the libFuzzer targets, briefly.
# Ends with one "N passed, N failed" line; exits non-zero on any failure.

cd "$(dirname "$0")/.." || exit 2
tests/deps.sh || exit 2
log=$(mktemp -d /tmp/bastion-stdio-all.XXXXXX)
passed=0
failed=0

# Runs a step that reports "N passed, N failed" and adds its counts.
suite() {
	local name=$1 out last
	shift
	echo "== $name"
	"$@" 2>&1 | tee "$log/$name.out"
	last=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log/$name.out" | tail -1)
	if [ -z "$last" ]; then
		echo "not ok - $name produced no result line"
		failed=$((failed + 1))
		return
	fi
	passed=$((passed + ${last%% passed*}))
	last=${last#*, }
	failed=$((failed + ${last%% failed*}))
}

# Runs a step that passes or fails as a whole.
step() {
	local name=$1
	shift
	echo "== $name"
	if "$@" >"$log/$name.out" 2>&1; then
		echo "ok - $name"
		passed=$((passed + 1))
	else
		tail -n 30 "$log/$name.out"
		echo "not ok - $name"
		failed=$((failed + 1))
	fi
}

step build-clang sh -c 'make clean && make CC=clang && make CC=clang unit'
step build-gcc sh -c 'make clean && make && make unit'
step style tests/lint.sh
step install sh -c 'd=$(mktemp -d) && make install DESTDIR="$d" PREFIX=/usr &&
    test -x "$d/usr/bin/bastion-stdio" && rm -rf "$d"' 
# the Debian package from contrib/debian: built, installed, run, removed
step deb tests/deb.sh
suite emulator tests/emulator/selftest.sh
suite suite-gcc tests/run

step build-sanitizers sh -c 'make clean && make CC=clang \
    CFLAGS="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer \
    -fno-sanitize-recover=all" LDFLAGS="-fsanitize=address,undefined" \
    all unit'
SANITIZED=1 suite suite-sanitizers env \
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 tests/run

# A short fuzzing run of every parser (make fuzz runs them longer).
suite fuzz make fuzz FUZZ_SECONDS=${FUZZ_SECONDS:-15}

make clean >/dev/null && make >/dev/null 2>&1
rm -rf "$log"
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]

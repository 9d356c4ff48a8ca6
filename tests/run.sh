#!/usr/bin/env bash
# Runs every test and ends with "N passed, N failed".
#   unit tests (cmocka, TAP output), built plain and with ASan+UBSan
#   integration tests (tests/integration/*.sh, TAP output) driving ./hone
# Usage: tests/run.sh [FILTER]   (FILTER: substring of a test file name)
cd "$(dirname "$0")/.." || exit 2
filter=${1:-}
pass=0
fail=0
failed_names=()

tally() { # tally NAME OUTPUT RC
	local name=$1 out=$2 rc=$3
	local p f
	p=$(grep -cE '^ok ' <<<"$out")
	f=$(grep -cE '^not ok ' <<<"$out")
	if [ "$rc" != 0 ] && [ "$f" = 0 ]; then
		f=1 # crashed or exited non-zero without saying which test
		echo "$out" | tail -30
	fi
	grep -E '^not ok |^#   ' <<<"$out"
	pass=$((pass + p))
	fail=$((fail + f))
	[ "$f" = 0 ] || failed_names+=("$name")
	printf '%-40s %3d passed, %d failed\n' "$name" "$p" "$f"
}

export CMOCKA_MESSAGE_OUTPUT=TAP
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
for t in build/tests/test_* build/tests-asan/test_*; do
	[ -x "$t" ] || continue
	case "$t" in *"$filter"*) ;; *) continue ;; esac
	out=$("$t" 2>&1)
	tally "$t" "$out" $?
done
for t in tests/integration/*.sh; do
	[ "$(basename "$t")" = lib.sh ] && continue
	case "$t" in *"$filter"*) ;; *) continue ;; esac
	out=$(bash "$t" 2>&1)
	tally "$t" "$out" $?
done
# the integration tests again, against the engine built with ASan+UBSan;
# any sanitizer report (written to files, so a test expecting a failure
# cannot mistake one for its own) fails the run
if [ -x build/hone-asan ] && [ -z "$filter" -o "$filter" = asan ]; then
	logs=$(mktemp -d)
	for t in tests/integration/*.sh; do
		[ "$(basename "$t")" = lib.sh ] && continue
		out=$(HONE=$PWD/build/hone-asan HONE_HOME=$PWD \
			ASAN_OPTIONS=detect_leaks=1:exitcode=86:log_path=$logs/asan \
			UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:log_path=$logs/ubsan bash "$t" 2>&1)
		tally "$t (ASan+UBSan)" "$out" $?
	done
	reports=$(ls "$logs" | wc -l)
	if [ "$reports" != 0 ]; then
		head -40 "$logs"/*
		fail=$((fail + 1))
		failed_names+=("sanitizer reports: $reports")
	else
		pass=$((pass + 1))
	fi
	printf '%-40s %s\n' "sanitizer reports" "$reports"
	rm -rf "$logs"
fi

echo
[ ${#failed_names[@]} = 0 ] || echo "failing: ${failed_names[*]}"
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]

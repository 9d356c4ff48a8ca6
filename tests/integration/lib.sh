# Helpers for integration tests: each test file sources this, calls `check`
# for every assertion, and prints TAP ("ok N - name" / "not ok N - name").
set -u
HONE=${HONE:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/hone}
N=0
FAILS=0
WORK=$(mktemp -d /tmp/hone-it-XXXXXX)
export HONE_CACHE=$WORK/cache
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"

# check NAME COMMAND...: the command must succeed.
check() {
	local name=$1
	shift
	N=$((N + 1))
	local out
	if out=$("$@" 2>&1); then
		echo "ok $N - $name"
	else
		echo "not ok $N - $name"
		echo "$out" | sed 's/^/#   /' | head -20
		FAILS=$((FAILS + 1))
	fi
}

# ran_count: stages with status "ran" in the latest run record.
ran_count() { "$HONE" runs -1 | awk 'NR > 1 && $1 == "ran"' | wc -l; }
ran_names() { "$HONE" runs -1 | awk 'NR > 1 && $1 == "ran" {print $2}' | sort | tr '\n' ' '; }
eq() { [ "$1" = "$2" ] || { echo "expected [$2], got [$1]"; return 1; }; }
contains() { grep -qF -- "$2" <<<"$1" || { echo "expected output to contain [$2]; got:"; echo "$1"; return 1; }; }

# fails_with CODE TEXT COMMAND...: exit status CODE and stderr containing TEXT.
fails_with() {
	local code=$1 text=$2
	shift 2
	local out rc
	out=$("$@" 2>&1)
	rc=$?
	[ "$rc" = "$code" ] || { echo "exit $rc, expected $code: $out"; return 1; }
	contains "$out" "$text"
}

done_testing() { echo "1..$N"; [ "$FAILS" = 0 ]; }

# Sourced by the ctrl integration scripts: counted PASS/FAIL lines.
#   check WHAT CMD...    runs CMD, PASS or FAIL with WHAT
#   require WHAT CMD...  the same, but a FAIL stops the script (the rest cannot go on without it)
# $passed and $failed hold the counts (cleanup handlers look at $failed).
passed=0
failed=0
pass() { echo "PASS: $*"; passed=$((passed + 1)); }
fail() { echo "FAIL: $*"; failed=$((failed + 1)); }
check() { local what=$1; shift; if "$@"; then pass "$what"; else fail "$what"; fi; }
require() { check "$@" || { echo "$passed passed, $failed failed (stopped early)"; exit 1; }; }

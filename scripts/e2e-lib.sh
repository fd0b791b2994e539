# Shared by the e2e scripts (sourced, not run): counted checks with a summary line.
# The caller defines say() and compose(), and sets E2E_CHECK_OUT (a file that holds one check's
# output while it runs).
PASSED=0 FAILED=0
FAILURES=()

# check NAME COMMAND…: runs the command, counts it, prints its output only when it fails.
check() {
  local name=$1 t0=$SECONDS; shift
  if "$@" >"$E2E_CHECK_OUT" 2>&1; then
    PASSED=$((PASSED + 1))
    say "ok    $name ($((SECONDS - t0)) s) — $(tail -1 "$E2E_CHECK_OUT" | cut -c1-150)"
  else
    FAILED=$((FAILED + 1)); FAILURES+=("$name"); say "FAIL  $name ($((SECONDS - t0)) s)"
    sed 's/^/        /' "$E2E_CHECK_OUT" | tail -25
  fi
}

# "N passed, M failed" (the line CI reads); true only when something passed and nothing failed.
summary() {
  local failed_names=""
  [ "$FAILED" = 0 ] || failed_names=" — failed: $(IFS=';'; echo "${FAILURES[*]}")"
  say "$PASSED passed, $FAILED failed in $SECONDS s$failed_names"
  [ "$FAILED" = 0 ] && [ "$PASSED" -gt 0 ]
}

# Stops early (with the summary) when a step everything after it needs has failed.
require() {
  if [ "$FAILED" != 0 ]; then
    compose logs --no-color --tail 60 2>&1 | sed 's/^/        /'
    summary; exit 1
  fi
}

#!/usr/bin/env bash
# Runs each fuzz target ("pkg:Name") for FUZZTIME. A crasher fails the run
# (Go writes it to the package's testdata/fuzz, where it stays as a
# regression test). Go's fuzzing engine sometimes ends a run with "context
# deadline exceeded" when a worker is still busy as the time runs out, without
# any failing input: that engine hiccup is retried (twice), a real finding never.
set -uo pipefail
fuzztime=${FUZZTIME:-4s}
go=${GO:-go}
for t in "$@"; do
  pkg=${t%%:*}; name=${t##*:}
  for attempt in 1 2 3; do
    echo "fuzz $pkg $name ($fuzztime)"
    out=$("$go" test -run='^$' -fuzz="^${name}\$" -fuzztime="$fuzztime" "$pkg" 2>&1); rc=$?
    echo "$out" | tail -n 3
    [ $rc -eq 0 ] && break
    if echo "$out" | grep -q "Failing input written" || ! echo "$out" | grep -q "context deadline exceeded"; then
      echo "$out"
      exit 1
    fi
    [ $attempt -eq 3 ] && { echo "$out"; exit 1; }
    echo "fuzz $pkg $name: engine ended with 'context deadline exceeded' and no failing input; retrying"
  done
done

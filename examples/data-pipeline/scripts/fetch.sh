#!/bin/sh
# Fetch: copy the raw orders into a work folder and describe what was fetched, as JSON on stdout.
# The run's inputs arrive as JSON in $DURABLEFLOW_INPUT (and on stdin).
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
day=$(python3 -c 'import json,os; print(json.loads(os.environ["DURABLEFLOW_INPUT"] or "{}").get("day","2026-11-27"))')
out=$(python3 -c 'import json,os; print(json.loads(os.environ["DURABLEFLOW_INPUT"] or "{}").get("outDir",""))')
[ -n "$out" ] || out="${TMPDIR:-/tmp}/durableflow-pipeline-$DURABLEFLOW_RUN_ID"
mkdir -p "$out"
cp "$here/data/orders.csv" "$out/orders-$day.csv"
lines=$(wc -l < "$out/orders-$day.csv")
printf '{"path": "%s", "day": "%s", "lines": %d}\n' "$out/orders-$day.csv" "$day" "$lines"

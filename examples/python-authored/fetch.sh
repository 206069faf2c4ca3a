#!/bin/sh
# Fetch the day's orders: here, a file next to this script, printed as JSON on stdout.
set -eu
cat "$(dirname "$0")/orders.json"

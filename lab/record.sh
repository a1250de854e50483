#!/usr/bin/env bash
# Record the lab: run every scenario (or those named) and leave OUTDIR/<scenario>.pcap.
#   bash lab/record.sh OUTDIR [scenario ...]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:?usage: lab/record.sh OUTDIR [scenario ...]}"; shift
mkdir -p "$out"
out="$(cd "$out" && pwd)"
if [ $# -eq 0 ]; then
  set -- $(cd "$here/scenarios" && ls *.sh | sed 's/\.sh$//')
fi
for scenario in "$@"; do
  start=$(date +%s)
  LAB_SCENARIO="$scenario" bash "$here/scenarios/$scenario.sh" "$out"
  echo "lab: $scenario recorded in $(( $(date +%s) - start )) s: $(stat -c %s "$out/$scenario.pcap") bytes" >&2
done

#!/usr/bin/env bash
# Nightly catalog run, for cron. Resumes where the last run stopped (the ledger lives in $OUT).
#   KIE_API_KEY   the account's key (required for real runs; without it the sandbox is used)
#   MANIFEST      the catalog manifest   (default: sample_manifests/catalog.yaml)
#   OUT           the output folder      (default: out/catalog-$(date +%F))
#   RATE          the account's create cap (default: 20/10s)
#   PYTHON        the Python that has batch-engine (default: .venv/bin/python from bootstrap.py,
#                 else python3)
# Exit codes are batch-engine's: 0 all done, 1 some failed (see `batch-engine status $OUT`,
# re-run them with `batch-engine retry $OUT`), 2 bad manifest, 3 account refused, 130 stopped.
set -uo pipefail
cd "$(dirname "$0")/.."
MANIFEST=${MANIFEST:-sample_manifests/catalog.yaml}
OUT=${OUT:-out/catalog-$(date +%F)}
RATE=${RATE:-20/10s}
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
"$PYTHON" -m batch_engine run "$MANIFEST" --out "$OUT" --rate "$RATE" --quiet
code=$?
if [ -f "$OUT/ledger.jsonl" ]; then  # nothing to report when the manifest was refused
  "$PYTHON" -m batch_engine status "$OUT" --json > "$OUT/status.json" || true
fi
exit $code

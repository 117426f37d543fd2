#!/usr/bin/env bash
# The web view in a real headless Chromium (run by .ci/run after the Rust
# tests). Builds nothing: give it the binary.
#
#   scripts/browser.sh target/debug/recordhub
#
# Starts the engine on free loopback ports with a temporary data directory,
# sends fixtures/browser/*.hl7 (an admission with identifiers, GP, contact,
# allergy and diagnosis; a transfer; an abnormal U&E; a discharge summary;
# an attendance at another trust), mints a clinician and a social_care
# token, and runs tests/browser/record.test.mjs (node's test runner,
# playwright-core driving /usr/bin/chromium). The screenshot of the record
# page is kept in target/artifacts/record-page.png.
#
# Needs: chromium (apt), node and npm, `npm ci` done in tests/browser
# (.ci/run does both).
set -euo pipefail
cd "$(dirname "$0")/.."

RECORDHUB_BIN="${1:?usage: scripts/browser.sh path/to/recordhub}"
[ -x "$RECORDHUB_BIN" ] || { echo "browser: $RECORDHUB_BIN is not an executable; build it first"; exit 2; }
[ -d tests/browser/node_modules/playwright-core ] || { echo "browser: run 'npm ci' in tests/browser first"; exit 2; }

# shellcheck source=scripts/engine.sh
. scripts/engine.sh
engine_setup browser
start_engine "$TMP/data" || { echo "browser: 0 passed, 1 failed"; exit 1; }
echo "-- started $BIN on 127.0.0.1:$MLLP_PORT (http $HTTP_PORT), data $TMP/data"

timeout 60 "$BIN" send --to "127.0.0.1:$MLLP_PORT" fixtures/browser/*.hl7 >"$TMP/acks.txt"
if grep -v -E '\b(AA|CA)\b' "$TMP/acks.txt"; then
  echo "browser: a fixture was not accepted (above)"
  exit 1
fi

mint() {
  timeout 60 "$BIN" token mint --user "$1" --role "$2" --org "$3" --minutes 30 --data "$TMP/data"
}
TOKEN_CLINICIAN="$(mint dr.jane.smith clinician RJ1)"
TOKEN_SOCIAL="$(mint sw.amy.lee social_care LBS01)"

mkdir -p target/artifacts
RECORDHUB_URL="http://127.0.0.1:$HTTP_PORT" TOKEN_CLINICIAN="$TOKEN_CLINICIAN" TOKEN_SOCIAL="$TOKEN_SOCIAL" \
  ARTIFACTS="$PWD/target/artifacts" CHROMIUM="${CHROMIUM:-/usr/bin/chromium}" \
  timeout 300 node --test tests/browser/record.test.mjs

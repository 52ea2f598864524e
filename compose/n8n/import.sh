#!/bin/sh
# Loads the starter workflows (workflows/) and their credentials into n8n, once: a marker in
# n8n's data volume keeps a restart from overwriting what you changed since. Run by the
# n8n-import service in compose.ai.yaml before n8n starts.
set -eu
seed="${P4N4_SEED:-/seed}"   # where compose mounts this directory; the rehearsal points elsewhere
marker="${N8N_USER_FOLDER:-/home/node}/.n8n/.p4n4-starter-imported"
if [ -f "$marker" ]; then
  echo "starter workflows already imported (delete $marker to import them again)"
  exit 0
fi
creds=$(mktemp)
trap 'rm -f "$creds"' EXIT
node "$seed/credentials.js" > "$creds"
n8n import:credentials --input="$creds"
n8n import:workflow --separate --input="$seed/workflows"
touch "$marker"
echo "starter workflows imported: open n8n, then activate them"

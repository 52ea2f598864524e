#!/bin/bash
# Run by the influxdb image once, after its first-start setup (DOCKER_INFLUXDB_INIT_MODE=setup),
# with the influx CLI configured for the new org and admin token. Safe to run again, by hand:
#
#   docker compose exec influxdb /docker-entrypoint-initdb.d/buckets-and-accounts.sh
#
# which is how a stack set up before this script gets what it lacks, and how passwords rotated
# in .env (setup_secrets.py --rotate NAME, then docker compose up -d) reach InfluxDB.
#
# 1. The bucket of ingestd's own metrics (self_metrics.database in ingest.toml), so the sensor
#    bucket holds only sensor data: a Grafana query across it then never meets ingestd's
#    counters (their int and float fields would collide with a sensor's).
# 2. One account per service, as `accounts` beside this file lists them: a v1 authorization
#    (user name and password, both from .env) with read and write permissions on those buckets
#    only. A v1 authorization because its secret is chosen in .env, where a v2 token's is made
#    by InfluxDB and would have to be carried out of this container to each service; every
#    service reads and writes InfluxQL's /query and /write, which take it (InfluxDB 2.4+ maps
#    each bucket to an InfluxQL database of the same name).
set -euo pipefail

org="${DOCKER_INFLUXDB_INIT_ORG:?the influxdb image sets it from INFLUXDB_ORG}"
declare -A bucket_name=(
  [sensors]="${DOCKER_INFLUXDB_INIT_BUCKET:?the influxdb image sets it from INFLUXDB_BUCKET}"
  [ingestd]="${INGESTD_METRICS_BUCKET:-ingestd}"
)

bucket_id() {  # the ID of the bucket named $1, or nothing
  influx bucket list --org "$org" --name "$1" --hide-headers 2>/dev/null | cut -f 1 || true
}

if [ -z "$(bucket_id "${bucket_name[ingestd]}")" ]; then
  influx bucket create --name "${bucket_name[ingestd]}" --org "$org" \
    --retention "${INGESTD_METRICS_RETENTION:-30d}" >/dev/null
  echo "bucket ${bucket_name[ingestd]}: created"
fi

granted=()
grant() {  # $1: read or write; $2: buckets, comma-separated, or -
  local bucket name id
  [ "$2" = - ] && return 0
  for bucket in ${2//,/ }; do
    name="${bucket_name[$bucket]:-}"
    [ -n "$name" ] || { echo "accounts names an unknown bucket: $bucket" >&2; exit 1; }
    id="$(bucket_id "$name")"
    [ -n "$id" ] || { echo "no bucket $name in org $org" >&2; exit 1; }
    granted+=("--$1-bucket" "$id")
  done
}

while read -r account read write; do
  case "$account" in '' | '#'*) continue ;; esac
  user_var="INFLUXDB_${account}_USER" password_var="INFLUXDB_${account}_PASSWORD"
  user="${!user_var:?$user_var is not set: run python3 compose/setup_secrets.py}"
  password="${!password_var:?$password_var is not set: run python3 compose/setup_secrets.py}"
  granted=()
  grant read "$read"
  grant write "$write"
  # a v1 authorization's permissions cannot change: replace it, so a changed `accounts` and a
  # rotated password both apply
  for id in $(influx v1 auth list --username "$user" --hide-headers 2>/dev/null | cut -f 1); do
    influx v1 auth delete --id "$id" >/dev/null
  done
  influx v1 auth create --org "$org" --username "$user" --password "$password" \
    --description "p4n4 $account: read $read, write $write" "${granted[@]}" >/dev/null
  echo "account $user: read $read, write $write"
done < "$(dirname "$0")/accounts"

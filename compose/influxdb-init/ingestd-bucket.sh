#!/bin/bash
# Run once by the influxdb image after its first-start setup (DOCKER_INFLUXDB_INIT_MODE=setup),
# with the influx CLI already configured for the new org and admin token.
#
# ingestd's own metrics go to a bucket of their own (self_metrics.database in ingest.toml), so the
# sensor bucket holds only sensor data: a Grafana query across the sensor bucket then never meets
# ingestd's counters (their int and float fields would collide with a sensor's). Every bucket is
# also an InfluxQL database here (InfluxDB 2.4+ maps each bucket to a virtual DBRP), which is
# how Grafana's InfluxQL datasources and the n8n digest read both.
set -euo pipefail
influx bucket create \
  --name "${INGESTD_METRICS_BUCKET:-ingestd}" \
  --org "${DOCKER_INFLUXDB_INIT_ORG}" \
  --retention "${INGESTD_METRICS_RETENTION:-30d}"

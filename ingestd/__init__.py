"""ingestd: MQTT in, validated and unit-converted points out, batched into InfluxDB."""

__version__ = "0.1.0"

"""`ingestd simulate`: a fleet of devices in every payload format (fleet), published over a
minimal MQTT publisher (publisher), paced and reported (simulate). The compose demo runs it; the
daemon never imports it."""

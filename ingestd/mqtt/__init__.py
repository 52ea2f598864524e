"""The MQTT wire: one packet codec (packets), ingestd's own asyncio client (native), aiomqtt over
paho-mqtt (paho, imported only when chosen), reason codes in words (reasons), and the
`MqttClient` Protocol the source speaks to (client). Only this package knows aiomqtt and paho."""

// The starter workflows' credentials, built from the environment (.env) so no secret is
// committed. n8n encrypts them with N8N_ENCRYPTION_KEY on import (import.sh).
const env = process.env;
const credentials = [
  {
    id: "p4n4MqttN8nUser1",
    name: "p4n4 MQTT (n8n account)",
    type: "mqtt",
    data: {
      protocol: "mqtt",
      host: "mosquitto",
      port: 1883,
      username: env.MQTT_N8N_USER,
      password: env.MQTT_N8N_PASSWORD,
      clean: true,
      clientId: "",
      ssl: false,
    },
  },
  {
    id: "p4n4InfluxToken1",
    name: "p4n4 InfluxDB token",
    type: "httpHeaderAuth",
    data: { name: "Authorization", value: `Token ${env.INFLUXDB_ADMIN_TOKEN}` },
  },
];
process.stdout.write(JSON.stringify(credentials));

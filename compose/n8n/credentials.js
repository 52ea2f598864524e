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
      host: env.MQTT_HOST || "mosquitto", // the stack's broker; the rehearsal's on loopback
      port: Number(env.MQTT_PORT || 1883),
      username: env.MQTT_N8N_USER,
      password: env.MQTT_N8N_PASSWORD,
      clean: true,
      clientId: "",
      ssl: false,
    },
  },
  {
    // n8n's own InfluxDB account (compose/influxdb-init/accounts): basic auth on InfluxQL's
    // /query and /write, which InfluxDB 1.x, 2.x (a v1 authorization) and 3 Core (the password
    // is a token there) all take
    id: "p4n4InfluxN8nUser1",
    name: "p4n4 InfluxDB (n8n account)",
    type: "httpBasicAuth",
    data: { user: env.INFLUXDB_N8N_USER, password: env.INFLUXDB_N8N_PASSWORD },
  },
];
process.stdout.write(JSON.stringify(credentials));

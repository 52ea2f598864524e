// aedes on a loopback port: a second MQTT broker implementation (3.1.1) for the delivery tests.
//   node broker.mjs PORT [DENIED_FILTER,...]
// A subscription to a denied filter is negated (SUBACK 0x80), as an ACL that refuses it would be.
// The session store is aedes' in-memory persistence: persistent sessions survive a client's
// restart, not the broker's.
import { createServer } from 'node:net'
import { Aedes } from 'aedes'

const port = Number(process.argv[2])
const denied = new Set((process.argv[3] || '').split(',').filter(Boolean))
const broker = await Aedes.createBroker({ concurrency: 1000, queueLimit: 10000 })
broker.authorizeSubscribe = (client, subscription, callback) => {
  callback(null, denied.has(subscription.topic) ? null : subscription)
}
const server = createServer(broker.handle)
server.listen(port, '127.0.0.1', () => console.log(`aedes listening on 127.0.0.1:${port}`))
const stop = () => server.close(() => broker.close(() => process.exit(0)))
process.on('SIGTERM', stop)
process.on('SIGINT', stop)

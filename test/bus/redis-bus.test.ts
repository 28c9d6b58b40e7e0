import t from 'tap'
import { RedisBus } from '../../src/bus/redis-bus.js'
import { busContract } from './contract.js'
import { connections, skipWithoutRedis, uniquePrefix } from './redis.js'

const skip = await skipWithoutRedis()

busContract(
  t,
  'RedisBus',
  async (t) => {
    const prefix = uniquePrefix(t)
    return {
      async create() {
        const conns = await connections(t)
        const bus = new RedisBus({
          commands: conns.commands,
          reader: conns.reader,
          prefix,
          maxLength: 100,
          blockMs: 1000,
        })
        // Closed before its connections (teardowns run in reverse order).
        t.teardown(() => bus.close())
        return bus
      },
    }
  },
  skip,
)

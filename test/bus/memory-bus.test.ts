import t from 'tap'
import { MemoryBus, MemoryHub } from '../../src/bus/memory-bus.js'
import { busContract } from './contract.js'

busContract(t, 'MemoryBus', async (t) => {
  const hub = new MemoryHub()
  return {
    async create() {
      const bus = new MemoryBus(hub)
      t.teardown(() => bus.close())
      return bus
    },
  }
})

t.test(
  'MemoryBus delivers before publish settles, so a publisher sees its local delivery at once',
  async (t) => {
    const bus = new MemoryBus()
    let seen: string | undefined
    await bus.subscribe((e) => {
      seen = e.id
    })
    const pending = bus.publish({ event: 'e', data: 1, target: { broadcast: true }, origin: 'o:1' })
    t.ok(seen !== undefined, 'the handler ran inside publish')
    t.equal(await pending, seen)
  },
)

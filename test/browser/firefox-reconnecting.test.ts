// The browser client in Debian's Firefox: the reconnecting scenarios (scenarios.ts says what each asserts).
import t from 'tap'
import { FIREFOX, runIn } from './browsers.js'
import { RECONNECTING } from './scenarios.js'

await runIn(t, FIREFOX, RECONNECTING)

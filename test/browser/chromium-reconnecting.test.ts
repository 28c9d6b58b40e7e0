// The browser client in Debian's Chromium: the reconnecting scenarios (scenarios.ts says what each asserts).
import t from 'tap'
import { CHROMIUM, runIn } from './browsers.js'
import { RECONNECTING } from './scenarios.js'

await runIn(t, CHROMIUM, RECONNECTING)

// The browser client in Debian's Chromium: the sharing scenarios (scenarios.ts says what each asserts).
import t from 'tap'
import { CHROMIUM, runIn } from './browsers.js'
import { SHARING } from './scenarios.js'

await runIn(t, CHROMIUM, SHARING)

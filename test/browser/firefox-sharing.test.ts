// The browser client in Debian's Firefox: the sharing scenarios (scenarios.ts says what each asserts).
import t from 'tap'
import { FIREFOX, runIn } from './browsers.js'
import { SHARING } from './scenarios.js'

await runIn(t, FIREFOX, SHARING)

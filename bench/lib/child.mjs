// Entry point of a benchmark child process:
//   node [flags] bench/lib/child.mjs <scenario module URL> <JSON args>
// Imports the scenario module, awaits its `child(args)` and prints the result as one
// marked JSON line on stdout. A crash, an escaping stack overflow or a hang is classified
// by the parent (spawn.mjs).
import { RESULT_MARK } from './proc.mjs';

const [, , moduleUrl, rawArgs] = process.argv;
const scenario = await import(moduleUrl);
const result = await scenario.child(JSON.parse(rawArgs ?? '{}'));
// Exit once written: do not wait for stray timers or handles a library may leave behind.
process.stdout.write(`${RESULT_MARK}${JSON.stringify(result)}\n`, () => process.exit(0));

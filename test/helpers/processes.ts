import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../..', import.meta.url));

/** A child process running a TypeScript file of the test suite (through tsx). */
export interface Child {
  process: ChildProcess;
  /** Resolves with the exit code (null when killed by a signal) and the signal. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>;
  /** Lines written to stdout so far. */
  lines: string[];
  /** Resolves when a stdout line matching `pattern` appears. */
  waitForLine(pattern: RegExp, timeoutMs?: number): Promise<string>;
}

/** Spawns `node --import tsx <file> <json config>` from the project root. */
export function spawnTs(file: string, config: unknown): Child {
  const child = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(new URL(file, import.meta.url)), JSON.stringify(config)], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, NODE_OPTIONS: '' },
  });
  let stdout = '';
  let stderr = '';
  const lines: string[] = [];
  const watchers: { pattern: RegExp; resolve: (line: string) => void }[] = [];
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
    stdout += chunk;
    const parts = stdout.split('\n');
    const complete = parts.slice(0, -1);
    for (const line of complete.slice(lines.length)) {
      lines.push(line);
      for (const watcher of watchers.splice(0)) {
        if (watcher.pattern.test(line)) watcher.resolve(line);
        else watchers.push(watcher);
      }
    }
  });
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk;
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>((resolve) => {
    child.on('exit', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
  return {
    process: child,
    exited,
    lines,
    waitForLine(pattern, timeoutMs = 20_000) {
      const found = lines.find((line) => pattern.test(line));
      if (found !== undefined) return Promise.resolve(found);
      return new Promise<string>((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`no line matching ${pattern} within ${timeoutMs} ms; stdout:\n${stdout}\nstderr:\n${stderr}`)),
          timeoutMs,
        );
        watchers.push({
          pattern,
          resolve: (line) => {
            clearTimeout(timer);
            resolve(line);
          },
        });
        void exited.then(() => {
          clearTimeout(timer);
          const late = lines.find((line) => pattern.test(line));
          if (late !== undefined) resolve(late);
          else reject(new Error(`process exited without a line matching ${pattern}; stdout:\n${stdout}\nstderr:\n${stderr}`));
        });
      });
    },
  };
}

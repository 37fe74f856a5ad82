import { FlowChainError, FlowChainErrorCode, describeValue } from '../errors.js';

const MAX_DEPTH = 256;

/**
 * Serialises a value to JSON text, refusing anything JSON would silently change or drop:
 * `undefined`, functions, symbols, BigInt, NaN/Infinity, circular references, and objects
 * that are not plain (Date, Map, Set, class instances). The error names the path.
 * @internal
 */
export function toJsonText(value: unknown, option: string, maxBytes?: number): string {
  checkJsonValue(value, option, 0, new Set());
  const text = JSON.stringify(value);
  if (maxBytes !== undefined) {
    const bytes = Buffer.byteLength(text, 'utf8');
    if (bytes > maxBytes) {
      throw new FlowChainError(
        FlowChainErrorCode.INVALID_ARGUMENT,
        `Expected \`${option}\` to be at most ${maxBytes} bytes of JSON, got ${bytes} bytes. Store large payloads elsewhere and pass a reference, or raise \`maxJobDataBytes\`.`,
        { details: { option, bytes, maxBytes } },
      );
    }
  }
  return text;
}

function checkJsonValue(value: unknown, path: string, depth: number, seen: Set<object>): void {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return;
    case 'number':
      if (!Number.isFinite(value)) reject(path, value, 'NaN and Infinity become null in JSON');
      return;
    case 'object':
      break;
    default:
      reject(path, value, `${typeof value === 'undefined' ? 'undefined is dropped by' : 'it cannot be represented in'} JSON`);
  }
  if (value === null) return;
  if (depth >= MAX_DEPTH) reject(path, value, `it is nested deeper than ${MAX_DEPTH} levels`);
  const object = value as object;
  if (seen.has(object)) reject(path, value, 'it is a circular reference');
  seen.add(object);
  if (Array.isArray(object)) {
    for (let i = 0; i < object.length; i++) checkJsonValue(object[i], `${path}[${i}]`, depth + 1, seen);
  } else {
    const proto = Object.getPrototypeOf(object) as unknown;
    if (proto !== Object.prototype && proto !== null) {
      reject(path, value, 'only plain objects survive JSON (convert dates with toISOString(), maps with Object.fromEntries())');
    }
    for (const key of Object.keys(object)) {
      checkJsonValue((object as Record<string, unknown>)[key], `${path}.${key}`, depth + 1, seen);
    }
    if (Object.getOwnPropertySymbols(object).length > 0) reject(path, value, 'symbol keys are dropped by JSON');
  }
  seen.delete(object);
}

function reject(path: string, value: unknown, why: string): never {
  throw new FlowChainError(
    FlowChainErrorCode.INVALID_ARGUMENT,
    `Expected \`${path}\` to be JSON-serialisable, got ${describeValue(value)}: ${why}.`,
    { details: { option: path } },
  );
}

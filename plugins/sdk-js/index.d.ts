// Types of the JavaScript SDK (plugins/sdk-js/index.js), for TypeScript plugins and editors.

/** Bytes that may be absent (a Kafka null). */
export type Bytes = Uint8Array | null;

export interface Record {
  key: Bytes;
  value: Bytes;
  /** [name, value] pairs in producer order. */
  headers: [string, Bytes][];
  /** The value as a JSON document read and edited by the host (see `Json`). */
  readonly json: Json;
  /** Milliseconds since the Unix epoch, or null. */
  timestamp: number | null;
  topic: string;
  partition: number;
  offset: number;
  /** The value of the first header called `name` (null if absent or null). */
  header(name: string): Bytes;
}

/** What a JSON path found. */
export declare const Kind: {
  readonly MISSING: 0;
  readonly NULL: 1;
  readonly FALSE: 2;
  readonly TRUE: 3;
  readonly NUMBER: 4;
  readonly STRING: 5;
  readonly ARRAY: 6;
  readonly OBJECT: 7;
};

/** An index into the plugin's `jsonPaths`, or a JSON Pointer. */
export type JsonPath = number | string;

/** A record's value as a JSON document, read and edited by the host with serde_json's rules.
 * Emit the edited document with `out.emit({ value: record.json })`. */
export declare class Json {
  /** Whether the value is valid JSON. */
  readonly valid: boolean;
  /** What `path` found (`kind("")`: the whole document's). */
  kind(path: JsonPath): number;
  /** The string at `path`, or null when it is missing or not a string. */
  string(path: JsonPath): string | null;
  /** The JSON text at `path` (a string's decoded value), or null when missing. */
  text(path: JsonPath): string | null;
  /** The value at `path` (`JSON.parse` of its text), or `fallback` when missing. */
  get<T = unknown>(path: JsonPath, fallback?: T): unknown;
  set(path: JsonPath, value: string): void;
  setRaw(path: JsonPath, json: string | Uint8Array): void;
  remove(path: JsonPath): void;
}

/** The JSON Pointer of the field reached through `keys` (`~` and `/` escaped). */
export declare function pointer(...keys: (string | number)[]): string;

export interface Output {
  key?: Bytes | string;
  value?: Bytes | string | Json;
  headers?: readonly (readonly [string, Bytes | string])[];
  /** Milliseconds; default: the input's timestamp. */
  timestamp?: number | null;
  /** A named output declared in the pipeline config; default: the pipeline's default output. */
  to?: string | null;
}

export declare class Emitter {
  emit(output: Output): void;
  /** Sends `record` on (key, value, headers, timestamp) to the default output, unchanged or
   * with the fields of `changes` in place of its own: `forward(record, { value: record.json })`
   * emits the edited document without decoding the record's key or headers. */
  forward(record: Record, changes?: Output): void;
}

/** The little-endian u32 words of a word list of the contract (a `list<u8>`). */
export declare function words(bytes: Uint8Array): Uint32Array;
/** The bytes of the first `n` words of `w` (default all): a word list for the host. */
export declare function wordBytes(w: Uint32Array, n?: number): Uint8Array;

export declare class Config implements Iterable<[string, string]> {
  get(key: string): string | undefined;
  get(key: string, fallback: string): string;
  keys(): string[];
  [Symbol.iterator](): Iterator<[string, string]>;
}

/** Thrown by `transform`: this record goes to the dead-letter topic with the message. */
export declare class Reject extends Error {}
/** Thrown by the constructor: the host refuses this config with the message. */
export declare class ConfigError extends Error {}

/** One batch as columns aligned with its records (index `i` is record `i`), given to
 * `transformBatch`. Each column is made once per call, by a loop over the host's words; a path
 * is an index into `jsonPaths` or a JSON Pointer (an undeclared one costs one host `read` for the
 * whole batch). Valid during the call. */
export declare class RecordBatch {
  /** The number of records. */
  readonly length: number;
  /** 1 where the record has a value, 0 where it is a Kafka null. */
  readonly present: Uint8Array;
  /** What `path` found in each record's value, a `Kind`; `kinds("")` is the document's own
   * (`MISSING` when the value is absent or not valid JSON). */
  kinds(path: JsonPath): Uint8Array;
  /** The UTF-8 length in bytes of `path`'s text in each record (0 when missing, null or a
   * boolean): a string's length without making the string. */
  lengths(path: JsonPath): Uint32Array;
  /** The string at `path` in each record, or null where it is missing or not a string. */
  strings(path: JsonPath): (string | null)[];
  /** The JSON text at `path` in each record (a string's decoded value), or null where missing. */
  texts(path: JsonPath): (string | null)[];
  /** What the host read at `path`: its UTF-8 text, each record's span in it (a string's
   * decoded value; length 0 when missing, null or a boolean), and whether the text is ASCII. */
  spans(path: JsonPath): { text: Uint8Array; starts: Uint32Array; lengths: Uint32Array; ascii: boolean };
  /** Record `i` as `transform` sees it (its `json` edits are record `i`'s edits). */
  record(i: number): Record;
  /** Sets `path` of record `i`'s document to the string `value`. */
  set(i: number, path: JsonPath, value: string): void;
  /** Sets `path` of record `i`'s document to the JSON text `json`. */
  setRaw(i: number, path: JsonPath, json: string | Uint8Array): void;
  /** Removes `path` from record `i`'s document (nothing if it is missing). */
  remove(i: number, path: JsonPath): void;
  /** The batch's buffer for string values written as UTF-8 bytes, at least `capacity` long
   * (a larger capacity returns a larger buffer holding all the old one held). */
  utf8Buffer(capacity: number): Uint8Array;
  /** Sets `path` of record `i`'s document to the string `utf8Buffer()[start, start + length)`. */
  setUtf8(i: number, path: JsonPath, start: number, length: number): void;
  /** `setUtf8` for every record whose `lengths[i]` is not `NO_EDIT`, in one call. */
  setUtf8Column(path: JsonPath, starts: Uint32Array, lengths: Uint32Array): void;
}

/** The `lengths` entry of `setUtf8Column` for a record that is not edited (0xffffffff). */
export declare const NO_EDIT: number;

/** What `transformBatch` does with the batch's records: `reject` some, then `forwardAll` the
 * rest (once, last). A record neither rejected nor forwarded is dropped. */
export declare class BatchEmitter {
  /** Sends record `i` to the dead-letter topic with `message` and drops its edits; a second
   * rejection of the same record keeps the first message. */
  reject(i: number, message: string | Error): void;
  /** Whether record `i` was rejected. */
  rejected(i: number): boolean;
  /** Sends every record not rejected on, in order, with its key, headers and timestamp as they
   * came (words copied, nothing decoded); the value is its own, or with `{ json: true }` its
   * document with its edits applied (the output of `out.forward(record, { value: record.json })`). */
  forwardAll(options?: { json?: boolean }): void;
}

export interface Plugin {
  /** JSON Pointers read by the host for every record of a batch in one call. */
  jsonPaths?: string[];
  /** Called for every record, in order (unless `transformBatch` is defined). */
  transform?(record: Record, out: Emitter): void;
  /** Called once per batch instead of `transform` when defined. A throw traps the call: the host
   * bisects the batch on fresh instances and dead-letters only the record that throws. */
  transformBatch?(batch: RecordBatch, out: BatchEmitter): void;
}

export declare function defineTransform(plugin: new (config: Config) => Plugin): {
  init(config: [string, string][]): void;
  process(batch: unknown): unknown;
};

export declare const log: {
  debug(message: string): void;
  info(message: string): void;
  warn(message: string): void;
  error(message: string): void;
};

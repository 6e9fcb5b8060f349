// Types of the JavaScript SDK (plugins/sdk-js/index.js), for TypeScript plugins and editors.

/** Bytes that may be absent (a Kafka null). */
export type Bytes = Uint8Array | null;

export interface Record {
  key: Bytes;
  value: Bytes;
  /** [name, value] pairs in producer order. */
  headers: [string, Bytes][];
  /** Milliseconds since the Unix epoch, or null. */
  timestamp: number | null;
  topic: string;
  partition: number;
  offset: number;
  /** The value of the first header called `name` (null if absent or null). */
  header(name: string): Bytes;
}

export interface Output {
  key?: Bytes | string;
  value?: Bytes | string;
  headers?: [string, Bytes | string][];
  /** Milliseconds; default: the input's timestamp. */
  timestamp?: number | null;
  /** A named output declared in the pipeline config; default: the pipeline's default output. */
  to?: string | null;
}

export declare class Emitter {
  emit(output: Output): void;
  /** Sends `record` on unchanged (key, value, headers, timestamp) to the default output. */
  forward(record: Record): void;
}

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

export interface Plugin {
  transform(record: Record, out: Emitter): void;
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

/** A JSON value as serde_json sees it: integers within 64 bits are bigint, objects are Maps in key order. */
export type Json = null | boolean | string | bigint | number | Json[] | Map<string, Json>;
/** Parses UTF-8 JSON bytes; throws where serde_json would fail. */
export declare function parse(bytes: Uint8Array): Json;
/** Compact UTF-8 JSON bytes, as serde_json::to_vec writes them. */
export declare function stringify(value: Json): Uint8Array;
/** A finite float the way serde_json writes it. */
export declare function formatFloat(f: number): string;

/** Rust's char::is_alphanumeric for a code point. */
export declare function isAlphanumeric(codePoint: number): boolean;
/** Rust's char::is_whitespace for a code point. */
export declare function isWhitespace(codePoint: number): boolean;
/** Rust's str::trim. */
export declare function trim(s: string): string;

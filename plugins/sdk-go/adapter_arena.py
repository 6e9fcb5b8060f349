#!/usr/bin/env python3
"""Gives the WASI preview1 adapter memory that Go's runtime never touches.

`wasm-tools component new --adapt` makes the adapter allocate its state with the main module's
`cabi_realloc_adapter` export, or else its `cabi_realloc`. In a Go module `cabi_realloc` is Go code
that cannot run before the Go runtime is initialised, yet the runtime's own start-up calls WASI
(clock, random), which makes the adapter allocate: it traps. The adapter cannot grow memory itself
either (`--realloc-via-memory-grow`): Go's sbrk assumes it alone grows linear memory, and would
hand out the adapter's pages again.

So the SDK reserves a global byte array that starts with a marker (abi.go, `adapterArena`); this
script finds the array's address in the module's data segments and adds an exported
`cabi_realloc_adapter` that bump-allocates inside it.

    adapter_arena.py IN.wasm OUT.wasm
"""

import os
import subprocess
import sys

MARKER = b"sluice:adapter-arena:v1"
ARENA_SIZE = 1 << 20  # keep in step with abi.go


def leb(data, i):
    result = shift = 0
    while True:
        b = data[i]
        i += 1
        result |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return result, i


def sleb(data, i):
    result = shift = 0
    while True:
        b = data[i]
        i += 1
        result |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            if b & 0x40:
                result -= 1 << shift
            return result, i


def arena_address(wasm):
    i = 8
    while i < len(wasm):
        sid = wasm[i]
        size, i = leb(wasm, i + 1)
        end = i + size
        if sid == 11:  # data section
            count, j = leb(wasm, i)
            for _ in range(count):
                flags, j = leb(wasm, j)
                if flags == 1:  # passive
                    n, j = leb(wasm, j)
                    j += n
                    continue
                if flags == 2:
                    _, j = leb(wasm, j)
                if wasm[j] != 0x41:
                    raise SystemExit("unexpected data segment offset expression")
                offset, j = sleb(wasm, j + 1)
                j += 1  # end
                n, j = leb(wasm, j)
                k = wasm.find(MARKER, j, j + n)
                if k >= 0:
                    return offset + (k - j)
                j += n
        i = end
    raise SystemExit("the Go SDK's adapter arena was not found in the module (is sluice.dev/sdk/sluice imported?)")


def main():
    src, dst = sys.argv[1], sys.argv[2]
    wasm = open(src, "rb").read()
    start = (arena_address(wasm) + 15) & ~15
    limit = start + ARENA_SIZE - 64
    tools = os.environ.get("WASM_TOOLS", "wasm-tools")
    wat = subprocess.run([tools, "print", src], check=True, capture_output=True).stdout
    body = wat.rstrip()
    assert body.endswith(b")")
    func = f"""
  (global $sluice_arena_next (mut i32) (i32.const {start}))
  (func $sluice_cabi_realloc_adapter (param $old i32) (param $old_size i32) (param $align i32) (param $size i32) (result i32)
    (local $p i32)
    local.get $old
    if
      unreachable
    end
    global.get $sluice_arena_next
    local.get $align
    i32.add
    i32.const 1
    i32.sub
    i32.const 0
    local.get $align
    i32.sub
    i32.and
    local.tee $p
    local.get $size
    i32.add
    i32.const {limit}
    i32.gt_u
    if
      unreachable
    end
    local.get $p
    local.get $size
    i32.add
    global.set $sluice_arena_next
    local.get $p)
  (export "cabi_realloc_adapter" (func $sluice_cabi_realloc_adapter))
)
""".encode()
    patched = body[:-1] + func
    subprocess.run([tools, "parse", "-o", dst, "-"], input=patched, check=True)


if __name__ == "__main__":
    main()

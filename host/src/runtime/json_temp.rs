//! TEMP until s16-json merges: the host side of the `json` interface (issue 16) is implemented on
//! another branch. Until then a plugin that calls it traps with this message, so nothing passes
//! for a result. Delete this file (and its `mod` line) when s16-json is merged.

use super::bindings::sluice::plugin::json as wit_json;
use super::instance::PluginState;

const NOT_YET: &str = "the host's `json` interface is not in this build yet (TEMP until s16-json \
                       merges); the plugin called json.read or json.write";

impl wit_json::Host for PluginState {
    fn read(
        &mut self,
        _data: Vec<u8>,
        _docs: Vec<u32>,
        _paths: Vec<String>,
    ) -> wasmtime::Result<wit_json::Fields> {
        Err(wasmtime::Error::msg(NOT_YET))
    }

    fn write(
        &mut self,
        _data: Vec<u8>,
        _docs: Vec<u32>,
        _paths: Vec<String>,
        _edits: Vec<u32>,
        _text: Vec<u8>,
    ) -> wasmtime::Result<wit_json::Documents> {
        Err(wasmtime::Error::msg(NOT_YET))
    }
}

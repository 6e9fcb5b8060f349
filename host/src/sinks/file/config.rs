//! The configuration of a file output.

use std::path::PathBuf;

use serde::Deserialize;

/// A JSON-lines file to append a pipeline's records to.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileOutput {
    /// The file, created if missing and appended to; relative to the working directory.
    pub path: PathBuf,
}

impl FileOutput {
    /// Checks the fields; `Err((key, what is expected))`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if self.path.as_os_str().is_empty() {
            return Err((
                "path".into(),
                "expected a file to append to, e.g. \"out.jsonl\"".into(),
            ));
        }
        Ok(())
    }
}

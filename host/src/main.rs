use std::process::ExitCode;

fn main() -> ExitCode {
    match sluice::cli::main() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

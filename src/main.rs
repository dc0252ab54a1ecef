//! resnet-tui: train the residual networks of He et al. (2015) and watch them live.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use resnet_tui::cli::{Cli, run};

fn main() -> ExitCode {
    // candle attaches a backtrace to every error when RUST_BACKTRACE is set, and its text would
    // fill the status line and the error messages; panics keep theirs. RUST_LIB_BACKTRACE=1
    // brings candle's back.
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        // SAFETY: the first statement of main, before any other thread exists.
        unsafe { std::env::set_var("RUST_LIB_BACKTRACE", "0") };
    }
    // Keep freed memory instead of returning and re-faulting it every step (perf-notes).
    resnet_tui::kernels::keep_freed_memory();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            // After a lost terminal stderr may be dead: never panic on writing to it.
            let _ = writeln!(std::io::stderr(), "resnet-tui: error: {e:#}");
            ExitCode::from(resnet_tui::cli::EXIT_ERROR)
        }
    }
}

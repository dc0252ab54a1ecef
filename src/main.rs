//! resnet-tui: train the residual networks of He et al. (2015) and watch them live.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use resnet_tui::cli::{Cli, run};

fn main() -> ExitCode {
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

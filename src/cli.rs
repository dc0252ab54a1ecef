//! The command line: `train` (the default), `models`, `eval`, `bench`, `convert`.

mod bench;
mod commands;
mod detach;
mod headless;
mod report;
mod ten_crop;
mod train;
pub mod watch;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// Exit codes (documented in the README).
pub const EXIT_ERROR: u8 = 1;
pub const EXIT_CONFIG: u8 = 2;
/// A run stopped because its training kept turning non-finite (`train.on_nonfinite`).
pub const EXIT_DIVERGED: u8 = 3;
/// A run's final checkpoint could not be written: its newest saved state is older.
pub const EXIT_UNSAVED: u8 = 4;
/// The runs were stopped by SIGINT/SIGTERM after a final checkpoint (128 + SIGINT).
pub const EXIT_INTERRUPTED: u8 = 130;

#[derive(Debug, Parser)]
#[command(
    name = "resnet-tui",
    version,
    about = "Train deep residual networks and watch them live in the terminal"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Cmd>,
    #[command(flatten)]
    pub train: TrainArgs,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Train the runs of a config (the default command), with the live UI or headless.
    Train,
    /// List every architecture with its depth, blocks, parameters and mult-adds.
    Models {
        #[arg(long)]
        json: bool,
    },
    /// Loss and error of saved weights on the test split.
    Eval(EvalArgs),
    /// Training and evaluation images/s and peak memory of one model.
    Bench(bench::BenchArgs),
    /// The degradation tables of runs: final/best train and test error per run, per net over
    /// its seeds (best, mean +- std) beside the paper's Table 6, plain-vs-residual gaps.
    Report {
        /// Run directories (each with a metrics.jsonl).
        #[arg(required = true)]
        runs: Vec<PathBuf>,
        /// Also write the tables as Markdown to this file.
        #[arg(long, value_name = "FILE")]
        markdown: Option<PathBuf>,
        /// Also draw the paper's Figure 6 (error against iterations) from the runs as SVG.
        #[arg(long, value_name = "FILE.svg")]
        plot: Option<PathBuf>,
    },
    /// Open the UI on runs going on in other processes, here or on other machines: re-attach
    /// after `d` or a lost connection, or watch a whole shared runs directory. Leaving (q, Ctrl-C)
    /// never stops them.
    Watch {
        /// Run directories (each with a metrics.jsonl) or directories holding them (runs/);
        /// runs that start there later appear by themselves.
        #[arg(required = true)]
        runs: Vec<PathBuf>,
    },
    /// Convert a CIFAR binary directory to an image folder of PNGs (--to DIR), or to an HDF5
    /// file (--to FILE.h5) and back (HDF5 needs --features hdf5).
    Convert {
        /// A CIFAR binary directory or an .h5 file.
        #[arg(long)]
        from: PathBuf,
        /// A new (or empty) directory for the image folder (train/<class>/<n>.png,
        /// val/<class>/<n>.png), an .h5 file, or a CIFAR directory when --from is an .h5 file.
        #[arg(long)]
        to: PathBuf,
        /// The input is CIFAR-100 (train.bin/test.bin).
        #[arg(long)]
        cifar100: bool,
    },
}

#[derive(Debug, Clone, Args, Default)]
pub struct TrainArgs {
    /// The configuration file (default: ./config.toml, else the built-in default).
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// Override any key, e.g. --set train.max_steps=500 (repeatable).
    #[arg(long = "set", value_name = "SECTION.KEY=VALUE", global = true)]
    pub sets: Vec<String>,
    /// Run without the UI (automatic when stdout is not a terminal).
    #[arg(long, global = true)]
    pub headless: bool,
    /// Where run directories are created.
    #[arg(long, default_value = "runs", global = true)]
    pub runs_dir: PathBuf,
    /// Continue a run from a run directory or a checkpoint directory.
    #[arg(long, global = true)]
    pub resume: Option<PathBuf>,
    /// A device: auto, cpu, cuda:N (same as --set device=...).
    #[arg(long, global = true)]
    pub device: Option<String>,
    /// The GPUs device = "auto" spreads the runs over, e.g. 0,1,3 (same as --set devices=[...]).
    #[arg(long, global = true, value_delimiter = ',', value_name = "N,N...")]
    pub devices: Option<Vec<usize>>,
    /// A ready experiment from assets/experiments: degradation, quick, cifar-table6 (or a path).
    #[arg(long, global = true)]
    pub experiment: Option<String>,
    /// Train only these runs of the config, by name (e.g. --only resnet56,plain56): one task of
    /// a job array takes one net of a shared experiment file.
    #[arg(
        long,
        global = true,
        value_delimiter = ',',
        value_name = "NAME,NAME..."
    )]
    pub only: Option<Vec<String>>,
    /// The dataset directory or file (same as --set data.path=...).
    #[arg(long, global = true)]
    pub data: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct EvalArgs {
    #[arg(long)]
    pub model: String,
    #[arg(long)]
    pub weights: PathBuf,
    /// CIFAR-10 binary directory (or CIFAR-100 with --set data.source=cifar100), or an image
    /// folder (a directory with train/ and val/: its val/ split is evaluated).
    #[arg(long)]
    pub data: PathBuf,
    #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
    pub sets: Vec<String>,
    #[arg(long)]
    pub json: bool,
    /// The paper's 10-crop testing (image folders): softmax averaged over the 4 corner and the
    /// center crops of data.image_size, from the shorter side resized to data.eval_resize, and
    /// their flips; reports top-1 and top-5 error.
    #[arg(long)]
    pub ten_crop: bool,
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        None | Some(Cmd::Train) => train::train(cli.train),
        Some(Cmd::Models { json }) => commands::models(json),
        Some(Cmd::Eval(args)) => commands::eval(args),
        Some(Cmd::Bench(args)) => bench::bench(args),
        Some(Cmd::Report {
            runs,
            markdown,
            plot,
        }) => report::report(&runs, markdown.as_deref(), plot.as_deref()),
        Some(Cmd::Watch { runs }) => {
            let ui = train::load_config(&cli.train)
                .map(|r| r.runs[0].ui.clone())
                .unwrap_or_default();
            watch::watch(&runs, &ui)
        }
        Some(Cmd::Convert { from, to, cifar100 }) => commands::convert(&from, &to, cifar100),
    }
}

//! The training engine: one thread per run, driven by commands and reporting events over
//! crossbeam channels, with or without the terminal UI.

mod checkpoint;
pub mod control;
mod grads;
pub mod heartbeat;
mod metrics;
mod setup;
mod trainer;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, unbounded};

use crate::config::Config;
use crate::protocol::{Addressed, Command, Event, FinishReason, RunId, Target};

pub use checkpoint::{CheckpointError, CheckpointState, load_checkpoint, resolve_checkpoint};
pub use metrics::{MetricsRecord, read_metrics};
pub use setup::{
    DataCache, EngineError, cuda_device_count, describe_device as describe, place, select_device,
    split_threads,
};
pub use trainer::evaluate;

/// One run to start: its resolved settings and where it writes.
#[derive(Clone, Debug)]
pub struct RunPlan {
    pub id: RunId,
    pub config: Config,
    /// The run directory (`runs/<name>-<timestamp>/`), created by `start`.
    pub dir: PathBuf,
    /// A checkpoint directory to continue from.
    pub resume: Option<PathBuf>,
    /// No one watches a UI: `train.on_nonfinite = "auto"` rolls back instead of pausing.
    pub headless: bool,
}

/// The running runs: send them commands, receive their events, wait for them.
pub struct Engine {
    /// Every run's events, in arrival order.
    pub events: Receiver<Event>,
    commands: Sender<Addressed>,
    threads: Vec<JoinHandle<FinishReason>>,
    router: Option<JoinHandle<()>>,
}

impl Engine {
    /// Prepares every run (data, model, device: errors come back before any thread starts) and
    /// starts one thread per run. Runs with `device = "auto"` go round-robin over the GPUs (see
    /// [`place`]); runs that share the CPU split its compute threads between them.
    pub fn start(mut plans: Vec<RunPlan>) -> Result<Engine, EngineError> {
        let requested: Vec<String> = plans.iter().map(|p| p.config.device.clone()).collect();
        let allowed = plans
            .first()
            .map(|p| p.config.devices.clone())
            .unwrap_or_default();
        let placed =
            place(&requested, &allowed, cuda_device_count()).map_err(EngineError::Device)?;
        for (plan, device) in plans.iter_mut().zip(placed) {
            plan.config.device = device;
        }
        let (event_tx, events) = unbounded();
        let cache = DataCache::default();
        let mut prepared = Vec::new();
        for plan in plans {
            prepared.push(trainer::Trainer::prepare(plan, &cache, event_tx.clone())?);
        }
        let cpu_runs = prepared.iter().filter(|t| t.on_cpu()).count();
        let mut shares = split_threads(rayon::current_num_threads(), cpu_runs).into_iter();
        let mut run_txs = Vec::new();
        let mut threads = Vec::new();
        let mut beating = Vec::new();
        for t in prepared {
            // A run on the CPU runs on a thread of a compute pool of its own (all the threads,
            // or its share of them when there are several, so that they do not fight over the
            // same cores step by step): the thread that drives the step computes too, instead
            // of waking pool threads and sleeping for every op (10-12% of a resnet20 step).
            let pool = match t.on_cpu() {
                true => Some(run_pool(t.name(), shares.next().unwrap_or(1))?),
                false => None,
            };
            let (tx, rx) = unbounded::<Command>();
            run_txs.push(tx.clone());
            let name = format!("run-{}", t.name());
            let done = Arc::new(AtomicBool::new(false));
            let control = control::create(t.dir()).map_err(|e| EngineError::Setup {
                run: t.name().to_string(),
                message: format!("{}: {e}", t.dir().join(control::CONTROL_FILE).display()),
            })?;
            beating.push((t.dir().to_path_buf(), done.clone()));
            let flag = done.clone();
            let handle = std::thread::Builder::new()
                .name(name)
                // candle's backward recurses through the graph: resnet1202 needs a deep stack.
                .stack_size(RUN_STACK)
                .spawn(move || {
                    let reason = match pool {
                        Some(pool) => pool.install(|| t.run(rx)),
                        None => t.run(rx),
                    };
                    flag.store(true, Ordering::Relaxed);
                    reason
                })
                .map_err(|e| EngineError::Thread(e.to_string()))?;
            threads.push(handle);
            std::thread::Builder::new()
                .name("control".into())
                .spawn(move || control::follow(control, tx, done))
                .map_err(|e| EngineError::Thread(e.to_string()))?;
        }
        heartbeat::spawn(beating).map_err(|e| EngineError::Thread(e.to_string()))?;
        let (commands, command_rx) = unbounded::<Addressed>();
        let router = std::thread::Builder::new()
            .name("router".into())
            .spawn(move || route(command_rx, run_txs))
            .map_err(|e| EngineError::Thread(e.to_string()))?;
        Ok(Engine {
            events,
            commands,
            threads,
            router: Some(router),
        })
    }

    /// A sender for commands (for the UI, signal handlers, the command socket).
    pub fn commands(&self) -> Sender<Addressed> {
        self.commands.clone()
    }

    pub fn send(&self, target: Target, command: Command) {
        // The router only stops when every sender is gone, so this cannot fail while `self` lives.
        let _ = self.commands.send(Addressed { target, command });
    }

    /// How many runs were started.
    pub fn runs(&self) -> usize {
        self.threads.len()
    }

    /// Whether every run thread has ended.
    pub fn all_finished(&self) -> bool {
        self.threads.iter().all(|t| t.is_finished())
    }

    /// Waits for every run to end; each run's name and how it ended, in run order (a run whose
    /// thread panicked counts as failed).
    pub fn join(mut self) -> Vec<(String, FinishReason)> {
        let reasons = self
            .threads
            .drain(..)
            .map(|t| {
                let name = t.thread().name().and_then(|n| n.strip_prefix("run-"));
                let name = name.unwrap_or("?").to_string();
                (name, t.join().unwrap_or(FinishReason::Failed))
            })
            .collect();
        // The router is not joined: the signal handler keeps a command sender for the life of
        // the process, so the router only ends with it. It holds no data that needs flushing.
        drop(self.router.take());
        reasons
    }
}

/// The stack of a run's thread: candle's backward recurses through the graph, and resnet1202
/// needs a deep one.
const RUN_STACK: usize = 64 << 20;

/// The compute pool of a run on the CPU (`bench` times its step in one too).
pub fn run_pool(name: &str, threads: usize) -> Result<rayon::ThreadPool, EngineError> {
    let prefix = name.to_string();
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .stack_size(RUN_STACK)
        .thread_name(move |i| format!("{prefix}-{i}"))
        .build()
        .map_err(|e| EngineError::Thread(e.to_string()))
}

/// Forwards addressed commands to the runs they are for.
fn route(commands: Receiver<Addressed>, runs: Vec<Sender<Command>>) {
    let runs = Arc::new(runs);
    for a in commands {
        match a.target {
            Target::All => {
                for r in runs.iter() {
                    let _ = r.send(a.command.clone());
                }
            }
            Target::Run(i) => {
                if let Some(r) = runs.get(i) {
                    let _ = r.send(a.command);
                }
            }
        }
    }
}

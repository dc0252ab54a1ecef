//! resnet-tui: trains the residual networks of He et al., *Deep Residual Learning for Image
//! Recognition* (2015), in background threads with candle, and shows the runs live in the
//! terminal. The engine and the UI meet only in [`protocol`].

pub mod cli;
pub mod config;
pub mod data;
pub mod engine;
pub mod kernels;
pub mod model;
pub mod ops;
pub mod optim;
pub mod protocol;
pub mod rng;
pub mod schedule;
pub mod ui;

//! The terminal UI: watch runs live and steer them by key. Knows only [`crate::protocol`],
//! ratatui and crossterm, never the engine or candle.
//!
//! Elm-style: [`App`] is the state, [`App::update`] turns a [`Msg`] into at most one command for
//! the runs, [`draw`] is a pure function of the state, and [`Msg::from_key`] maps keys to
//! messages. [`run`] wires these to a real terminal.

mod app;
mod charts;
mod degradation;
pub mod demo;
mod draw;
mod grads;
mod history;
mod ingest;
mod keys;
mod lr;
mod overlays;
mod state;
mod terminal;
mod theme;

pub use app::{App, InputMode, Note, NoteLevel, Panel};
pub use degradation::finding;
pub use draw::{MIN_HEIGHT, MIN_WIDTH, draw};
pub use history::{History, Sample};
pub use keys::Msg;
pub use state::{GradSnap, RunState, RunView};
pub use terminal::{restore_terminal, run};

/// How points of the charts are drawn: braille dots where the font has them, else half blocks,
/// else plain ASCII (which also swaps every line-drawing glyph for ASCII).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Markers {
    Braille,
    Block,
    Ascii,
}

impl Markers {
    /// Parses the config's `ui.markers` ("braille", "block" or "ascii"); anything else is ASCII,
    /// the choice that shows on every terminal.
    pub fn parse(name: &str) -> Markers {
        match name.trim().to_ascii_lowercase().as_str() {
            "braille" => Markers::Braille,
            "block" => Markers::Block,
            _ => Markers::Ascii,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct UiConfig {
    /// Redraws per second at most.
    pub fps: u32,
    /// LR factor of `+`.
    pub lr_up: f64,
    /// LR factor of `-`.
    pub lr_down: f64,
    /// EMA smoothing of the training curves in [0, 1); 0 = off.
    pub smoothing: f64,
    pub markers: Markers,
    /// Colour at all; only the 16 basic ANSI colours are ever used, so 16-colour terminals work.
    pub color: bool,
    /// A viewer of runs that live in other processes (`watch`): leaving it (q, Ctrl-C, d) never
    /// stops them; stopping them is an explicit choice in its quit dialog.
    pub viewer: bool,
}

impl Default for UiConfig {
    fn default() -> UiConfig {
        UiConfig {
            fps: 10,
            lr_up: 2.0,
            lr_down: 0.5,
            smoothing: 0.6,
            markers: Markers::Braille,
            color: true,
            viewer: false,
        }
    }
}

impl UiConfig {
    /// From the config's `[ui]` table; colour follows the environment (see [`color_from_env`]).
    pub fn from_settings(
        fps: u32,
        lr_up: f64,
        lr_down: f64,
        smoothing: f64,
        markers: &str,
    ) -> UiConfig {
        UiConfig {
            fps: fps.max(1),
            lr_up,
            lr_down,
            smoothing: smoothing.clamp(0.0, 0.999),
            markers: Markers::parse(markers),
            color: color_from_env(|k| std::env::var(k).ok()),
            viewer: false,
        }
    }
}

/// Colour unless `NO_COLOR` is set to anything non-empty (no-color.org), or `TERM` names a
/// terminal with 16 colours or fewer (crossterm writes even the basic colours as 256-colour
/// escapes, which those may not understand) and `COLORTERM` does not say otherwise.
pub fn color_from_env(var: impl Fn(&str) -> Option<String>) -> bool {
    const FEW_COLOURS: [&str; 8] = [
        "dumb", "linux", "vt100", "vt102", "vt220", "ansi", "cons25", "sun",
    ];
    if var("NO_COLOR").is_some_and(|v| !v.is_empty()) {
        return false;
    }
    let term = var("TERM").unwrap_or_default();
    let few = term.ends_with("16color")
        || term.ends_with("-8color")
        || FEW_COLOURS.contains(&term.as_str());
    !few || var("COLORTERM").is_some_and(|v| !v.is_empty())
}

/// How the UI ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UiExit {
    /// The user quit and asked the runs to stop without a checkpoint.
    Quit,
    /// The user quit and asked the runs to stop with a final checkpoint.
    QuitWithCheckpoint,
    /// Ctrl-C (a key in raw mode): the runs stop with a final checkpoint, as on SIGINT.
    Interrupted,
    /// The terminal went away; the runs go on.
    Detached,
    /// The user asked to leave the runs going (`d`, or q / Ctrl-C in a viewer).
    Detach,
    /// The user quit after every run had finished.
    AllFinished,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_color_set_to_anything_turns_colour_off() {
        assert!(!color_from_env(|k| (k == "NO_COLOR").then(|| "1".into())));
        assert!(color_from_env(|k| (k == "NO_COLOR").then(String::new)));
        assert!(color_from_env(|_| None));
        assert!(!color_from_env(|k| (k == "TERM").then(|| "dumb".into())));
    }

    #[test]
    fn sixteen_colour_terminals_get_no_colour_unless_colorterm_says_more() {
        assert!(!color_from_env(|k| (k == "TERM").then(|| "linux".into())));
        assert!(!color_from_env(
            |k| (k == "TERM").then(|| "xterm-16color".into())
        ));
        assert!(color_from_env(
            |k| (k == "TERM").then(|| "xterm-256color".into())
        ));
        let truecolor_console = |k: &str| match k {
            "TERM" => Some("linux".into()),
            "COLORTERM" => Some("truecolor".into()),
            _ => None,
        };
        assert!(color_from_env(truecolor_console));
    }

    #[test]
    fn markers_parse_from_the_config_names() {
        assert_eq!(Markers::parse("braille"), Markers::Braille);
        assert_eq!(Markers::parse("Block"), Markers::Block);
        assert_eq!(Markers::parse("ascii"), Markers::Ascii);
    }
}

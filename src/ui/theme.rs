//! Colours, glyphs and the ASCII fallback, all decided by the config in one place.

use ratatui::buffer::Buffer;
use ratatui::style::{Color, Modifier, Style};
use ratatui::symbols::{Marker, border};

use super::{Markers, UiConfig};

/// Run colours: only the basic ANSI ones, so 16-colour terminals show them as meant.
const RUN_COLORS: [Color; 6] = [
    Color::Cyan,
    Color::Yellow,
    Color::Magenta,
    Color::Green,
    Color::Blue,
    Color::Red,
];

/// ASCII borders for terminals without line-drawing glyphs.
const ASCII_BORDER: border::Set = border::Set {
    top_left: "+",
    top_right: "+",
    bottom_left: "+",
    bottom_right: "+",
    vertical_left: "|",
    vertical_right: "|",
    horizontal_top: "-",
    horizontal_bottom: "-",
};

#[derive(Clone, Copy, Debug)]
pub struct Theme {
    pub color: bool,
    pub markers: Markers,
}

impl Theme {
    pub fn new(cfg: &UiConfig) -> Theme {
        Theme {
            color: cfg.color,
            markers: cfg.markers,
        }
    }

    /// A foreground colour, or nothing without colour.
    pub fn fg(&self, color: Color) -> Style {
        if self.color {
            Style::new().fg(color)
        } else {
            Style::new()
        }
    }

    /// The style of run number `i`; without colour the selected run is bold and the rest plain.
    pub fn run(&self, i: usize, selected: bool) -> Style {
        if self.color {
            let s = Style::new().fg(RUN_COLORS[i % RUN_COLORS.len()]);
            if selected {
                s.add_modifier(Modifier::BOLD)
            } else {
                s
            }
        } else if selected {
            Style::new().add_modifier(Modifier::BOLD)
        } else {
            Style::new().add_modifier(Modifier::DIM)
        }
    }

    pub fn dim(&self) -> Style {
        if self.color {
            Style::new().fg(Color::DarkGray)
        } else {
            Style::new().add_modifier(Modifier::DIM)
        }
    }

    pub fn bold(&self) -> Style {
        Style::new().add_modifier(Modifier::BOLD)
    }

    pub fn warn(&self) -> Style {
        self.fg(Color::Yellow).add_modifier(Modifier::BOLD)
    }

    pub fn alert(&self) -> Style {
        if self.color {
            Style::new()
                .fg(Color::White)
                .bg(Color::Red)
                .add_modifier(Modifier::BOLD)
        } else {
            Style::new().add_modifier(Modifier::REVERSED | Modifier::BOLD)
        }
    }

    /// The border of the focused panel.
    pub fn focus(&self) -> Style {
        self.fg(Color::Cyan).add_modifier(Modifier::BOLD)
    }

    pub fn marker(&self) -> Marker {
        match self.markers {
            Markers::Braille => Marker::Braille,
            Markers::Block => Marker::HalfBlock,
            Markers::Ascii => Marker::Custom('*'),
        }
    }

    pub fn border(&self) -> border::Set<'static> {
        if self.markers == Markers::Ascii {
            ASCII_BORDER
        } else {
            border::PLAIN
        }
    }

    /// Shade glyphs for 0..=4 of intensity.
    pub fn shades(&self) -> [&'static str; 5] {
        if self.markers == Markers::Ascii {
            [" ", ".", ":", "*", "#"]
        } else {
            [" ", "░", "▒", "▓", "█"]
        }
    }

    /// Heat colours for 0..=4 of intensity (cold to hot).
    pub fn heat(&self, level: usize) -> Style {
        const HEAT: [Color; 5] = [
            Color::Blue,
            Color::Cyan,
            Color::Green,
            Color::Yellow,
            Color::Red,
        ];
        self.fg(HEAT[level.min(4)])
    }
}

/// Replaces every non-ASCII glyph left in `buf` (chart axes, bar eighths, arrows) by an ASCII one.
pub fn asciify(buf: &mut Buffer) {
    for cell in &mut buf.content {
        let sym = cell.symbol();
        if sym.is_ascii() {
            continue;
        }
        let ascii = match sym.chars().next().unwrap_or(' ') {
            '│' | '┃' | '║' => "|",
            '─' | '━' | '═' | '…' => "-",
            '┌' | '┐' | '└' | '┘' | '├' | '┤' | '┬' | '┴' | '┼' => "+",
            '▁' | '▂' | '▃' => "_",
            '▄' | '▅' | '▆' | '▇' | '█' | '▀' | '▌' | '▐' => "#",
            '░' => ".",
            '▒' => ":",
            '▓' => "*",
            '←' => "<",
            '→' => ">",
            '↑' => "^",
            '↓' => "v",
            '×' => "x",
            '·' | '•' => ".",
            '▶' => ">",
            c if ('\u{2800}'..='\u{28ff}').contains(&c) => "*",
            _ => "?",
        };
        cell.set_symbol(ascii);
    }
}

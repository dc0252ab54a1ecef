//! The procedural shapes and textures the synthetic classes are drawn from. Each is a field of
//! coverage in [0, 1] over the 32x32 pixel grid, with all its nuisance parameters drawn at random.

use std::f32::consts::PI;

use crate::rng::Rng;

/// A smooth periodic wave in [0, 1] with period 1 (a cheap stand-in for 0.5 + 0.5 cos 2πt).
#[inline]
fn wave(t: f32) -> f32 {
    let g = (2.0 * (t - t.floor()) - 1.0).abs();
    g * g * (3.0 - 2.0 * g)
}

/// 1 inside (`d` < 0), 0 outside, a one-pixel soft edge between.
#[inline]
fn inside(d: f32) -> f32 {
    (0.5 - d).clamp(0.0, 1.0)
}

/// A rotation by `deg` degrees about (cx, cy).
#[derive(Debug, Clone, Copy)]
pub(super) struct Frame {
    cx: f32,
    cy: f32,
    cos: f32,
    sin: f32,
}

impl Frame {
    fn new(cx: f32, cy: f32, deg: f32) -> Frame {
        let a = deg * PI / 180.0;
        Frame {
            cx,
            cy,
            cos: a.cos(),
            sin: a.sin(),
        }
    }

    /// Coordinates along and across the frame's direction.
    #[inline]
    fn uv(&self, x: f32, y: f32) -> (f32, f32) {
        let (dx, dy) = (x - self.cx, y - self.cy);
        (
            dx * self.cos + dy * self.sin,
            -dx * self.sin + dy * self.cos,
        )
    }
}

/// Where a texture shows: a soft-edged rectangle of random size and place, or the whole image.
#[derive(Debug, Clone, Copy)]
pub(super) struct Window {
    x0: f32,
    x1: f32,
    y0: f32,
    y1: f32,
}

impl Window {
    fn draw(r: &mut Rng) -> Window {
        let (w, h) = (r.range(14.0, 40.0), r.range(14.0, 40.0));
        let (x0, y0) = (r.range(-8.0, 32.0 - w + 8.0), r.range(-8.0, 32.0 - h + 8.0));
        Window {
            x0,
            x1: x0 + w,
            y0,
            y1: y0 + h,
        }
    }

    #[inline]
    fn at(&self, x: f32, y: f32) -> f32 {
        let d = (self.x0 - x)
            .max(x - self.x1)
            .max(self.y0 - y)
            .max(y - self.y1);
        (0.5 - d * 0.25).clamp(0.0, 1.0)
    }
}

#[derive(Debug, Clone)]
pub(super) enum Pattern {
    Stripes {
        f: Frame,
        freq: f32,
        phase: f32,
        win: Window,
    },
    Rings {
        cx: f32,
        cy: f32,
        freq: f32,
        phase: f32,
        win: Window,
    },
    Checker {
        f: Frame,
        freq: f32,
        win: Window,
    },
    Dots {
        f: Frame,
        period: f32,
        radius: f32,
        win: Window,
    },
    Disc {
        cx: f32,
        cy: f32,
        r: f32,
    },
    Square {
        f: Frame,
        half: f32,
        hole: f32,
    },
    Cross {
        f: Frame,
        arm: f32,
        width: f32,
    },
    Spots {
        spots: [(f32, f32, f32); 7],
    },
}

fn texture_freq(r: &mut Rng) -> f32 {
    1.0 / r.range(3.2, 11.0)
}

fn centre(r: &mut Rng, margin: f32) -> (f32, f32) {
    (
        r.range(margin, 31.0 - margin),
        r.range(margin, 31.0 - margin),
    )
}

impl Pattern {
    /// A random member of class `class` (0..10; see `SYNTHETIC_CLASSES`).
    pub(super) fn draw(class: usize, r: &mut Rng) -> Pattern {
        let sign = if r.coin() { 1.0 } else { -1.0 };
        match class {
            // Stripe directions overlap at the band edges on purpose (22-28 and 62-68 degrees).
            0..=2 => {
                let deg = match class {
                    0 => r.range(-28.0, 28.0),
                    1 => 90.0 + r.range(-28.0, 28.0),
                    _ => sign * r.range(22.0, 68.0),
                };
                Pattern::Stripes {
                    f: Frame::new(16.0, 16.0, deg + 90.0),
                    freq: texture_freq(r),
                    phase: r.unit(),
                    win: Window::draw(r),
                }
            }
            3 => {
                let (cx, cy) = (r.range(-4.0, 36.0), r.range(-4.0, 36.0));
                Pattern::Rings {
                    cx,
                    cy,
                    freq: texture_freq(r),
                    phase: r.unit(),
                    win: Window::draw(r),
                }
            }
            4 => Pattern::Checker {
                f: Frame::new(r.range(0.0, 32.0), r.range(0.0, 32.0), r.range(-30.0, 30.0)),
                freq: 0.5 / r.range(2.5, 7.0),
                win: Window::draw(r),
            },
            5 => Pattern::Dots {
                f: Frame::new(r.range(0.0, 32.0), r.range(0.0, 32.0), r.range(-45.0, 45.0)),
                period: r.range(4.5, 10.0),
                radius: r.range(0.18, 0.34),
                win: Window::draw(r),
            },
            6 => {
                let (cx, cy) = centre(r, 6.0);
                Pattern::Disc {
                    cx,
                    cy,
                    r: r.range(4.0, 12.0),
                }
            }
            7 => {
                let (cx, cy) = centre(r, 6.0);
                let half = r.range(4.0, 11.0);
                Pattern::Square {
                    f: Frame::new(cx, cy, r.range(-35.0, 35.0)),
                    half,
                    hole: if r.coin() {
                        half - r.range(1.5, 3.5)
                    } else {
                        0.0
                    },
                }
            }
            8 => {
                let (cx, cy) = centre(r, 7.0);
                Pattern::Cross {
                    f: Frame::new(cx, cy, r.range(-25.0, 25.0)),
                    arm: r.range(6.0, 14.0),
                    width: r.range(1.0, 2.5),
                }
            }
            _ => {
                let mut spots = [(0.0, 0.0, 0.0); 7];
                let count = 3 + r.below(5) as usize;
                for s in spots.iter_mut().take(count) {
                    *s = (r.range(2.0, 30.0), r.range(2.0, 30.0), r.range(1.5, 4.0));
                }
                Pattern::Spots { spots }
            }
        }
    }

    /// Coverage of pixel (x, y) in [0, 1].
    #[inline]
    pub(super) fn at(&self, x: f32, y: f32) -> f32 {
        match self {
            Pattern::Stripes {
                f,
                freq,
                phase,
                win,
            } => {
                let (u, _) = f.uv(x, y);
                wave(u * freq + phase) * win.at(x, y)
            }
            Pattern::Rings {
                cx,
                cy,
                freq,
                phase,
                win,
            } => {
                let d = ((x - cx) * (x - cx) + (y - cy) * (y - cy)).sqrt();
                wave(d * freq + phase) * win.at(x, y)
            }
            Pattern::Checker { f, freq, win } => {
                let (u, v) = f.uv(x, y);
                let (a, b) = (wave(u * freq) - 0.5, wave(v * freq) - 0.5);
                let c = (a * b * 16.0).clamp(-0.5, 0.5) + 0.5;
                c * win.at(x, y)
            }
            Pattern::Dots {
                f,
                period,
                radius,
                win,
            } => {
                let (u, v) = f.uv(x, y);
                let (a, b) = (u / period, v / period);
                let (a, b) = (a - a.round(), b - b.round());
                let d = ((a * a + b * b).sqrt() - radius) * period;
                inside(d) * win.at(x, y)
            }
            Pattern::Disc { cx, cy, r } => {
                inside(((x - cx) * (x - cx) + (y - cy) * (y - cy)).sqrt() - r)
            }
            Pattern::Square { f, half, hole } => {
                let (u, v) = f.uv(x, y);
                let m = u.abs().max(v.abs());
                let ring = if *hole > 0.0 {
                    1.0 - inside(m - hole)
                } else {
                    1.0
                };
                inside(m - half) * ring
            }
            Pattern::Cross { f, arm, width } => {
                let (u, v) = f.uv(x, y);
                let (u, v) = (u.abs(), v.abs());
                let bar = |a: f32, b: f32| inside((a - width).max(b - arm));
                bar(u, v).max(bar(v, u))
            }
            Pattern::Spots { spots } => spots
                .iter()
                .filter(|s| s.2 > 0.0)
                .map(|&(sx, sy, sr)| {
                    inside(((x - sx) * (x - sx) + (y - sy) * (y - sy)).sqrt() - sr)
                })
                .fold(0.0, f32::max),
        }
    }
}

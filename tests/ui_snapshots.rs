//! Whole-screen snapshots of the UI at 80x24 and 160x48 (ratatui TestBackend + insta).

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use resnet_tui::protocol::{Event, LrSource, PauseReason};
use resnet_tui::ui::{App, Markers, Msg, Panel, UiConfig, demo, draw};

const SIZES: [(u16, u16); 2] = [(80, 24), (160, 48)];

fn config() -> UiConfig {
    UiConfig {
        color: false,
        markers: Markers::Braille,
        ..UiConfig::default()
    }
}

fn feed(app: &mut App, events: impl IntoIterator<Item = Event>) {
    for e in events {
        app.update(Msg::Event(e));
    }
}

fn key(app: &mut App, code: KeyCode) {
    app.update(Msg::Key(KeyEvent::new(code, KeyModifiers::NONE)));
}

fn screen(app: &App, (w, h): (u16, u16)) -> String {
    let mut terminal = Terminal::new(TestBackend::new(w, h)).expect("a test terminal");
    terminal
        .draw(|f| draw(f, app))
        .expect("drawing never fails");
    terminal.backend().to_string()
}

/// resnet56 after 3000 steps, with a checkpoint and a manual LR change.
fn with_history() -> App {
    let mut app = App::new(config());
    let info = demo::run_info(0, 56, false, 6000);
    feed(&mut app, demo::events(&info, 3000, 10));
    feed(
        &mut app,
        [
            Event::CheckpointSaved {
                run: 0,
                step: 2000,
                path: "runs/demo/0/ckpt-2000".into(),
                bytes: 3_400_000,
                seconds: 0.2,
            },
            Event::LrChanged {
                run: 0,
                step: 2500,
                old: 0.1,
                new: 0.05,
                source: LrSource::Manual,
            },
        ],
    );
    app
}

fn four_runs() -> App {
    let mut app = App::new(config());
    feed(&mut app, demo::degradation(3000, 6000, 10));
    app.update(Msg::SelectPanel(3));
    app
}

fn snapshots(name: &str, app: &App) {
    for size in SIZES {
        insta::assert_snapshot!(format!("{name}_{}x{}", size.0, size.1), screen(app, size));
    }
}

#[test]
fn a_fresh_run_shows_its_status_and_empty_panels() {
    let mut app = App::new(config());
    feed(
        &mut app,
        [Event::Started(demo::run_info(0, 20, false, 64_000))],
    );
    snapshots("fresh", &app);
}

#[test]
fn a_run_with_history_shows_curves_gradients_and_lr() {
    snapshots("history", &with_history());
}

#[test]
fn the_gradient_panel_shows_bars_and_heatmap_at_80x24() {
    let mut app = with_history();
    app.update(Msg::SelectPanel(1));
    insta::assert_snapshot!("grads_80x24", screen(&app, (80, 24)));
    app.update(Msg::SelectPanel(2));
    insta::assert_snapshot!("lr_80x24", screen(&app, (80, 24)));
}

#[test]
fn a_paused_run_says_paused() {
    let mut app = with_history();
    feed(
        &mut app,
        [Event::Paused {
            run: 0,
            step: 3000,
            reason: PauseReason::User,
        }],
    );
    snapshots("paused", &app);
}

#[test]
fn a_non_finite_loss_raises_an_alert() {
    let mut app = with_history();
    feed(
        &mut app,
        [
            Event::NonFinite {
                run: 0,
                step: 3001,
                what: "loss".into(),
            },
            Event::Paused {
                run: 0,
                step: 3001,
                reason: PauseReason::NonFinite,
            },
        ],
    );
    snapshots("nan_alert", &app);
}

#[test]
fn question_mark_opens_the_help_overlay() {
    let mut app = with_history();
    key(&mut app, KeyCode::Char('?'));
    snapshots("help", &app);
}

#[test]
fn l_opens_the_lr_prompt_and_shows_what_was_typed() {
    let mut app = with_history();
    key(&mut app, KeyCode::Char('l'));
    for c in "0.05".chars() {
        key(&mut app, KeyCode::Char(c));
    }
    snapshots("lr_prompt", &app);
}

#[test]
fn the_lr_prompt_explains_a_rejected_value() {
    let mut app = with_history();
    key(&mut app, KeyCode::Char('l'));
    key(&mut app, KeyCode::Char('x'));
    key(&mut app, KeyCode::Enter);
    insta::assert_snapshot!("lr_prompt_rejected_80x24", screen(&app, (80, 24)));
}

#[test]
fn q_asks_how_to_stop_the_runs() {
    let mut app = with_history();
    key(&mut app, KeyCode::Char('q'));
    insta::assert_snapshot!("quit_80x24", screen(&app, (80, 24)));
}

#[test]
fn the_degradation_view_overlays_four_runs_and_states_the_finding() {
    snapshots("degradation", &four_runs());
}

#[test]
fn four_runs_on_the_curves_panel() {
    let mut app = four_runs();
    app.update(Msg::SelectPanel(0));
    assert_eq!(app.panel, Panel::Curves);
    snapshots("four_runs", &app);
}

#[test]
fn a_terminal_too_small_says_what_it_needs() {
    let app = with_history();
    insta::assert_snapshot!("too_small_60x20", screen(&app, (60, 20)));
    insta::assert_snapshot!("too_small_79x24", screen(&app, (79, 24)));
}

#[test]
fn ascii_markers_leave_no_unicode_on_screen() {
    let mut app = with_history();
    app.cfg.markers = Markers::Ascii;
    let text = screen(&app, (80, 24));
    assert!(text.is_ascii(), "{text}");
    insta::assert_snapshot!("ascii_80x24", text);
}

#[test]
fn every_panel_draws_at_odd_sizes_without_panicking() {
    let mut app = four_runs();
    for panel in 0..4 {
        app.update(Msg::SelectPanel(panel));
        for size in [
            (80, 24),
            (81, 25),
            (120, 30),
            (139, 45),
            (200, 60),
            (300, 100),
            (1, 1),
            (2, 80),
        ] {
            screen(&app, size);
        }
    }
}

#[test]
fn more_runs_than_status_rows_say_which_are_shown_and_follow_the_selection() {
    let mut app = App::new(config());
    for id in 0..6 {
        feed(
            &mut app,
            [Event::Started(demo::run_info(id, 20 + 6 * id, false, 1000))],
        );
    }
    app.selected = 0;
    let text = screen(&app, (80, 24));
    assert!(text.contains("1-4/6"), "{text}");
    app.selected = 5;
    let text = screen(&app, (80, 24));
    assert!(
        text.contains("3-6/6") && text.contains("resnet50"),
        "{text}"
    );
    // All of them fit on a tall terminal: no range.
    assert!(!screen(&app, (160, 48)).contains("/6 "));
}

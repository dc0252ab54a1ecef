//! Keys to messages and update(): each key sends the right command to the selected run or to
//! all runs, and every command and event is acknowledged on screen.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use resnet_tui::protocol::{Addressed, Command, Event, LrSource, PauseReason, Target};
use resnet_tui::ui::{App, InputMode, Msg, Panel, UiConfig, UiExit, demo};

fn press(app: &mut App, code: KeyCode) -> Option<Addressed> {
    app.update(Msg::Key(KeyEvent::new(code, KeyModifiers::NONE)))
}

fn chr(app: &mut App, c: char) -> Option<Addressed> {
    press(app, KeyCode::Char(c))
}

/// Two started runs (resnet20 as run 0, resnet56 as run 1) with a few steps each; run 1 selected.
fn two_runs() -> App {
    let mut app = App::new(UiConfig::default());
    for (id, depth) in [(0, 20), (1, 56)] {
        for e in demo::events(&demo::run_info(id, depth, false, 1000), 50, 10) {
            app.update(Msg::Event(e));
        }
    }
    chr(&mut app, 'j');
    assert_eq!(app.selected_run().unwrap().info.name, "resnet56");
    app
}

fn to(target: Target, command: Command) -> Option<Addressed> {
    Some(Addressed { target, command })
}

fn last_note(app: &App) -> String {
    app.notes.back().map(|n| n.text.clone()).unwrap_or_default()
}

#[test]
fn each_command_key_addresses_the_selected_run() {
    let one = Target::Run(1);
    let cases = [
        ('s', Command::Checkpoint),
        ('+', Command::ScaleLr(2.0)),
        ('-', Command::ScaleLr(0.5)),
        ('b', Command::BackToSchedule),
        ('e', Command::Evaluate),
        ('r', Command::Rollback { lr_factor: 0.5 }),
        (' ', Command::Pause),
        ('p', Command::Pause),
    ];
    for (key, command) in cases {
        let mut app = two_runs();
        assert_eq!(chr(&mut app, key), to(one, command.clone()), "key {key:?}");
        assert!(
            last_note(&app).ends_with("sent to resnet56"),
            "key {key:?}: {}",
            last_note(&app)
        );
    }
}

#[test]
fn a_toggles_every_command_to_all_runs_and_back() {
    let mut app = two_runs();
    chr(&mut app, 'a');
    assert_eq!(last_note(&app), "commands now go to all runs");
    assert_eq!(chr(&mut app, 's'), to(Target::All, Command::Checkpoint));
    assert_eq!(chr(&mut app, '-'), to(Target::All, Command::ScaleLr(0.5)));
    assert_eq!(chr(&mut app, ' '), to(Target::All, Command::Pause));
    assert_eq!(last_note(&app), "pause sent to all runs");
    chr(&mut app, 'a');
    assert_eq!(chr(&mut app, 'e'), to(Target::Run(1), Command::Evaluate));
}

#[test]
fn the_lr_factors_come_from_the_config() {
    let mut app = App::new(UiConfig {
        lr_up: 10.0,
        lr_down: 0.1,
        ..UiConfig::default()
    });
    app.update(Msg::Event(Event::Started(demo::run_info(0, 20, true, 100))));
    assert_eq!(
        chr(&mut app, '+'),
        to(Target::Run(0), Command::ScaleLr(10.0))
    );
    assert_eq!(
        chr(&mut app, '-'),
        to(Target::Run(0), Command::ScaleLr(0.1))
    );
}

#[test]
fn space_resumes_a_paused_run_and_all_runs_resume_when_none_runs() {
    let mut app = two_runs();
    app.update(Msg::Event(Event::Paused {
        run: 1,
        step: 50,
        reason: PauseReason::User,
    }));
    assert_eq!(last_note(&app), "resnet56 paused at step 50");
    assert_eq!(chr(&mut app, ' '), to(Target::Run(1), Command::Resume));
    chr(&mut app, 'a');
    assert_eq!(
        chr(&mut app, ' '),
        to(Target::All, Command::Pause),
        "run 0 still runs"
    );
    app.update(Msg::Event(Event::Paused {
        run: 0,
        step: 50,
        reason: PauseReason::User,
    }));
    assert_eq!(chr(&mut app, ' '), to(Target::All, Command::Resume));
}

#[test]
fn the_lr_prompt_sends_an_exact_positive_lr() {
    let mut app = two_runs();
    assert_eq!(chr(&mut app, 'l'), None);
    assert_eq!(app.mode, InputMode::LrPrompt(String::new()));
    for c in "0.0x".chars() {
        chr(&mut app, c);
    }
    press(&mut app, KeyCode::Backspace);
    chr(&mut app, '5');
    assert_eq!(
        press(&mut app, KeyCode::Enter),
        to(Target::Run(1), Command::SetLr(0.05))
    );
    assert_eq!(app.mode, InputMode::Normal);
}

#[test]
fn the_lr_prompt_rejects_what_is_not_a_positive_finite_number() {
    for bad in ["abc", "-0.1", "0", "inf", "NaN", ""] {
        let mut app = two_runs();
        chr(&mut app, 'l');
        for c in bad.chars() {
            chr(&mut app, c);
        }
        assert_eq!(
            press(&mut app, KeyCode::Enter),
            None,
            "{bad:?} was accepted"
        );
        assert!(
            last_note(&app).starts_with("not a learning rate"),
            "{bad:?}: {}",
            last_note(&app)
        );
        assert!(
            matches!(app.mode, InputMode::LrPrompt(_)),
            "the prompt stays open for {bad:?}"
        );
    }
}

#[test]
fn esc_cancels_the_prompt_without_a_command() {
    let mut app = two_runs();
    chr(&mut app, 'l');
    chr(&mut app, '1');
    assert_eq!(press(&mut app, KeyCode::Esc), None);
    assert_eq!(app.mode, InputMode::Normal);
}

#[test]
fn keys_typed_into_the_prompt_are_not_commands() {
    let mut app = two_runs();
    chr(&mut app, 'l');
    for c in ['s', 'q', ' ', 'p', 'e'] {
        assert_eq!(chr(&mut app, c), None, "{c:?} acted inside the prompt");
    }
    assert_eq!(app.exit, None);
}

#[test]
fn q_asks_first_and_c_stops_all_runs_with_a_checkpoint() {
    let mut app = two_runs();
    assert_eq!(chr(&mut app, 'q'), None);
    assert_eq!(app.mode, InputMode::ConfirmQuit);
    assert_eq!(app.exit, None);
    assert_eq!(
        chr(&mut app, 'c'),
        to(Target::All, Command::Stop { checkpoint: true })
    );
    assert_eq!(app.exit, Some(UiExit::QuitWithCheckpoint));
}

#[test]
fn q_then_y_stops_without_a_checkpoint_and_esc_keeps_training() {
    let mut app = two_runs();
    chr(&mut app, 'q');
    assert_eq!(press(&mut app, KeyCode::Esc), None);
    assert_eq!((app.exit, &app.mode), (None, &InputMode::Normal));
    chr(&mut app, 'q');
    assert_eq!(
        chr(&mut app, 'y'),
        to(Target::All, Command::Stop { checkpoint: false })
    );
    assert_eq!(app.exit, Some(UiExit::Quit));
}

#[test]
fn ctrl_c_stops_all_runs_with_a_checkpoint_at_once_in_any_mode() {
    for open in [None, Some('l'), Some('?'), Some('q')] {
        let mut app = two_runs();
        if let Some(c) = open {
            chr(&mut app, c);
        }
        let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert_eq!(
            app.update(Msg::Key(ctrl_c)),
            to(Target::All, Command::Stop { checkpoint: true })
        );
        assert_eq!(app.exit, Some(UiExit::Interrupted));
    }
}

#[test]
fn q_leaves_at_once_when_every_run_has_finished() {
    let mut app = two_runs();
    for run in [0, 1] {
        let reason = resnet_tui::protocol::FinishReason::Completed;
        app.update(Msg::Event(Event::Finished {
            run,
            step: 1000,
            reason,
        }));
    }
    assert_eq!(chr(&mut app, 'q'), None);
    assert_eq!(app.exit, Some(UiExit::AllFinished));
}

#[test]
fn view_keys_change_the_view_and_send_nothing() {
    let mut app = two_runs();
    assert_eq!(press(&mut app, KeyCode::Tab), None);
    assert_eq!(app.panel, Panel::Grads);
    press(&mut app, KeyCode::Left);
    press(&mut app, KeyCode::Left);
    assert_eq!(app.panel, Panel::Degradation);
    chr(&mut app, '3');
    assert_eq!(app.panel, Panel::Lr);
    assert_eq!(press(&mut app, KeyCode::Up), None);
    assert_eq!(app.selected_run().unwrap().info.name, "resnet20");
    assert_eq!(chr(&mut app, 'y'), None);
    assert!(app.log_scale);
    assert_eq!(chr(&mut app, 'm'), None);
    assert_eq!(app.smoothing, 0.0);
    chr(&mut app, 'm');
    assert_eq!(app.smoothing, 0.6);
    chr(&mut app, 'M');
    assert_eq!(app.smoothing, 0.8);
    chr(&mut app, '?');
    assert_eq!(app.mode, InputMode::Help);
    assert_eq!(
        chr(&mut app, 's'),
        None,
        "keys under the help overlay do nothing"
    );
    press(&mut app, KeyCode::Esc);
    assert_eq!(app.mode, InputMode::Normal);
}

#[test]
fn commands_before_any_run_started_go_nowhere_and_say_so() {
    let mut app = App::new(UiConfig::default());
    assert_eq!(chr(&mut app, 's'), None);
    assert_eq!(last_note(&app), "no run has started yet");
}

#[test]
fn lr_changes_are_acknowledged_with_old_and_new_values() {
    let mut app = two_runs();
    let change = Event::LrChanged {
        run: 1,
        step: 4213,
        old: 0.1,
        new: 0.05,
        source: LrSource::Manual,
    };
    app.update(Msg::Event(change));
    assert_eq!(last_note(&app), "LR 0.1 -> 0.05 for resnet56 at step 4213");
    assert_eq!(app.runs[1].manual_lr.back(), Some(&(4213, 0.1, 0.05)));
    let drop = Event::LrChanged {
        run: 0,
        step: 500,
        old: 0.1,
        new: 0.01,
        source: LrSource::Schedule,
    };
    app.update(Msg::Event(drop));
    assert_eq!(
        last_note(&app),
        "LR 0.1 -> 0.01 for resnet20 at step 500 (schedule)"
    );
    assert!(app.runs[0].manual_lr.is_empty());
}

#[test]
fn a_non_finite_loss_raises_an_alert_that_esc_dismisses() {
    let mut app = two_runs();
    app.update(Msg::Event(Event::NonFinite {
        run: 1,
        step: 51,
        what: "loss".into(),
    }));
    app.update(Msg::Event(Event::Paused {
        run: 1,
        step: 51,
        reason: PauseReason::NonFinite,
    }));
    assert_eq!(app.alerts.len(), 1);
    assert_eq!(app.runs[1].state.label(), "NaN");
    press(&mut app, KeyCode::Esc);
    assert!(app.alerts.is_empty());
    assert_eq!(chr(&mut app, ' '), to(Target::Run(1), Command::Resume));
}

#[test]
fn a_run_of_70k_steps_keeps_a_flat_memory_profile() {
    let mut app = App::new(UiConfig::default());
    let info = demo::run_info(0, 20, false, 70_000);
    for e in demo::events(&info, 70_000, 1) {
        app.update(Msg::Event(e));
    }
    let run = &app.runs[0];
    assert_eq!(run.train_loss.total(), 70_000);
    for series in [&run.train_loss, &run.train_err, &run.lr_history] {
        assert!(series.kept() <= 4001, "kept {}", series.kept());
    }
    assert!(
        run.grads.kept() <= 513,
        "kept {} gradient snapshots",
        run.grads.kept()
    );
    let first = run.train_loss.points().next().unwrap().0;
    assert!(
        first < 100.0,
        "the downsampled history still starts near step 0, not {first}"
    );
}

#[test]
fn an_lr_far_above_the_schedule_asks_for_confirmation_before_it_is_sent() {
    let mut app = two_runs();
    // The demo schedule's largest LR is 0.1: 200 is 2000x that.
    chr(&mut app, 'l');
    for c in "200".chars() {
        chr(&mut app, c);
    }
    assert_eq!(press(&mut app, KeyCode::Enter), None, "nothing sent yet");
    assert_eq!(app.mode, InputMode::ConfirmLr(200.0));
    // n goes back without sending; y sends it.
    assert_eq!(chr(&mut app, 'n'), None);
    assert_eq!(app.mode, InputMode::Normal);
    chr(&mut app, 'l');
    for c in "200".chars() {
        chr(&mut app, c);
    }
    press(&mut app, KeyCode::Enter);
    assert_eq!(
        chr(&mut app, 'y'),
        to(Target::Run(1), Command::SetLr(200.0))
    );
    assert_eq!(app.mode, InputMode::Normal);
    // Up to 10x the schedule's largest is sent at once.
    chr(&mut app, 'l');
    chr(&mut app, '1');
    assert_eq!(
        press(&mut app, KeyCode::Enter),
        to(Target::Run(1), Command::SetLr(1.0))
    );
}

#[test]
fn a_run_that_ends_badly_stays_on_screen_until_acknowledged() {
    use resnet_tui::protocol::FinishReason;
    let mut app = two_runs();
    app.update(Msg::Event(Event::Error {
        run: Some(0),
        message: "checkpoint at step 50 failed: disk full; the newest saved checkpoint is step 40"
            .into(),
    }));
    app.update(Msg::Event(Event::Finished {
        run: 0,
        step: 50,
        reason: FinishReason::Unsaved,
    }));
    app.update(Msg::Event(Event::Finished {
        run: 1,
        step: 50,
        reason: FinishReason::Completed,
    }));
    assert_eq!(app.failures.len(), 1, "only the run that ended badly");
    assert!(app.failures[0].contains("resnet20 unsaved at step 50"));
    assert!(app.failures[0].contains("newest saved checkpoint is step 40"));
    // Other messages arriving later do not hide it; Esc acknowledges it.
    app.update(Msg::Event(Event::Warning {
        run: None,
        message: "something else".into(),
    }));
    assert_eq!(app.failures.len(), 1);
    press(&mut app, KeyCode::Esc);
    assert!(app.failures.is_empty());
}

/// The same two runs in a viewer (`watch`): they live in other processes.
fn two_watched_runs() -> App {
    let mut app = two_runs();
    app.cfg.viewer = true;
    app
}

#[test]
fn d_detaches_the_training_ui_and_stops_nothing() {
    let mut app = two_runs();
    assert_eq!(chr(&mut app, 'd'), None);
    assert_eq!(app.exit, Some(UiExit::Detach));
    // Also offered in the quit dialog.
    let mut app = two_runs();
    chr(&mut app, 'q');
    assert_eq!(chr(&mut app, 'd'), None);
    assert_eq!(app.exit, Some(UiExit::Detach));
}

#[test]
fn ctrl_c_and_d_leave_a_viewer_without_stopping_its_runs() {
    for key in [
        KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL),
        KeyEvent::new(KeyCode::Char('d'), KeyModifiers::NONE),
    ] {
        let mut app = two_watched_runs();
        assert_eq!(app.update(Msg::Key(key)), None, "{key:?}");
        assert_eq!(app.exit, Some(UiExit::Detach));
    }
}

#[test]
fn q_in_a_viewer_asks_and_leaves_the_runs_going_unless_s() {
    for leave in [KeyCode::Char('q'), KeyCode::Enter, KeyCode::Char('y')] {
        let mut app = two_watched_runs();
        assert_eq!(chr(&mut app, 'q'), None);
        assert_eq!(app.mode, InputMode::ConfirmLeave);
        assert_eq!(press(&mut app, leave), None, "{leave:?}");
        assert_eq!(app.exit, Some(UiExit::Detach));
    }
    let mut app = two_watched_runs();
    chr(&mut app, 'q');
    assert_eq!(press(&mut app, KeyCode::Esc), None);
    assert_eq!((app.exit, &app.mode), (None, &InputMode::Normal));
    chr(&mut app, 'q');
    // Stopping is the explicit choice, and it keeps the work: a final checkpoint each.
    assert_eq!(
        chr(&mut app, 's'),
        to(Target::All, Command::Stop { checkpoint: true })
    );
    assert!(app.exit.is_some());
}

#[test]
fn a_gone_run_is_shown_with_how_to_resume_until_acknowledged_and_comes_back() {
    let mut app = two_watched_runs();
    let message =
        "its process 42 on node7 has ended; resume it: resnet-tui --resume runs/x".to_string();
    app.update(Msg::Event(Event::Gone { run: 0, message }));
    let run = &app.runs[0];
    assert_eq!(run.state.label(), "gone");
    assert!(app.failures[0].contains("resnet20 is gone") && app.failures[0].contains("--resume"));
    assert!(last_note(&app).contains("gone"));
    press(&mut app, KeyCode::Esc);
    assert!(app.failures.is_empty());
    // Counted as ended: q then leaves at once once the other run has finished too.
    app.update(Msg::Event(Event::Finished {
        run: 1,
        step: 1000,
        reason: resnet_tui::protocol::FinishReason::Completed,
    }));
    assert!(app.all_finished());
    app.update(Msg::Event(Event::Back { run: 0 }));
    assert_eq!(app.runs[0].state.label(), "running");
}

#[test]
fn a_run_on_named_classes_says_how_many_and_the_first_names_when_it_starts() {
    let mut app = App::new(UiConfig::default());
    let mut info = demo::run_info(0, 18, false, 100);
    info.classes = ["n01440764", "n01443537", "n01484850", "n01491361"]
        .map(String::from)
        .to_vec();
    app.update(Msg::Event(Event::Started(info)));
    assert_eq!(
        last_note(&app),
        "resnet18 started: 4 classes (n01440764, n01443537, n01484850, ...)"
    );
    // Data without names (CIFAR binaries, the embedded data) says nothing more.
    app.update(Msg::Event(Event::Started(demo::run_info(
        1, 20, false, 100,
    ))));
    assert_eq!(last_note(&app), "resnet20 started");
}

//! The degradation view's finding compares training errors the way `resnet-tui report` does:
//! the error on un-augmented training images when the runs measured it, else the batch errors.

use resnet_tui::protocol::{EvalMetrics, Event, Split};
use resnet_tui::ui::{App, Msg, UiConfig, demo, finding};

fn plain_pair() -> App {
    let mut app = App::new(UiConfig::default());
    for (id, depth) in [(0, 20), (1, 56)] {
        for e in demo::events(&demo::run_info(id, depth, true, 1000), 500, 10) {
            app.update(Msg::Event(e));
        }
    }
    app
}

fn train_eval(run: usize, err: f64) -> Msg {
    Msg::Event(Event::Eval(EvalMetrics {
        run,
        step: 500,
        epoch: 1.0,
        split: Split::Train,
        loss: 1.0,
        err,
        time_s: 10.0,
    }))
}

#[test]
fn the_finding_uses_the_training_evaluation_when_there_is_one() {
    let mut app = plain_pair();
    let from_batches = finding(&app);
    assert!(
        from_batches.contains("plain56 train error"),
        "{from_batches}"
    );
    assert!(!from_batches.contains("12.3%"), "{from_batches}");
    app.update(train_eval(0, 0.123));
    app.update(train_eval(1, 0.456));
    let evaluated = finding(&app);
    assert!(
        evaluated.contains("plain56 train error 45.6% > plain20 12.3% at step 500"),
        "{evaluated}"
    );
}

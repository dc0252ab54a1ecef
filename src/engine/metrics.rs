//! `metrics.jsonl`: one JSON object per event, appended and flushed as the run goes so another
//! process (`resnet-tui watch`, `resnet-tui report`) can follow it.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::protocol::{Event, FinishReason, LrSource, PauseReason, Split};

/// One line of `metrics.jsonl`. Fields that an event kind does not have are left out.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MetricsRecord {
    pub run: String,
    /// step | eval | grads | lr | pause | resume | checkpoint | nan | finished | start | warning | error
    pub kind: String,
    pub step: u64,
    pub epoch: f64,
    pub time_s: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub err: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lr: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub img_per_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<Split>,
    /// Layer name -> gradient L2 norm, in network order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layers: Option<serde_json::Map<String, serde_json::Value>>,
    /// Layer name -> gradient norm / weight norm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratios: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<LrSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The whole event, so a follower can rebuild it exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<Event>,
}

fn lower<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

impl MetricsRecord {
    /// The record of `event` for the run named `run`, at `epoch` and `time_s`.
    pub fn from_event(run: &str, event: &Event, epoch: f64, time_s: f64) -> MetricsRecord {
        let mut r = MetricsRecord {
            run: run.to_string(),
            epoch,
            time_s,
            event: Some(event.clone()),
            ..Default::default()
        };
        match event {
            Event::Started(i) => {
                r.kind = "start".into();
                r.step = i.start_step;
            }
            Event::Step(m) => {
                r.kind = "step".into();
                (r.step, r.epoch, r.time_s) = (m.step, m.epoch, m.time_s);
                r.loss = Some(m.loss);
                r.err = Some(m.err);
                r.lr = Some(m.lr);
                r.img_per_s = Some(m.img_per_s);
            }
            Event::Eval(m) => {
                r.kind = "eval".into();
                (r.step, r.epoch, r.time_s) = (m.step, m.epoch, m.time_s);
                r.loss = Some(m.loss);
                r.err = Some(m.err);
                r.split = Some(m.split);
            }
            Event::Grads { step, layers, .. } => {
                r.kind = "grads".into();
                r.step = *step;
                r.layers = Some(
                    layers
                        .iter()
                        .map(|l| (l.name.clone(), l.norm.into()))
                        .collect(),
                );
                r.ratios = Some(
                    layers
                        .iter()
                        .map(|l| (l.name.clone(), l.ratio.into()))
                        .collect(),
                );
            }
            Event::LrChanged {
                step, new, source, ..
            } => {
                r.kind = "lr".into();
                r.step = *step;
                r.lr = Some(*new);
                r.source = Some(*source);
            }
            Event::Paused { step, reason, .. } => {
                r.kind = "pause".into();
                r.step = *step;
                r.reason = Some(lower::<PauseReason>(reason));
            }
            Event::Resumed { step, .. } => {
                r.kind = "resume".into();
                r.step = *step;
            }
            Event::CheckpointSaved {
                step,
                path,
                bytes,
                seconds,
                ..
            } => {
                r.kind = "checkpoint".into();
                r.step = *step;
                r.path = Some(path.clone());
                r.bytes = Some(*bytes);
                r.seconds = Some(*seconds);
            }
            Event::NonFinite { step, what, .. } => {
                r.kind = "nan".into();
                r.step = *step;
                r.message = Some(what.clone());
            }
            Event::Warning { message, .. } => {
                r.kind = "warning".into();
                r.message = Some(message.clone());
            }
            Event::Error { message, .. } => {
                r.kind = "error".into();
                r.message = Some(message.clone());
            }
            Event::Finished { step, reason, .. } => {
                r.kind = "finished".into();
                r.step = *step;
                r.reason = Some(lower::<FinishReason>(reason));
            }
            Event::Gone { message, .. } => {
                r.kind = "gone".into();
                r.message = Some(message.clone());
            }
            Event::Back { .. } => r.kind = "back".into(),
        }
        r
    }
}

/// Appends records to a run's `metrics.jsonl`, one flushed line each.
pub struct MetricsLog {
    file: File,
}

impl MetricsLog {
    pub fn open(path: &Path) -> std::io::Result<MetricsLog> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(MetricsLog { file })
    }

    pub fn write(&mut self, record: &MetricsRecord) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(record).map_err(std::io::Error::other)?;
        line.push(b'\n');
        // One write per line, so a follower never sees half a record from us.
        self.file.write_all(&line)?;
        self.file.flush()
    }
}

/// Reads every complete record of a `metrics.jsonl` (a trailing partial line is skipped).
pub fn read_metrics(path: &Path) -> std::io::Result<Vec<MetricsRecord>> {
    let reader = BufReader::new(File::open(path)?);
    let mut out = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<MetricsRecord>(&line) {
            Ok(r) => out.push(r),
            Err(e) if e.is_eof() => break,
            Err(e) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}:{}: {e}", path.display(), i + 1),
                ));
            }
        }
    }
    Ok(out)
}

/// Before a resume from `step`: keeps only the records up to that step (dropping the old
/// `finished`), rewritten atomically, so the step axis continues; returns their events.
pub fn truncate_after(path: &Path, step: u64) -> std::io::Result<Vec<Event>> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let kept: Vec<MetricsRecord> = read_metrics(path)?
        .into_iter()
        .filter(|r| r.step <= step && r.kind != "finished")
        .collect();
    let tmp = path.with_extension("jsonl.tmp");
    {
        let mut f = File::create(&tmp)?;
        for r in &kept {
            let mut line = serde_json::to_vec(r).map_err(std::io::Error::other)?;
            line.push(b'\n');
            f.write_all(&line)?;
        }
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    Ok(kept
        .into_iter()
        .filter_map(|r| r.event)
        .filter(|e| !matches!(e, Event::Started(_) | Event::Finished { .. }))
        .collect())
}

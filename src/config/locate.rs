//! Turning errors into `file:line:column: key: rule` messages.

use std::path::Path;

use toml_edit::{Document, Item};

use super::{ConfigError, Invalid};

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rfind('\n')
        .map_or(before.len(), |i| before.len() - i - 1)
        + 1;
    (line, column)
}

/// The dotted key whose key or value spans `offset`, if any.
fn key_at(text: &str, offset: usize) -> Option<String> {
    fn walk(item: &Item, prefix: &str, offset: usize) -> Option<String> {
        let entries: Vec<(String, &Item, Option<std::ops::Range<usize>>)> = match item {
            Item::Table(t) => t
                .iter()
                .map(|(k, v)| (k.to_string(), v, t.key(k).and_then(|k| k.span())))
                .collect(),
            Item::Value(toml_edit::Value::InlineTable(t)) => t
                .iter()
                .map(|(k, _)| (k.to_string(), t.get_key_value(k).map(|(_, i)| i), None))
                .filter_map(|(k, v, s)| v.map(|v| (k, v, s)))
                .collect(),
            Item::ArrayOfTables(a) => {
                for (i, t) in a.iter().enumerate() {
                    let sub = Item::Table(t.clone());
                    if let Some(p) = walk(&sub, &format!("{prefix}{i}."), offset) {
                        return Some(p);
                    }
                }
                return None;
            }
            _ => return None,
        };
        for (k, v, kspan) in entries {
            let path = format!("{prefix}{k}");
            if let Some(p) = walk(v, &format!("{path}."), offset) {
                return Some(p);
            }
            let hit = |s: Option<std::ops::Range<usize>>| s.is_some_and(|s| s.contains(&offset));
            if hit(kspan) || hit(v.span()) {
                return Some(path);
            }
        }
        None
    }
    let doc = Document::parse(text.to_string()).ok()?;
    walk(doc.as_item(), "", offset)
}

/// The byte offset of the value (or table) at a dotted key path like `runs.1.train.lr`.
fn offset_of(text: &str, path: &str) -> Option<usize> {
    let doc = Document::parse(text.to_string()).ok()?;
    let mut item = doc.as_item();
    for part in path.split('.') {
        item = match item {
            Item::ArrayOfTables(a) => {
                let t = a.get(part.parse().ok()?)?;
                return offset_of_table(t, path.split_once(&format!("{part}."))?.1);
            }
            _ => item.get(part)?,
        };
    }
    item.span().map(|s| s.start)
}

fn offset_of_table(t: &toml_edit::Table, rest: &str) -> Option<usize> {
    let mut item = t.get(rest.split('.').next()?)?;
    for part in rest.split('.').skip(1) {
        item = item.get(part)?;
    }
    item.span().map(|s| s.start)
}

pub(super) fn toml_error(path: &Path, text: &str, e: &toml::de::Error) -> ConfigError {
    let message = e.message().trim().to_string();
    match e.span() {
        Some(span) => {
            let (line, column) = line_col(text, span.start);
            let message = match key_at(text, span.start) {
                Some(key) if !message.contains(&format!("`{key}`")) => {
                    format!("key `{key}`: {message}")
                }
                _ => message,
            };
            ConfigError::At {
                path: path.to_path_buf(),
                line,
                column,
                message,
            }
        }
        None => ConfigError::File {
            path: path.to_path_buf(),
            message,
        },
    }
}

pub(super) fn key_error(path: &Path, text: &str, key: &str, rule: &str) -> ConfigError {
    let message = format!("key `{key}`: {rule}");
    match offset_of(text, key) {
        Some(offset) => {
            let (line, column) = line_col(text, offset);
            ConfigError::At {
                path: path.to_path_buf(),
                line,
                column,
                message,
            }
        }
        None => ConfigError::File {
            path: path.to_path_buf(),
            message,
        },
    }
}

/// Places a validation error: in the run's own table, else the shared settings, else the `--set`
/// that gave the value, else the file as a whole (a default that does not fit other settings).
pub(super) fn invalid(
    path: &Path,
    text: &str,
    sets: &[String],
    _base: &toml::Table,
    run: usize,
    run_tables: &[toml::Value],
    bad: &Invalid,
) -> ConfigError {
    if let Some(arg) = sets
        .iter()
        .rev()
        .find(|a| a.split_once('=').is_some_and(|(k, _)| k.trim() == bad.key))
    {
        return ConfigError::Set {
            arg: arg.clone(),
            message: format!("key `{}`: {}", bad.key, bad.message),
        };
    }
    let run_key = format!("runs.{run}.{}", bad.key);
    if !run_tables.is_empty() && offset_of(text, &run_key).is_some() {
        return key_error(path, text, &run_key, &bad.message);
    }
    key_error(path, text, &bad.key, &bad.message)
}

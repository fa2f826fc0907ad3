//! Streams to API clients: an app's log stream (history, then live lines) and the output
//! of one-off dynos ([`follow_one_off`]). A client that reads slowly loses lines (and is told how many); it
//! never slows the dynos.

use super::Host;
use super::errors::Result;
use crate::logs::{BUFFER_LINES, LogLine, LogSource};
use futures::SinkExt;
use std::sync::Arc;
use tokio::sync::broadcast::error::RecvError;
use wdeploy_api::server::{LogQuery, TextStream};
use wdeploy_core::{AppName, dyno};

impl Host {
    pub(super) async fn log_stream(&self, app: &AppName, query: LogQuery) -> Result<TextStream> {
        let entry = self.existing(app).await?;
        // A client that asked for heartbeats gets one right after the history too: it
        // then knows which lines were already there and which are new.
        let history_ends = query.tail && query.heartbeat.is_some();
        let keep = move |line: &LogLine| {
            query
                .dyno
                .as_deref()
                .is_none_or(|d| dyno::selects(d, &line.process))
                && query.source.is_none_or(|s| line.kind == s)
        };
        let (history, mut live) = entry.runtime.logs.replay_and_subscribe(BUFFER_LINES);
        let mut lines: Vec<String> = history
            .iter()
            .filter(|l| keep(l))
            .map(|l| format!("{l}\n"))
            .collect();
        let n = query.lines.unwrap_or(100);
        lines.drain(..lines.len().saturating_sub(n));
        let (mut tx, rx) = futures::channel::mpsc::channel::<String>(256);
        let tail = query.tail;
        tokio::spawn(async move {
            for line in lines {
                if tx.send(line).await.is_err() {
                    return;
                }
            }
            if !tail {
                return;
            }
            if history_ends && tx.send("\n".to_string()).await.is_err() {
                return;
            }
            loop {
                let text = match live.recv().await {
                    Ok(line) if keep(&line) => format!("{line}\n"),
                    Ok(_) => continue,
                    Err(RecvError::Lagged(n)) => {
                        format!("wdeploy: {n} log lines dropped (reader too slow)\n")
                    }
                    Err(RecvError::Closed) => return,
                };
                if tx.send(text).await.is_err() {
                    return;
                }
            }
        });
        Ok(Box::pin(rx))
    }
}

/// Forwards a one-off dyno's output (its `app[NAME]` lines, each after `indent`) into
/// `out` until it ends, and returns its exit status or why it crashed. A client that
/// went away does not stop the dyno here: each caller decides (an attached `run` stops
/// it, a release phase runs on for the release's sake).
pub(super) async fn follow_one_off(
    live: &mut tokio::sync::broadcast::Receiver<Arc<LogLine>>,
    name: &str,
    task: tokio::task::JoinHandle<std::result::Result<i32, String>>,
    out: &mut (impl futures::Sink<String> + Unpin),
    indent: &str,
) -> std::result::Result<i32, String> {
    tokio::pin!(task);
    let outcome = loop {
        tokio::select! {
            line = live.recv() => match line {
                Ok(line) if &*line.process == name && line.kind == LogSource::App => {
                    let _ = out.send(format!("{indent}{}\n", line.text)).await;
                }
                Ok(_) | Err(RecvError::Closed) => {}
                Err(RecvError::Lagged(n)) => {
                    let _ = out.send(format!("{indent}({n} lines dropped)\n")).await;
                }
            },
            outcome = &mut task => break outcome,
        }
    };
    while let Ok(line) = live.try_recv() {
        if &*line.process == name && line.kind == LogSource::App {
            let _ = out.send(format!("{indent}{}\n", line.text)).await;
        }
    }
    outcome.unwrap_or_else(|e| Err(e.to_string()))
}

//! Streams to API clients: an app's log stream (history, then live lines) and the output
//! of one-off dynos. A client that reads slowly loses lines (and is told how many); it
//! never slows the dynos.

use super::Host;
use super::errors::{Result, invalid};
use crate::logs::{BUFFER_LINES, LogLine, LogSource};
use futures::{SinkExt, StreamExt};
use std::sync::Arc;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;
use wdeploy_api::server::{Caller, LogQuery, TextStream};
use wdeploy_api::wire::{EXIT_MARKER, RunRequest};
use wdeploy_core::AppName;

impl Host {
    pub(super) async fn run_one_off(
        &self,
        app: &AppName,
        by: &Caller,
        req: RunRequest,
    ) -> Result<TextStream> {
        let entry = self.existing(app).await?;
        let runtime = &entry.runtime;
        let (_, mut live) = runtime.logs.replay_and_subscribe(0);
        let lifetime = req.time_to_live.map(std::time::Duration::from_secs);
        let (name, task) = runtime
            .run(&req.process_type, req.args, lifetime)
            .map_err(invalid)?;
        runtime.logs.platform(
            "api",
            format!("Running `{}` as {name} by {by}", req.process_type),
        );
        let (mut tx, rx) = futures::channel::mpsc::channel::<String>(256);
        // The dyno is attached to its client, as Heroku's `run` is: when the client goes
        // (Ctrl-C, a closed laptop, `| head` done), the response body is dropped, and with
        // it this guard, which stops the dyno. Otherwise an interrupted `run` would leave
        // its dyno running to the one-off deadline (a day by default) with nobody to see
        // its output or stop it.
        let client = CancellationToken::new();
        let attached = client.clone().drop_guard();
        let logs = runtime.logs.clone();
        let stop = task.abort_handle();
        tokio::spawn(async move {
            let _ = tx
                .send(format!("Running `{}` as {name}\n", req.process_type))
                .await;
            let followed = follow_one_off(&mut live, &name, task, &mut tx, "");
            let ended = tokio::select! {
                ended = followed => ended,
                () = client.cancelled() => {
                    // Stopped at the guest's next yield; `Listed` takes it out of `ps`.
                    stop.abort();
                    logs.platform(&name, "Stopping process: its `wdeploy run` went away");
                    logs.platform(&name, "State changed from up to complete");
                    return;
                }
            };
            let code = match ended {
                Ok(code) => code,
                Err(why) => {
                    let _ = tx.send(format!("{name} crashed: {why}\n")).await;
                    1
                }
            };
            let _ = tx.send(format!("{EXIT_MARKER}{code}\n")).await;
        });
        Ok(Box::pin(rx.map(move |line| {
            let _attached = &attached;
            line
        })))
    }

    pub(super) async fn log_stream(&self, app: &AppName, query: LogQuery) -> Result<TextStream> {
        let entry = self.existing(app).await?;
        let keep = move |line: &LogLine| {
            query.dyno.as_ref().is_none_or(|d| *line.process == **d)
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
    out: &mut futures::channel::mpsc::Sender<String>,
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

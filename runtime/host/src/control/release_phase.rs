//! A release's release phase: its `release` process type run as a one-off dyno before
//! any of its dynos start, within the host's release timeout; the release fails if it
//! fails.

use super::releases::Reporter;
use super::streams::follow_one_off;
use crate::app::{AppRuntime, OneOffCommand};
use crate::deadlines::human;
use crate::release::Release;
use std::collections::BTreeSet;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use wdeploy_core::ProcessType;

/// Runs the `release` process type, if any, as a one-off dyno named apart from `taken`;
/// its output goes to the log stream and to `progress`. A non-zero exit or a trap fails
/// the release.
///
/// It has the host's release timeout to finish; past it, or when `cancel` fires, the
/// command is stopped and the release fails.
pub(super) async fn release_phase(
    runtime: &Arc<AppRuntime>,
    release: &Arc<Release>,
    progress: &Reporter,
    cancel: &CancellationToken,
    taken: &BTreeSet<String>,
) -> anyhow::Result<()> {
    let Some(process) = release.procfile.get(ProcessType::RELEASE) else {
        return Ok(());
    };
    let (_, mut live) = runtime.logs.replay_and_subscribe(0);
    let (name, task) = runtime.one_off(
        release.clone(),
        "release",
        OneOffCommand::of(ProcessType::release()),
        None,
        taken,
    )?;
    // However this phase ends (done, timed out, cancelled, or dropped with a request
    // that went away), the release command does not outlive it.
    let _stop = AbortOnDrop(task.abort_handle());
    progress
        .say(format!(
            "-----> Running release command `{}` as {name}",
            process.component
        ))
        .await;
    // The command's lines go to the push that watches and into the release's output.
    let mut out = Box::pin(futures::sink::unfold(
        progress,
        |progress, line: String| async move {
            progress.raw(line).await;
            Ok::<_, std::convert::Infallible>(progress)
        },
    ));
    let limit = runtime.deadlines().release;
    let followed = follow_one_off(&mut live, &name, task, &mut out, "       ");
    let why = tokio::select! {
        ended = followed => ended,
        () = tokio::time::sleep(limit) => {
            let why = format!(
                "the release command ran past the release timeout of {} and was stopped",
                human(limit)
            );
            runtime.logs.platform(&name, format!("Error: {why}"));
            runtime.logs.platform(&name, "State changed from up to complete");
            anyhow::bail!(why)
        }
        () = cancel.cancelled() => {
            runtime.logs.platform(&name, "Stopping process: the release was cancelled");
            runtime.logs.platform(&name, "State changed from up to complete");
            anyhow::bail!("the release was cancelled while its release command ran")
        }
    };
    match why {
        Ok(0) => {
            progress.say("-----> Release command succeeded").await;
            Ok(())
        }
        Ok(code) => anyhow::bail!("the release command failed with exit status {code}"),
        Err(why) => anyhow::bail!("the release command crashed: {why}"),
    }
}

/// Stops a task (at its guest's next yield) when dropped.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

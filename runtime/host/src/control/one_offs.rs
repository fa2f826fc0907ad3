//! One-off dynos through the API: `run`, attached to its client or detached, and
//! `ps:stop`, on whichever node runs the dyno.

use super::errors::{Result, check_config_key, invalid};
use super::streams::follow_one_off;
use super::{AppEntry, Host};
use crate::app::{InputError, OneOffCommand};
use crate::dyno::input::InputSender;
use crate::router::node_calls::{Asked, NodeCall};
use futures::{SinkExt, StreamExt, TryStreamExt};
use tokio_util::sync::CancellationToken;
use wdeploy_api::ApiError;
use wdeploy_api::server::{BlobStream, Caller, OneOffRun};
use wdeploy_api::wire::{EXIT_MARKER, RunRequest};
use wdeploy_core::{AppName, dyno};
use wdeploy_store::App;

impl Host {
    pub(super) async fn run_one_off(
        &self,
        app: &AppName,
        by: &Caller,
        req: RunRequest,
    ) -> Result<OneOffRun> {
        let record = self.store.control.app(app).await?;
        let entry = self.entry_for(&record);
        for key in req.env.keys() {
            check_config_key(key)?;
            if key == "DYNO" || key == "PORT" {
                return Err(ApiError::invalid(format!(
                    "{key} is set by wdeploy for each dyno: a one-off cannot be given another"
                ))
                .into());
            }
        }
        self.catch_up(&record, &entry).await;
        let runtime = &entry.runtime;
        let (_, mut live) = runtime.logs.replay_and_subscribe(0);
        let lifetime = req.time_to_live.map(std::time::Duration::from_secs);
        let taken = self.names_elsewhere(&entry).await;
        let command = OneOffCommand {
            process_type: req.process_type.clone(),
            args: req.args,
            env: req.env,
            stdin: req.stdin,
        };
        let (name, task) = runtime.run(command, lifetime, &taken).map_err(invalid)?;
        // The name is in the store before the client learns it: its input (`--stdin`),
        // or a `ps:stop`, may reach another node's API, which looks the name up there.
        if let Err(e) = self.publish_dynos(&record, &entry).await {
            tracing::warn!(app = %app, dyno = name, "publishing a one-off: {e:#}");
        }
        let detached = if req.detached { " (detached)" } else { "" };
        runtime.logs.platform(
            "api",
            format!("Running `{}` as {name}{detached} by {by}", req.process_type),
        );
        if req.detached {
            // Its output is in the log stream; the dyno runs on whatever its client does.
            drop(task);
            let said = format!(
                "Running `{}` as {name} (detached): `wdeploy logs --tail --dyno {name}` \
                 shows its output, `wdeploy ps:stop {name}` stops it\n",
                req.process_type
            );
            return Ok(OneOffRun {
                dyno: name,
                output: Box::pin(futures::stream::iter([said])),
            });
        }
        let (mut tx, rx) = futures::channel::mpsc::channel::<String>(256);
        // The dyno is attached to its client, as Heroku's `run` is: when the client goes
        // (Ctrl-C, a closed laptop, `| head` done), the response body is dropped, and with
        // it this guard, which stops the dyno. Otherwise an interrupted `run` would leave
        // its dyno running to the one-off deadline (a day by default) with nobody to see
        // its output or stop it.
        let client = CancellationToken::new();
        let attached = client.clone().drop_guard();
        let runtime = runtime.clone();
        let dyno = name.clone();
        tokio::spawn(async move {
            let _ = tx
                .send(format!("Running `{}` as {name}\n", req.process_type))
                .await;
            let followed = follow_one_off(&mut live, &name, task, &mut tx, "");
            let ended = tokio::select! {
                ended = followed => ended,
                () = client.cancelled() => {
                    runtime.stop_one_off(&name, "its `wdeploy run` went away");
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
        Ok(OneOffRun {
            dyno,
            output: Box::pin(rx.map(move |line| {
                let _attached = &attached;
                line
            })),
        })
    }

    /// Makes this node run the app's current release before a one-off of it starts here:
    /// in a cluster, a release made through another node a moment ago may not have
    /// reached this node's look yet, and `run` right after `push` must run what was
    /// pushed. The look it takes is the one this node would take next anyway.
    /// A store that cannot be read now (NATS away) leaves the release running here.
    async fn catch_up(&self, app: &App, entry: &AppEntry) {
        let head = match self.store.control.release_head(&app.name).await {
            Ok(head) => head,
            Err(e) => {
                tracing::debug!(app = %app.name, "catching up before a one-off: {e}");
                return;
            }
        };
        let here = entry.runtime.current_release().map(|r| r.version);
        if head.current.as_ref().map(|r| r.version) == here {
            return;
        }
        if let Err(e) = self.converge_app(app, 0).await {
            tracing::warn!(app = %app.name, "catching up before a one-off: {e:#}");
        }
    }

    /// `run --stdin`: `input` into the stdin of one-off `name`, until the input ends
    /// (the guest then reads its end) or the dyno does. A one-off another node runs gets
    /// it through that node ([`node_calls`](crate::router::node_calls)): behind a load
    /// balancer the input may reach any node's API, not the one that started the dyno.
    pub(super) async fn send_input(
        &self,
        app: &AppName,
        by: &Caller,
        name: &str,
        input: BlobStream,
    ) -> Result<()> {
        let record = self.store.control.app(app).await?;
        let entry = self.entry_for(&record);
        let sender = match entry.runtime.take_one_off_input(name) {
            Ok(sender) => sender,
            Err(InputError::NotHere(_)) => {
                // Its node recorded it before its client learned its name.
                let named = self.dynos_named(&record, &entry, name).await;
                let Some((node, _)) = named.into_iter().next() else {
                    return Err(
                        ApiError::not_found(format!("no one-off dyno {name} is running")).into(),
                    );
                };
                let call = NodeCall {
                    app: record.name.clone(),
                    app_id: record.id.clone(),
                    by: by.to_string(),
                    what: Asked::OneOffInput {
                        dyno: name.to_string(),
                    },
                };
                tracing::debug!(app = %app, dyno = name, node, "sending a one-off's input on");
                let body = http_body_util::StreamBody::new(input.map_ok(hyper::body::Frame::data));
                return Ok(self.call_node(&node, call, body).await?);
            }
            Err(e) => return Err(ApiError::conflict(e.to_string()).into()),
        };
        tracing::debug!(app = %app, dyno = name, by = %by, "sending a one-off's input");
        feed(sender, input).await;
        Ok(())
    }

    /// `ps:stop DYNO`: stops a one-off dyno wherever it runs: this node's at once,
    /// another node's through the restart request every node reads (a one-off is never
    /// restarted, so a request naming one stops it). A dyno of the formation is not
    /// stopped (the formation would start it again), nor the release phase's (that is
    /// `releases:cancel`).
    pub(super) async fn stop_one(&self, app: &AppName, by: &Caller, name: &str) -> Result<()> {
        let record = self.store.control.app(app).await?;
        let entry = self.entry_for(&record);
        let me = self.membership.me().name.to_string();
        let named = self.dynos_named(&record, &entry, name).await;
        // This node's own one-off of that name, whatever others run. Each node names its
        // own (apart from what the others have published), so two that drew one name
        // together may each run it, and the request every node reads would stop both.
        let here = named.iter().any(|(node, _)| *node == me);
        if !here && named.len() > 1 {
            let nodes: Vec<&str> = named.iter().map(|(node, _)| node.as_str()).collect();
            return Err(ApiError::conflict(format!(
                "{name} names a one-off on each of the nodes {}: stop it through the API of \
                 the node that runs the one you mean",
                nodes.join(", ")
            ))
            .into());
        }
        let Some((_, found)) = named.into_iter().next() else {
            return Err(ApiError::invalid(format!("no dyno {name} is running")).into());
        };
        if found.process_type.is_release() {
            return Err(ApiError::invalid(format!(
                "{name} runs the release phase: `wdeploy releases:cancel` stops it, and the \
                 release with it"
            ))
            .into());
        }
        if !dyno::is_one_off(&found.name, &found.process_type) {
            return Err(ApiError::invalid(format!(
                "{name} is one of the formation, which would start it again: `wdeploy \
                 ps:scale {}=N` runs fewer, `wdeploy restart {name}` restarts it",
                found.process_type
            ))
            .into());
        }
        let runtime = &entry.runtime;
        if here {
            // False if it ended meanwhile: stopped either way.
            runtime.stop_one_off(name, &format!("stopped by {by} (ps:stop)"));
            return Ok(());
        }
        let _turn = entry.release_turn().await?;
        let request = self
            .store
            .nodes
            .request_restart(&record.id, Some(name))
            .await?;
        entry.node.lock().restarts_seen = Some(request.number);
        runtime.logs.platform(
            "api",
            format!("Stopping {name} by {by} on the node that runs it"),
        );
        self.nudge(app);
        Ok(())
    }
}

/// Feeds `input` into a one-off's stdin through `sender` until the input ends or the
/// dyno does.
pub(super) async fn feed(sender: InputSender, mut input: BlobStream) {
    loop {
        let chunk = tokio::select! {
            chunk = input.next() => chunk,
            // The dyno ended: nothing reads what comes next.
            () = sender.closed() => break,
        };
        // The input's end, or a client gone mid-way, ends the input where it stopped,
        // as a closed pipe does; its `run` stream says how the dyno took it.
        let Some(Ok(chunk)) = chunk else { break };
        if sender.send(chunk).await.is_err() {
            break;
        }
    }
}

//! A web dyno: like a long-lived process serving HTTP, made of warm component instances.
//!
//! A dyno keeps up to `WEB_CONCURRENCY` instances, each in its own `Store`. In
//! `isolation = "dyno"` mode (the default) an instance that finished a request goes back to
//! the idle list and serves the next one, so guest memory persists between requests as in
//! a Heroku process. In `isolation = "request"` mode every request gets a fresh instance.
//! An instance that traps, runs past its deadline or returns without a response is
//! discarded; the next request instantiates a replacement from the release's
//! pre-instantiated component.
//!
//! WASI 0.2 handlers are called directly, and their response head goes to the router
//! when the handler returns or waits ([`super::drive`]), so a small body goes out in one
//! write whatever idiom wrote it; WASI 0.3 (component-model async) handlers run
//! in wasmtime's concurrent scheduler ([`p3`]), one request at a time per
//! instance like the others, so limits, reuse and logs are the same for both.

mod p3;

use crate::deadlines::human;
use crate::dyno::drive::{self, Driven};
use crate::dyno::ephemeral::EphemeralDir;
use crate::dyno::ready_body::collect_ready;
use crate::dyno::status::DynoSnapshot;
use crate::guest::data::StoreData;
use crate::guest::engine::{Engine, Flavor};
use crate::guest::instance::{DeadlineExceeded, InstanceEnv, describe_failure, new_store};
use crate::guest::lane::{AbortOnDrop, Lane};
use crate::guest::share::{Purpose, ShareExhausted};
use crate::logs::LogStream;
use crate::metrics::AppMetrics;
use crate::release::Release;
use anyhow::Context;
use hyper::body::Incoming;
use parking_lot::Mutex;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, oneshot};
use wasmtime::Store;
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::handler::{Proxy, ProxyPre};
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wdeploy_core::DynoState;
use wdeploy_core::{Isolation, ProcessType};

/// Why a web dyno could not answer; the router turns each into a status and an `H` code.
#[derive(Debug, thiserror::Error)]
pub enum DynoError {
    /// The guest trapped (or exited) before it set a response.
    #[error("{0}")]
    Crashed(String),
    /// The guest ran past the request deadline and was stopped.
    #[error("request timeout")]
    Timeout,
    /// The guest returned without setting a response.
    #[error("guest returned without a response")]
    NoResponse,
    /// The guest answered with a wasi:http error code instead of a response.
    #[error("guest error: {0}")]
    Guest(String),
    /// A new instance could not be created.
    #[error("could not start an instance: {0}")]
    Boot(String),
    /// No new instance for this request: the app runs all its share of the pool allows,
    /// or the pool is down to the slots kept for booting dynos.
    #[error("{0}")]
    OverShare(ShareExhausted),
}

impl DynoError {
    /// Why an instance for a request could not be created.
    fn instantiating(e: anyhow::Error) -> DynoError {
        match e.downcast_ref::<ShareExhausted>() {
            Some(over) => DynoError::OverShare(over.clone()),
            None => DynoError::Boot(format!("{e:#}")),
        }
    }
}

/// One warm instance and the store it lives in.
struct Warm {
    store: Store<StoreData>,
    /// Its `wasi:http` handler export: 0.2's `incoming-handler` or 0.3's `handler`.
    proxy: Proxy,
    /// Requests this instance has served; it is recycled at `web.max_requests`.
    served: u64,
}

/// A running web dyno; cheap to clone, shared by the router and in-flight requests.
#[derive(Clone)]
pub struct WebDyno {
    inner: Arc<Inner>,
}

struct Inner {
    name: Arc<str>,
    engine: Arc<Engine>,
    /// The app's guest threads: every instance of this dyno is made and run there. Asked
    /// for at each request, so a dyno that never served (restored idle) starts none.
    lane: Arc<Lane>,
    release: Arc<Release>,
    logs: Arc<LogStream>,
    metrics: Arc<AppMetrics>,
    env: Vec<(String, String)>,
    args: Vec<String>,
    /// Dropped (and so removed) with the last clone of the dyno and the last of its
    /// instances, after in-flight requests.
    dir: Arc<EphemeralDir>,
    isolation: Isolation,
    /// Requests an instance serves before it is replaced by a fresh one (0: never).
    max_requests: u64,
    timeout: Duration,
    memory_limit_bytes: usize,
    permits: Arc<Semaphore>,
    /// All of `permits`: when all are available, nothing of the dyno runs on the lane.
    concurrency: usize,
    instances: Mutex<Instances>,
    /// `instances.asleep`, readable without the lock: the idle sweep passes over a
    /// sleeping dyno with one load.
    sleeping: AtomicBool,
    in_flight: AtomicUsize,
    /// When the last request arrived, in milliseconds on [`clock`].
    last_request: AtomicU64,
    /// How long without a request before the dyno releases its instances (`None`: never).
    idle_after: Option<Duration>,
}

/// A dyno's warm instances, and whether it sleeps.
struct Instances {
    idle: Vec<Warm>,
    /// Idle (Heroku's sleeping dyno): no instance, and the next request wakes it.
    asleep: bool,
    /// Since when the dyno is up, or idle.
    since: chrono::DateTime<chrono::Utc>,
}

/// How a web dyno begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebStart {
    /// Boot an instance first, so a release that cannot even instantiate never receives
    /// traffic.
    Boot,
    /// Begin idle, when the dyno may sleep (`idle_after`): for a release that has booted
    /// before (restored after a host restart), whose first request wakes it.
    IdleIfAllowed,
}

/// Where and how to start a web dyno.
pub struct WebDynoSpec<'a> {
    pub engine: &'a Arc<Engine>,
    pub lane: &'a Arc<Lane>,
    pub release: &'a Arc<Release>,
    pub logs: &'a Arc<LogStream>,
    /// Where its instances' crashes are counted.
    pub metrics: &'a Arc<AppMetrics>,
    pub name: &'a str,
    pub run_dir: &'a std::path::Path,
    pub port: u16,
    /// The release's `idle_after`, or the host's default.
    pub idle_after: Option<Duration>,
    pub start: WebStart,
}

impl WebDyno {
    /// Starts the dyno and boots its first instance, so a release that cannot even
    /// instantiate never receives traffic; or, for [`WebStart::IdleIfAllowed`] and a dyno
    /// that may sleep, starts it idle.
    pub async fn start(spec: WebDynoSpec<'_>) -> anyhow::Result<WebDyno> {
        let release = spec.release;
        let process = release
            .procfile
            .get(ProcessType::WEB)
            .context("the release has no web process type")?;
        let dir = Arc::new(EphemeralDir::planned(
            spec.run_dir,
            &release.app,
            spec.name,
            spec.engine.disk_limit_bytes(&release.settings),
        ));
        let concurrency = release.web_concurrency();
        let inner = Arc::new(Inner {
            name: spec.name.into(),
            engine: spec.engine.clone(),
            lane: spec.lane.clone(),
            release: release.clone(),
            logs: spec.logs.clone(),
            metrics: spec.metrics.clone(),
            env: release.dyno_env(spec.name, spec.port),
            args: std::iter::once(process.component.clone())
                .chain(process.args.iter().cloned())
                .collect(),
            dir,
            isolation: release.settings.web.isolation,
            max_requests: release.settings.web.max_requests,
            timeout: Duration::from_secs(release.settings.web.timeout),
            memory_limit_bytes: release.settings.memory_limit_bytes(),
            permits: Arc::new(Semaphore::new(concurrency)),
            concurrency,
            instances: Mutex::new(Instances {
                idle: Vec::new(),
                asleep: false,
                since: chrono::Utc::now(),
            }),
            sleeping: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            last_request: AtomicU64::new(clock()),
            idle_after: spec.idle_after,
        });
        spec.logs.platform(
            spec.name,
            format!("Starting process with command `{}`", inner.args.join(" ")),
        );
        if spec.start == WebStart::IdleIfAllowed && inner.idle_after.is_some() {
            inner.instances.lock().asleep = true;
            inner.sleeping.store(true, Ordering::Relaxed);
            spec.logs
                .platform(spec.name, "State changed from starting to idle");
            return Ok(WebDyno { inner });
        }
        let booting = inner.clone();
        let first = spec
            .lane
            .handle()?
            .run(async move { booting.instantiate(Purpose::Boot).await })
            .await
            .map_err(anyhow::Error::from)
            .and_then(|first| first)
            .with_context(|| format!("{} failed to boot", spec.name))?;
        if inner.isolation == Isolation::Dyno {
            inner.instances.lock().idle.push(first);
        }
        spec.logs
            .platform(spec.name, "State changed from starting to up");
        Ok(WebDyno { inner })
    }

    pub fn name(&self) -> &str {
        &self.inner.name
    }

    pub fn release(&self) -> &Arc<Release> {
        &self.inner.release
    }

    pub fn snapshot(&self) -> DynoSnapshot {
        let (state, since) = self.inner.state();
        DynoSnapshot {
            name: self.inner.name.to_string(),
            process_type: ProcessType::web(),
            state,
            since,
            next_start: None,
            release: self.inner.release.version,
            command: self.inner.args.join(" "),
        }
    }

    /// Requests being served or waiting for an instance; the router picks the least busy.
    pub fn in_flight(&self) -> usize {
        self.inner.in_flight.load(Ordering::Relaxed)
    }

    /// Releases the dyno's instances (and so their memory and pool slots) when it has
    /// had no request for its `idle_after`; the next request wakes it. Whether it went
    /// idle now.
    pub fn sleep_if_idle(&self) -> bool {
        let inner = &self.inner;
        let Some(after) = inner.idle_after else {
            return false;
        };
        if inner.sleeping.load(Ordering::Relaxed) {
            return false;
        }
        let quiet = clock().saturating_sub(inner.last_request.load(Ordering::Relaxed));
        if quiet < after.as_millis() as u64 || !inner.is_quiet() {
            return false;
        }
        let released = {
            let mut instances = inner.instances.lock();
            // A request that arrived meanwhile finds the dyno asleep and wakes it.
            if instances.asleep || !inner.is_quiet() {
                return false;
            }
            instances.asleep = true;
            inner.sleeping.store(true, Ordering::Relaxed);
            instances.since = chrono::Utc::now();
            std::mem::take(&mut instances.idle)
        };
        drop(released);
        inner.logs.platform(
            &inner.name,
            format!("Idling: no request for {}", human(after)),
        );
        inner
            .logs
            .platform(&inner.name, "State changed from up to idle");
        true
    }

    /// Whether the dyno is idle and nothing of it runs or waits to: its app's lane may
    /// stop.
    pub fn is_asleep_and_quiet(&self) -> bool {
        self.inner.instances.lock().asleep && self.inner.is_quiet()
    }

    /// The request timeout this dyno's app asked for.
    pub fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    /// Serves one request on an idle (or new) instance, on the app's lane. Dropping the
    /// returned future before the response head is ready stops the guest's work too (the
    /// client is gone); once the head is out, the guest finishes its body on the lane.
    /// The guest must have answered by `deadline` (see [`WebDyno::timeout`]).
    pub async fn handle(
        &self,
        req: hyper::Request<Incoming>,
        deadline: Instant,
    ) -> Result<hyper::Response<HyperOutgoingBody>, DynoError> {
        let inner = self.inner.clone();
        // Counted before the lane is asked for: a lane stopping for idleness sees this
        // request or, after it, starts again for it (`Lane::stop_if`).
        inner.in_flight.fetch_add(1, Ordering::SeqCst);
        inner.last_request.store(clock(), Ordering::Relaxed);
        let _in_flight = InFlight(inner.clone());
        let lane = inner
            .lane
            .handle()
            .map_err(|e| DynoError::Boot(format!("{e:#}")))?;
        let (head, head_ready) = oneshot::channel();
        let task = lane.spawn(inner.clone().serve(req, deadline, head));
        let abort = AbortOnDrop::new(task.abort_handle());
        match head_ready.await {
            Ok(result) => {
                abort.disarm();
                result
            }
            // The lane dropped the request: its app is stopping.
            Err(_) => Err(DynoError::Boot("dyno is stopping".into())),
        }
    }
}

impl Inner {
    /// The guest side of a request, run on the lane: sends the response head (or why
    /// there is none) through `head` as soon as the guest sets it, then drives the guest
    /// until its call returns, so a streamed body is written from here.
    async fn serve(
        self: Arc<Self>,
        req: hyper::Request<Incoming>,
        deadline: Instant,
        head: oneshot::Sender<Result<hyper::Response<HyperOutgoingBody>, DynoError>>,
    ) {
        // Held until this returns, which is after `finish` has put the instance back.
        let _permit = match self.permits.clone().acquire_owned().await {
            Ok(permit) => permit,
            Err(_) => {
                let _ = head.send(Err(DynoError::Boot("dyno is stopping".into())));
                return;
            }
        };
        let reused = self.take_idle();
        let warm = match reused {
            Some(warm) => warm,
            None => match self.instantiate(Purpose::Request).await {
                Ok(warm) => warm,
                Err(e) => {
                    let _ = head.send(Err(DynoError::instantiating(e)));
                    return;
                }
            },
        };

        let Warm {
            mut store,
            proxy,
            served,
        } = warm;
        let proxy = match proxy {
            Proxy::P2(proxy) => proxy,
            proxy @ Proxy::P3(_) => {
                let warm = Warm {
                    store,
                    proxy,
                    served,
                };
                return self.serve_async(warm, req, deadline, head).await;
            }
        };

        let (sender, mut receiver) = oneshot::channel();
        let data = store.data_mut();
        let prepared = data
            .http()
            .new_incoming_request(Scheme::Http, req)
            .and_then(|request| Ok((request, data.http().new_response_outparam(sender)?)));
        let (request, out) = match prepared {
            Ok(prepared) => prepared,
            Err(e) => {
                let _ = head.send(Err(DynoError::Boot(e.to_string())));
                return;
            }
        };
        data.deadline = Some(deadline);

        let mut call = Box::pin(async move {
            let result = proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut store, request, out)
                .await;
            store.data_mut().deadline = None;
            let warm = Warm {
                store,
                proxy: Proxy::P2(proxy),
                served,
            };
            (warm, result)
        });

        // Drive the guest until it returns, or has set its response and waits for
        // something (see `drive`): a handler that answers and writes a small body, in
        // whatever idiom, returns with the whole response, which goes out in one write.
        let (response, finished) =
            match drive::until_answered(call.as_mut(), || receiver.try_recv().ok()).await {
                Driven::Returned(ended, response) => (response, Some(ended)),
                Driven::Answered(response) => (Some(response), None),
            };
        let streaming = finished.is_none();
        let result = match response {
            Some(Ok(response)) => match finished {
                // The guest is still streaming its body: the head goes out now.
                None => Ok(response),
                Some((warm, result)) => {
                    // A guest that set its head and then trapped has its head sent: what
                    // it wrote of the body is what the client gets.
                    let _ = self.finish(warm, result, Answered::Yes);
                    let (parts, body) = response.into_parts();
                    Ok(hyper::Response::from_parts(parts, collect_ready(body)))
                }
            },
            Some(Err(code)) => {
                if let Some((warm, result)) = finished {
                    let _ = self.finish(warm, result, Answered::Yes);
                }
                Err(DynoError::Guest(format!("{code:?}")))
            }
            // No response was set: the call ended (or must end) without one.
            None => {
                let (warm, result) = match finished {
                    Some(ended) => ended,
                    None => (&mut call).await,
                };
                let outcome = self.finish(warm, result, Answered::No);
                let _ = head.send(outcome.and(Err(DynoError::NoResponse)));
                return;
            }
        };
        let _ = head.send(result);
        if streaming {
            // Errors past the head are the guest's own (logged by `finish`).
            let (warm, result) = call.await;
            let _ = self.finish(warm, result, Answered::Yes);
        }
    }

    /// What happens to an instance after a request: back to the idle list while it is
    /// healthy and under its request budget, otherwise dropped (and its slot freed). An
    /// instance whose handler returned without setting a response is dropped too: its
    /// state is whatever made it forget (a fetch handler that cannot answer twice, a
    /// half-done request), so reusing it would fail every later request the same way.
    fn finish(
        &self,
        mut warm: Warm,
        result: wasmtime::Result<()>,
        answered: Answered,
    ) -> Result<(), DynoError> {
        match result {
            Ok(()) if answered == Answered::No => {
                self.logs.platform(
                    &self.name,
                    "Instance crashed: the handler returned without setting a response; replacing it",
                );
                self.metrics.crashed(&ProcessType::web());
                Err(DynoError::NoResponse)
            }
            Ok(()) => {
                warm.served += 1;
                let budget = self.max_requests;
                if self.isolation == Isolation::Dyno && (budget == 0 || warm.served < budget) {
                    self.instances.lock().idle.push(warm);
                }
                Ok(())
            }
            Err(e) => {
                let timed_out = e.downcast_ref::<DeadlineExceeded>().is_some();
                let why = describe_failure(&e);
                tracing::debug!(dyno = %self.name, "instance failed: {e:?}");
                self.logs
                    .platform(&self.name, format!("Instance crashed: {why}; replacing it"));
                self.metrics.crashed(&ProcessType::web());
                Err(if timed_out {
                    DynoError::Timeout
                } else {
                    DynoError::Crashed(why)
                })
            }
        }
    }

    /// A warm instance if one waits; waking the dyno if it slept (the caller then makes
    /// an instance, as for any request that finds none).
    fn take_idle(&self) -> Option<Warm> {
        let mut instances = self.instances.lock();
        if !instances.asleep {
            return instances.idle.pop();
        }
        instances.asleep = false;
        self.sleeping.store(false, Ordering::Relaxed);
        instances.since = chrono::Utc::now();
        drop(instances);
        self.logs
            .platform(&self.name, "Unidling: a request arrived");
        self.logs
            .platform(&self.name, "State changed from idle to up");
        None
    }

    /// No request being handled, and every request's guest work done (a streamed body
    /// holds its permit until the guest returns).
    fn is_quiet(&self) -> bool {
        self.in_flight.load(Ordering::SeqCst) == 0
            && self.permits.available_permits() == self.concurrency
    }

    fn state(&self) -> (DynoState, chrono::DateTime<chrono::Utc>) {
        let instances = self.instances.lock();
        let state = if instances.asleep {
            DynoState::Idle
        } else {
            DynoState::Up
        };
        (state, instances.since)
    }

    async fn instantiate(&self, purpose: Purpose) -> anyhow::Result<Warm> {
        let pre = self
            .release
            .web()
            .context("the release has no web component")?;
        let env = InstanceEnv {
            app: &self.release.app,
            purpose,
            dyno: &self.name,
            env: &self.env,
            args: &self.args,
            dir: self.dir.clone(),
            logs: &self.logs,
            memory_limit_bytes: self.memory_limit_bytes,
            addons: self.release.addons.clone(),
            egress: self.release.egress.clone(),
            stdin: None,
            flavor: match pre {
                ProxyPre::P2(_) => Flavor::Plain,
                ProxyPre::P3(_) => Flavor::Async,
            },
        };
        let mut store = new_store(&self.engine, env)?;
        let proxy = pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| anyhow::anyhow!(describe_failure(&e)))
            .context("instantiating the web component")?;
        Ok(Warm {
            store,
            proxy,
            served: 0,
        })
    }
}

/// Whether the guest set a response (or an error code) for the request it was handed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answered {
    Yes,
    No,
}

/// Keeps `in_flight` right however `handle` ends.
struct InFlight(Arc<Inner>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Drop for Inner {
    /// The last request has finished on a dyno that was stopped.
    fn drop(&mut self) {
        let (state, _) = self.state();
        self.logs
            .platform(&self.name, format!("State changed from {state} to down"));
    }
}

/// Milliseconds since the first call: when requests arrived, cheaply comparable.
fn clock() -> u64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

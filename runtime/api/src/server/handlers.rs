//! The handlers of the API's routes, one per route, each a thin translation between the
//! wire format and a [`Platform`] call (the routes themselves, and who may call them, are
//! in `server.rs`).

use super::*;
use axum::body::Body;

pub(super) async fn apps(
    State(p): State<Shared>,
    Extension(by): Extension<Caller>,
) -> Result<Json<Vec<AppInfo>>, ApiError> {
    p.apps(&by).await.map(Json)
}

pub(super) async fn create_app(
    State(p): State<Shared>,
    Extension(by): Extension<Caller>,
    JsonBody(req): JsonBody<CreateApp>,
) -> Result<Response, ApiError> {
    let app = p.create_app(&by, req).await?;
    Ok((http::StatusCode::CREATED, Json(app)).into_response())
}

pub(super) async fn app(
    State(p): State<Shared>,
    AppPath(app): AppPath,
) -> Result<Json<AppInfo>, ApiError> {
    p.app(&app).await.map(Json)
}

pub(super) async fn nodes(
    State(p): State<Shared>,
    Extension(by): Extension<Caller>,
) -> Result<Json<Vec<NodeStatus>>, ApiError> {
    crate::people::require_admin(&by, "list the cluster's nodes")?;
    p.nodes().await.map(Json)
}

pub(super) async fn rotate_cluster_key(
    State(p): State<Shared>,
    Extension(by): Extension<Caller>,
    JsonBody(req): JsonBody<KeyRotation>,
) -> Result<Json<RotatedKey>, ApiError> {
    crate::people::require_admin(&by, "rotate the cluster's key")?;
    p.rotate_cluster_key(&by, req).await.map(Json)
}

pub(super) async fn update_app(
    State(p): State<Shared>,
    AppPath(app): AppPath,
    Extension(by): Extension<Caller>,
    JsonBody(update): JsonBody<AppUpdate>,
) -> Result<Json<AppInfo>, ApiError> {
    p.update_app(&app, &by, update).await.map(Json)
}

pub(super) async fn destroy_app(
    State(p): State<Shared>,
    AppPath(app): AppPath,
) -> Result<http::StatusCode, ApiError> {
    p.destroy_app(&app).await?;
    Ok(http::StatusCode::NO_CONTENT)
}

pub(super) async fn missing_blobs(
    State(p): State<Shared>,
    JsonBody(req): JsonBody<BlobList>,
) -> Result<Json<BlobList>, ApiError> {
    let digests = p.missing_blobs(req.digests).await?;
    Ok(Json(BlobList { digests }))
}

pub(super) async fn put_blob(
    State(p): State<Shared>,
    Path(digest): Path<String>,
    headers: http::HeaderMap,
    body: Body,
) -> Result<http::StatusCode, ApiError> {
    // A declared length over the cap is refused before a byte is read; an undeclared
    // one is cut off by the store as it writes.
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BLOB_BYTES as u64) {
        return Err(ApiError::new(
            413,
            "payload_too_large",
            format!("blob upload refused: larger than the limit of {MAX_BLOB_BYTES} bytes"),
        ));
    }
    let digest: Digest = digest
        .parse()
        .map_err(|e| ApiError::invalid(format!("{e}")))?;
    let stream = futures::TryStreamExt::map_err(body.into_data_stream(), std::io::Error::other);
    p.put_blob(&digest, Box::pin(stream)).await?;
    Ok(http::StatusCode::CREATED)
}

pub(super) async fn create_release(
    State(p): State<Shared>,
    AppPath(app): AppPath,
    Extension(by): Extension<Caller>,
    JsonBody(req): JsonBody<CreateRelease>,
) -> Result<Response, ApiError> {
    // Errors known before anything runs are plain HTTP errors; after that, the outcome is
    // the stream's last line, after the progress lines.
    let heartbeat = heartbeat_of(req.heartbeat, true)?;
    p.app(&app).await?;
    Ok(release_stream(heartbeat, move |progress| async move {
        p.create_release(&app, &by, req, progress).await
    }))
}

/// A change that makes a release (a push, a rollback, a config change), answered as it
/// goes: its progress lines, [`HEARTBEAT_MARKER`] in each quiet period of `heartbeat`
/// seconds, then its outcome on the last line: [`RESULT_MARKER`] and the JSON the plain
/// call answers, or [`ERROR_MARKER`], the status and the error.
fn release_stream<T, F>(
    heartbeat: Option<u64>,
    change: impl FnOnce(Progress) -> F + Send + 'static,
) -> Response
where
    T: serde::Serialize,
    F: std::future::Future<Output = Result<T, ApiError>> + Send + 'static,
{
    let (progress, rx) = futures::channel::mpsc::channel::<String>(256);
    let mut last = progress.clone();
    tokio::spawn(async move {
        use futures::SinkExt;
        let outcome = match change(progress).await {
            Ok(answer) => format!(
                "{RESULT_MARKER}{}",
                serde_json::to_string(&answer).unwrap_or_default()
            ),
            Err(e) => {
                let body = ErrorBody {
                    id: e.id,
                    message: e.message,
                };
                format!(
                    "{ERROR_MARKER}{} {}",
                    e.status,
                    serde_json::to_string(&body).unwrap_or_default()
                )
            }
        };
        let _ = last.send(format!("{outcome}\n")).await;
    });
    beating(Box::pin(rx), heartbeat, HEARTBEAT_MARKER)
}

/// A change that makes a release and answers plain JSON (a rollback, a config change):
/// as it is without a heartbeat (the dashboard, older clients), as a [`release_stream`]
/// with one, its progress heard.
async fn plain_or_streamed<T, F>(
    p: Shared,
    app: AppName,
    heartbeat: Option<u64>,
    change: impl FnOnce(Shared, AppName, Option<Progress>) -> F + Send + 'static,
) -> Result<Response, ApiError>
where
    T: serde::Serialize,
    F: std::future::Future<Output = Result<T, ApiError>> + Send + 'static,
{
    let Some(heartbeat) = heartbeat else {
        let answer = change(p, app, None).await?;
        return Ok(Json(answer).into_response());
    };
    // An unknown app is a plain 404, before any stream.
    p.app(&app).await?;
    Ok(release_stream(Some(heartbeat), move |progress| {
        change(p, app, Some(progress))
    }))
}

pub(super) async fn releases(
    State(p): State<Shared>,
    AppPath(app): AppPath,
    QueryParams(query): QueryParams<ReleaseQuery>,
) -> Result<Json<Vec<ReleaseInfo>>, ApiError> {
    p.releases(&app, query.page()?).await.map(Json)
}

pub(super) async fn release(
    State(p): State<Shared>,
    AppPath(app): AppPath,
    Path((_, version)): Path<(String, String)>,
) -> Result<Json<ReleaseDetail>, ApiError> {
    p.release(&app, version_number(&version)?).await.map(Json)
}

pub(super) async fn release_output(
    State(p): State<Shared>,
    AppPath(app): AppPath,
    Path((_, version)): Path<(String, String)>,
) -> Result<Json<ReleaseOutput>, ApiError> {
    p.release_output(&app, version_number(&version)?)
        .await
        .map(Json)
}

/// `v3` or `3` as a release's version.
fn version_number(version: &str) -> Result<u64, ApiError> {
    let number = version.strip_prefix('v').unwrap_or(version).parse::<u64>();
    number.map_err(|_| ApiError::invalid(format!("`{version}` is not a release version like v3")))
}

pub(super) async fn rollback(
    State(p): State<Shared>,
    AppPath(app): AppPath,
    Extension(by): Extension<Caller>,
    JsonBody(req): JsonBody<Rollback>,
) -> Result<Response, ApiError> {
    let heartbeat = heartbeat_of(req.heartbeat, true)?;
    plain_or_streamed(p, app, heartbeat, move |p, app, progress| async move {
        p.rollback(&app, &by, req, progress).await
    })
    .await
}

pub(super) async fn cancel_release(
    State(p): State<Shared>,
    AppPath(app): AppPath,
    Extension(by): Extension<Caller>,
) -> Result<Json<ReleaseInfo>, ApiError> {
    p.cancel_release(&app, &by).await.map(Json)
}

pub(super) async fn config(
    State(p): State<Shared>,
    AppPath(app): AppPath,
) -> Result<Json<BTreeMap<String, String>>, ApiError> {
    p.config(&app).await.map(Json)
}

pub(super) async fn patch_config(
    State(p): State<Shared>,
    AppPath(app): AppPath,
    Extension(by): Extension<Caller>,
    QueryParams(query): QueryParams<ReleasingQuery>,
    JsonBody(patch): JsonBody<ConfigPatch>,
) -> Result<Response, ApiError> {
    let heartbeat = heartbeat_of(query.heartbeat, true)?;
    plain_or_streamed(p, app, heartbeat, move |p, app, progress| async move {
        p.patch_config(&app, &by, patch, progress).await
    })
    .await
}

pub(super) async fn formation(
    State(p): State<Shared>,
    AppPath(app): AppPath,
) -> Result<Json<Formation>, ApiError> {
    p.formation(&app).await.map(Json)
}

pub(super) async fn scale(
    State(p): State<Shared>,
    AppPath(app): AppPath,
    Extension(by): Extension<Caller>,
    JsonBody(patch): JsonBody<Formation>,
) -> Result<Json<Formation>, ApiError> {
    p.scale(&app, &by, patch).await.map(Json)
}

pub(super) async fn dynos(
    State(p): State<Shared>,
    AppPath(app): AppPath,
) -> Result<Json<Vec<DynoInfo>>, ApiError> {
    p.dynos(&app).await.map(Json)
}

pub(super) async fn restart_all(
    State(p): State<Shared>,
    AppPath(app): AppPath,
    Extension(by): Extension<Caller>,
) -> Result<http::StatusCode, ApiError> {
    p.restart(&app, &by, None).await?;
    Ok(http::StatusCode::ACCEPTED)
}

pub(super) async fn restart_one(
    State(p): State<Shared>,
    AppPath(app): AppPath,
    Extension(by): Extension<Caller>,
    Path((_, dyno)): Path<(String, String)>,
) -> Result<http::StatusCode, ApiError> {
    p.restart(&app, &by, Some(&dyno)).await?;
    Ok(http::StatusCode::ACCEPTED)
}

/// Heroku's `POST /apps/{app}/dynos/{dyno}/actions/stop`.
pub(super) async fn stop_one(
    State(p): State<Shared>,
    AppPath(app): AppPath,
    Extension(by): Extension<Caller>,
    Path((_, dyno)): Path<(String, String)>,
) -> Result<http::StatusCode, ApiError> {
    p.stop_dyno(&app, &by, &dyno).await?;
    Ok(http::StatusCode::ACCEPTED)
}

pub(super) async fn run(
    State(p): State<Shared>,
    AppPath(app): AppPath,
    Extension(by): Extension<Caller>,
    JsonBody(req): JsonBody<RunRequest>,
) -> Result<Response, ApiError> {
    let heartbeat = heartbeat_of(req.heartbeat, !req.detached)?;
    if req.stdin && req.detached {
        return Err(ApiError::invalid(
            "a detached one-off has no client to read its input from: run it attached",
        ));
    }
    let run = p.run(&app, &by, req).await?;
    let mut response = beating(run.output, heartbeat, HEARTBEAT_MARKER);
    if let Ok(dyno) = http::HeaderValue::from_str(&run.dyno) {
        response.headers_mut().insert(DYNO_HEADER, dyno);
    }
    Ok(response)
}

/// The body, as it arrives, into the stdin of a one-off started with `stdin` (`run
/// --stdin`): 204 once it has all gone in, or the dyno ended.
pub(super) async fn send_input(
    State(p): State<Shared>,
    AppPath(app): AppPath,
    Extension(by): Extension<Caller>,
    Path((_, dyno)): Path<(String, String)>,
    body: Body,
) -> Result<http::StatusCode, ApiError> {
    let stream = futures::TryStreamExt::map_err(body.into_data_stream(), std::io::Error::other);
    p.send_input(&app, &by, &dyno, Box::pin(stream)).await?;
    Ok(http::StatusCode::NO_CONTENT)
}

pub(super) async fn logs(
    State(p): State<Shared>,
    AppPath(app): AppPath,
    QueryParams(query): QueryParams<LogQuery>,
) -> Result<Response, ApiError> {
    let heartbeat = heartbeat_of(query.heartbeat, query.tail)?;
    let stream = p.logs(&app, query).await?;
    Ok(beating(stream, heartbeat, ""))
}

/// The heartbeat a client asked for, in seconds: 1 to 300, and only for a stream that
/// stays open (`open`).
fn heartbeat_of(asked: Option<u64>, open: bool) -> Result<Option<u64>, ApiError> {
    match asked {
        Some(seconds @ 1..=300) if open => Ok(Some(seconds)),
        Some(seconds @ 1..=300) => Err(ApiError::invalid(format!(
            "heartbeat={seconds} is for a stream that stays open (tail=true, an attached run)"
        ))),
        Some(seconds) => Err(ApiError::invalid(format!(
            "heartbeat={seconds}: give 1 to 300 seconds"
        ))),
        None => Ok(None),
    }
}

/// `lines` as a text response, with `beat` (then a newline) at each tick of `seconds`
/// that found no line sent since the tick before, when a heartbeat was asked for, said
/// in [`HEARTBEAT_HEADER`]. So a silence lasts under two periods, and the stream holds
/// one timer, not one per line (a busy tail sends thousands of lines a second).
fn beating(lines: TextStream, seconds: Option<u64>, beat: &'static str) -> Response {
    use futures::StreamExt;
    let Some(seconds) = seconds else {
        return text_stream(lines);
    };
    let every = std::time::Duration::from_secs(seconds);
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let beating = futures::stream::unfold(
        (lines, ticks, false),
        move |(mut lines, mut ticks, mut sent)| async move {
            loop {
                // Both are cancel-safe: the platform's streams are channels' receivers.
                tokio::select! {
                    line = lines.next() => return line.map(|line| (line, (lines, ticks, true))),
                    _ = ticks.tick() => {
                        if !std::mem::take(&mut sent) {
                            return Some((format!("{beat}\n"), (lines, ticks, false)));
                        }
                    }
                }
            }
        },
    );
    let mut response = text_stream(Box::pin(beating));
    response
        .headers_mut()
        .insert(HEARTBEAT_HEADER, http::HeaderValue::from(seconds));
    response
}

/// `GET /apps/{app}/log-events`: the log stream as Server-Sent Events (one event per
/// line), for a browser's `EventSource`; the same query as `log-sessions`, always tailing.
pub(super) async fn log_events(
    State(p): State<Shared>,
    AppPath(app): AppPath,
    QueryParams(mut query): QueryParams<LogQuery>,
) -> Result<Response, ApiError> {
    use axum::response::sse::{Event, KeepAlive, Sse};
    use futures::StreamExt;
    query.tail = true;
    let lines = p.logs(&app, query).await?;
    let events = lines.map(|line| {
        Ok::<_, std::convert::Infallible>(Event::default().data(line.trim_end_matches('\n')))
    });
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response())
}

pub(super) async fn addons(
    State(p): State<Shared>,
    AppPath(app): AppPath,
) -> Result<Json<AddonUsage>, ApiError> {
    p.addons(&app).await.map(Json)
}

pub(super) fn bucket(query: &KvQuery) -> &str {
    query.bucket.as_deref().unwrap_or(DEFAULT_BUCKET)
}

pub(super) fn key(query: &KvQuery) -> Result<&str, ApiError> {
    query
        .key
        .as_deref()
        .ok_or_else(|| ApiError::invalid("no key given (?key=…)"))
}

pub(super) async fn kv_keys(
    State(p): State<Shared>,
    AppPath(app): AppPath,
    QueryParams(query): QueryParams<KvQuery>,
) -> Result<Json<KvKeys>, ApiError> {
    let prefix = query.prefix.as_deref().unwrap_or("");
    p.kv_keys(&app, bucket(&query), prefix).await.map(Json)
}

pub(super) async fn kv_get(
    State(p): State<Shared>,
    AppPath(app): AppPath,
    QueryParams(query): QueryParams<KvQuery>,
) -> Result<Json<KvEntry>, ApiError> {
    p.kv_get(&app, bucket(&query), key(&query)?).await.map(Json)
}

pub(super) async fn kv_set(
    State(p): State<Shared>,
    AppPath(app): AppPath,
    QueryParams(query): QueryParams<KvQuery>,
    Extension(by): Extension<Caller>,
    JsonBody(body): JsonBody<KvSet>,
) -> Result<Json<KvEntry>, ApiError> {
    p.kv_set(&app, &by, bucket(&query), key(&query)?, body.value)
        .await
        .map(Json)
}

pub(super) async fn kv_delete(
    State(p): State<Shared>,
    AppPath(app): AppPath,
    QueryParams(query): QueryParams<KvQuery>,
    Extension(by): Extension<Caller>,
) -> Result<http::StatusCode, ApiError> {
    p.kv_delete(&app, &by, bucket(&query), key(&query)?).await?;
    Ok(http::StatusCode::NO_CONTENT)
}

pub(super) async fn domains(
    State(p): State<Shared>,
    AppPath(app): AppPath,
) -> Result<Json<Vec<DomainInfo>>, ApiError> {
    p.domains(&app).await.map(Json)
}

pub(super) async fn add_domain(
    State(p): State<Shared>,
    AppPath(app): AppPath,
    Extension(by): Extension<Caller>,
    JsonBody(req): JsonBody<CreateDomain>,
) -> Result<(http::StatusCode, Json<DomainInfo>), ApiError> {
    let domain = p.add_domain(&app, &by, req).await?;
    Ok((http::StatusCode::CREATED, Json(domain)))
}

pub(super) async fn remove_domain(
    State(p): State<Shared>,
    AppPath(app): AppPath,
    Extension(by): Extension<Caller>,
    Path((_, hostname)): Path<(String, String)>,
) -> Result<http::StatusCode, ApiError> {
    p.remove_domain(&app, &by, &hostname).await?;
    Ok(http::StatusCode::NO_CONTENT)
}

pub(super) async fn queues(
    State(p): State<Shared>,
    AppPath(app): AppPath,
) -> Result<Json<Vec<QueueInfo>>, ApiError> {
    p.queues(&app).await.map(Json)
}

pub(super) async fn metrics(
    State(p): State<Shared>,
    by: Option<Extension<Caller>>,
) -> Result<Response, ApiError> {
    // The whole host's numbers: an admin's (the `--metrics` listener has no caller and
    // is the operator's own).
    if let Some(Extension(by)) = &by {
        people::require_admin(by, "read the host's metrics")?;
    }
    let text = p.metrics().await?;
    Ok(([(http::header::CONTENT_TYPE, METRICS_CONTENT_TYPE)], text).into_response())
}

pub(super) async fn app_metrics(
    State(p): State<Shared>,
    AppPath(app): AppPath,
) -> Result<Json<MetricsHistory>, ApiError> {
    p.app_metrics(&app).await.map(Json)
}

pub(super) fn text_stream(stream: TextStream) -> Response {
    use futures::StreamExt;
    let body = Body::from_stream(
        stream.map(|chunk| Ok::<_, std::convert::Infallible>(Bytes::from(chunk))),
    );
    (
        [(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

//! The typed, blocking client the CLI uses.

use crate::error::ApiError;
use crate::live::{Lines, Next};
use crate::wire::*;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::io::Read;
use std::time::Duration;
use wdeploy_core::{Digest, Formation, LogSource, Person};

#[derive(Clone)]
pub struct Client {
    base: String,
    token: String,
    agent: ureq::Agent,
}

/// A stream that stays open (a log tail, an attached one-off's output) as the host
/// sends it.
pub struct LiveStream {
    pub reader: Box<dyn Read + Send>,
    /// How often the host promised a line (empty when there was nothing else to send),
    /// if it did: a longer silence means the connection is dead.
    pub heartbeat: Option<Duration>,
    /// The one-off dyno a `run` started, as the host named it (a host older than this
    /// client does not).
    pub dyno: Option<String>,
}

/// A failed call: the host's JSON error, or why the host could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("cannot reach the host at {url}: {message}")]
    Unreachable { url: String, message: String },
}

type Result<T> = std::result::Result<T, ClientError>;

impl Client {
    /// A client of the host at `base` (`http://` or `https://`, checked against the
    /// public roots).
    pub fn new(base: &str, token: &str) -> Client {
        Client::with_roots(base, token, ureq::tls::RootCerts::WebPki)
    }

    /// A client that trusts only the CA certificates in `ca_pem` for an `https://` host
    /// (a host whose API certificate comes from a private CA).
    pub fn with_ca(base: &str, token: &str, ca_pem: &[u8]) -> std::result::Result<Client, String> {
        let certs = ureq::tls::parse_pem(ca_pem)
            .filter_map(|item| match item {
                Ok(ureq::tls::PemItem::Certificate(cert)) => Some(Ok(cert)),
                Ok(_) => None,
                Err(e) => Some(Err(e.to_string())),
            })
            .collect::<std::result::Result<Vec<_>, String>>()?;
        if certs.is_empty() {
            return Err("no CA certificate in it (expected PEM `BEGIN CERTIFICATE` blocks)".into());
        }
        let roots = ureq::tls::RootCerts::Specific(std::sync::Arc::new(certs));
        Ok(Client::with_roots(base, token, roots))
    }

    fn with_roots(base: &str, token: &str, roots: ureq::tls::RootCerts) -> Client {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(10)))
            .tls_config(ureq::tls::TlsConfig::builder().root_certs(roots).build())
            .build()
            .into();
        Client {
            base: base.trim_end_matches('/').to_string(),
            token: token.to_string(),
            agent,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn auth(&self) -> String {
        format!("Bearer {}", self.token)
    }

    fn unreachable(&self, e: ureq::Error) -> ClientError {
        ClientError::Unreachable {
            url: self.base.clone(),
            message: e.to_string(),
        }
    }

    /// Turns a response into its JSON body, or its error.
    fn decode<T: DeserializeOwned>(&self, mut response: http::Response<ureq::Body>) -> Result<T> {
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_string()
            .map_err(|e| self.unreachable(e))?;
        if status >= 400 {
            return Err(error_from(status, &text).into());
        }
        let text = if text.is_empty() { "null" } else { &text };
        serde_json::from_str(text).map_err(|e| {
            ClientError::Api(ApiError::internal(format!(
                "unexpected answer from the host: {e}"
            )))
        })
    }

    fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        let response = self
            .agent
            .get(&self.url(path))
            .header("authorization", &self.auth())
            .call()
            .map_err(|e| self.unreachable(e))?;
        self.decode(response)
    }

    fn send<B: Serialize, T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: &B,
    ) -> Result<T> {
        let url = self.url(path);
        let request = match method {
            "POST" => self.agent.post(&url),
            "PATCH" => self.agent.patch(&url),
            _ => self.agent.put(&url),
        };
        let response = request
            .header("authorization", &self.auth())
            .send_json(body)
            .map_err(|e| self.unreachable(e))?;
        self.decode(response)
    }

    /// DELETE `path`, dropping the body of the answer.
    fn delete(&self, path: &str) -> Result<()> {
        self.delete_for::<serde_json::Value>(path).map(|_| ())
    }

    /// DELETE `path`, decoding the answer (what was removed).
    fn delete_for<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        let response = self
            .agent
            .delete(&self.url(path))
            .header("authorization", &self.auth())
            .call()
            .map_err(|e| self.unreachable(e))?;
        self.decode(response)
    }

    pub fn apps(&self) -> Result<Vec<AppInfo>> {
        self.get("/apps")
    }
    pub fn create_app(&self, name: Option<&str>) -> Result<AppInfo> {
        self.send(
            "POST",
            "/apps",
            &CreateApp {
                name: name.map(str::to_string),
            },
        )
    }
    pub fn app(&self, app: &str) -> Result<AppInfo> {
        self.get(&format!("/apps/{app}"))
    }
    /// The cluster's live nodes (admin only).
    pub fn nodes(&self) -> Result<Vec<NodeStatus>> {
        self.get("/cluster/nodes")
    }
    /// Rotates the cluster's key (admin only).
    pub fn rotate_cluster_key(&self, req: &KeyRotation) -> Result<RotatedKey> {
        self.send("POST", "/cluster/rotate-key", req)
    }
    /// Changes the app itself (maintenance mode); the app after it.
    pub fn update_app(&self, app: &str, update: &AppUpdate) -> Result<AppInfo> {
        self.send("PATCH", &format!("/apps/{app}"), update)
    }
    pub fn destroy_app(&self, app: &str) -> Result<()> {
        self.delete(&format!("/apps/{app}"))
    }
    pub fn missing_blobs(&self, digests: Vec<Digest>) -> Result<Vec<Digest>> {
        let list: BlobList = self.send("POST", "/blobs/missing", &BlobList { digests })?;
        Ok(list.digests)
    }
    /// Uploads one blob from a reader of `size` bytes.
    pub fn put_blob(&self, digest: &Digest, size: u64, mut body: impl Read + Send) -> Result<()> {
        let response = self
            .agent
            .put(&self.url(&format!("/blobs/{digest}")))
            .header("authorization", &self.auth())
            .header("content-type", "application/octet-stream")
            .header("content-length", &size.to_string())
            .send(ureq::SendBody::from_reader(&mut body))
            .map_err(|e| self.unreachable(e))?;
        self.decode::<serde_json::Value>(response).map(|_| ())
    }
    /// Creates a release and waits until it serves, handing each progress line (release
    /// phase output, deploy steps) to `on_line` as it comes.
    pub fn create_release(
        &self,
        app: &str,
        req: &CreateRelease,
        on_line: &mut dyn FnMut(&str),
    ) -> Result<ReleaseInfo> {
        let response = self
            .agent
            .post(&self.url(&format!("/apps/{app}/releases")))
            .header("authorization", &self.auth())
            .send_json(req)
            .map_err(|e| self.unreachable(e))?;
        self.follow_release(response, on_line)
    }

    /// Reads a release stream to its outcome (the answer's JSON, or its error), handing
    /// each progress line to `on_line`. A host that goes silent past its heartbeats, or
    /// breaks the stream, leaves the release's fate to `wdeploy releases`.
    fn follow_release<T: DeserializeOwned>(
        &self,
        response: http::Response<ureq::Body>,
        on_line: &mut dyn FnMut(&str),
    ) -> Result<T> {
        let lines = Lines::new(self.live(response)?, HEARTBEAT_MARKER);
        let lost = |why: String| ClientError::Unreachable {
            url: self.base.clone(),
            message: format!(
                "{why}; whether the release went live, `wdeploy releases` tells once the host \
                 answers"
            ),
        };
        loop {
            let line = match lines.next() {
                Next::Line(line) => line,
                Next::Beat => continue,
                Next::Broke(e) => return Err(lost(format!("the release stream broke ({e})"))),
                Next::Ended => break,
                Next::Silent(why) => return Err(lost(why)),
            };
            if let Some(json) = line.strip_prefix(RESULT_MARKER) {
                return serde_json::from_str(json).map_err(|e| {
                    ClientError::Api(ApiError::internal(format!(
                        "unexpected answer from the host: {e}"
                    )))
                });
            }
            if let Some(rest) = line.strip_prefix(ERROR_MARKER) {
                let (status, json) = rest.split_once(' ').unwrap_or(("500", rest));
                return Err(error_from(status.parse().unwrap_or(500), json).into());
            }
            on_line(&line);
        }
        Err(ClientError::Unreachable {
            url: self.base.clone(),
            message: "the host ended the release stream without a result".into(),
        })
    }

    /// A release stream's outcome if the host streamed (it said so in its heartbeat
    /// header); a host older than streamed config changes and rollbacks answers plain JSON.
    fn released<T: DeserializeOwned>(
        &self,
        response: http::Response<ureq::Body>,
        on_line: &mut dyn FnMut(&str),
    ) -> Result<T> {
        if response
            .headers()
            .contains_key(crate::server::HEARTBEAT_HEADER)
        {
            self.follow_release(response, on_line)
        } else {
            self.decode(response)
        }
    }

    /// The newest `limit` releases (the host's default page when `None`) older than
    /// `before`, newest first.
    /// One release in full (`version`: `3` or `v3`).
    pub fn release(&self, app: &str, version: &str) -> Result<ReleaseDetail> {
        self.get(&format!("/apps/{app}/releases/{}", encode(version)))
    }

    pub fn release_output(&self, app: &str, version: &str) -> Result<ReleaseOutput> {
        self.get(&format!("/apps/{app}/releases/{}/output", encode(version)))
    }

    pub fn releases(
        &self,
        app: &str,
        limit: Option<u32>,
        before: Option<u64>,
    ) -> Result<Vec<ReleaseInfo>> {
        let mut query = Vec::new();
        if let Some(limit) = limit {
            query.push(format!("limit={limit}"));
        }
        if let Some(before) = before {
            query.push(format!("before={before}"));
        }
        let query = if query.is_empty() {
            String::new()
        } else {
            format!("?{}", query.join("&"))
        };
        self.get(&format!("/apps/{app}/releases{query}"))
    }
    /// Rolls back (to the release before the current one unless `req.version` says), or
    /// retries the newest release (`req.retry`), and waits until the new release serves,
    /// handing each progress line to `on_line`.
    pub fn rollback(
        &self,
        app: &str,
        req: Rollback,
        on_line: &mut dyn FnMut(&str),
    ) -> Result<ReleaseInfo> {
        let response = self
            .agent
            .post(&self.url(&format!("/apps/{app}/rollback")))
            .header("authorization", &self.auth())
            .send_json(Rollback {
                heartbeat: Some(crate::live::HEARTBEAT.as_secs()),
                ..req
            })
            .map_err(|e| self.unreachable(e))?;
        self.released(response, on_line)
    }
    /// Cancels the release going live; returns it once it is recorded as failed.
    pub fn cancel_release(&self, app: &str) -> Result<ReleaseInfo> {
        self.send("POST", &format!("/apps/{app}/releases/cancel"), &())
    }
    pub fn config(&self, app: &str) -> Result<BTreeMap<String, String>> {
        self.get(&format!("/apps/{app}/config-vars"))
    }
    /// Sets and unsets config vars (a new release), and waits until the release serves,
    /// handing each progress line (its release phase, its boot) to `on_line`.
    pub fn patch_config(
        &self,
        app: &str,
        patch: &ConfigPatch,
        on_line: &mut dyn FnMut(&str),
    ) -> Result<BTreeMap<String, String>> {
        let heartbeat = crate::live::HEARTBEAT.as_secs();
        let response = self
            .agent
            .patch(&self.url(&format!("/apps/{app}/config-vars?heartbeat={heartbeat}")))
            .header("authorization", &self.auth())
            .send_json(patch)
            .map_err(|e| self.unreachable(e))?;
        self.released(response, on_line)
    }
    pub fn formation(&self, app: &str) -> Result<Formation> {
        self.get(&format!("/apps/{app}/formation"))
    }
    pub fn scale(&self, app: &str, patch: &Formation) -> Result<Formation> {
        self.send("PATCH", &format!("/apps/{app}/formation"), patch)
    }
    pub fn dynos(&self, app: &str) -> Result<Vec<DynoInfo>> {
        self.get(&format!("/apps/{app}/dynos"))
    }
    pub fn restart(&self, app: &str, dyno: Option<&str>) -> Result<()> {
        match dyno {
            Some(d) => self.delete(&format!("/apps/{app}/dynos/{d}")),
            None => self.delete(&format!("/apps/{app}/dynos")),
        }
    }

    /// Stops a one-off dyno (`ps:stop`).
    pub fn stop_dyno(&self, app: &str, dyno: &str) -> Result<()> {
        let path = format!("/apps/{app}/dynos/{dyno}/actions/stop");
        self.send::<_, serde_json::Value>("POST", &path, &())
            .map(|_| ())
    }

    /// Starts a one-off dyno; read its output from the returned stream.
    pub fn run(&self, app: &str, req: &RunRequest) -> Result<LiveStream> {
        let response = self
            .agent
            .post(&self.url(&format!("/apps/{app}/dynos")))
            .header("authorization", &self.auth())
            .send_json(req)
            .map_err(|e| self.unreachable(e))?;
        self.live(response)
    }

    /// Reads the log stream: `lines` of history, then (with `tail`) new lines as they come,
    /// with an empty line after each `heartbeat` without one, if the host does that.
    pub fn logs(
        &self,
        app: &str,
        lines: usize,
        tail: bool,
        dyno: Option<&str>,
        source: Option<LogSource>,
        heartbeat: Option<Duration>,
    ) -> Result<LiveStream> {
        let mut path = format!("/apps/{app}/log-sessions?lines={lines}&tail={tail}");
        if let Some(d) = dyno {
            path.push_str(&format!("&dyno={d}"));
        }
        if let Some(s) = source {
            path.push_str(&format!("&source={s}"));
        }
        if let Some(every) = heartbeat.filter(|_| tail) {
            path.push_str(&format!("&heartbeat={}", every.as_secs().max(1)));
        }
        let response = self
            .agent
            .get(&self.url(&path))
            .header("authorization", &self.auth())
            .call()
            .map_err(|e| self.unreachable(e))?;
        self.live(response)
    }

    /// The stream of `response`, with the heartbeat its host promised, if any (a host
    /// from before heartbeats ignores the question and sends no header).
    fn live(&self, response: http::Response<ureq::Body>) -> Result<LiveStream> {
        let heartbeat = response
            .headers()
            .get(crate::server::HEARTBEAT_HEADER)
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .map(Duration::from_secs);
        let dyno = response
            .headers()
            .get(crate::server::DYNO_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        Ok(LiveStream {
            reader: self.stream(response)?,
            heartbeat,
            dyno,
        })
    }

    /// Sends `input` to the stdin of one-off `dyno` (started with `stdin`), each read as
    /// it comes (a line typed at a terminal goes at once); returns when it has ended,
    /// or the dyno has.
    pub fn send_input(&self, app: &str, dyno: &str, mut input: impl Read + Send) -> Result<()> {
        let response = self
            .agent
            .put(&self.url(&format!("/apps/{app}/dynos/{dyno}/stdin")))
            .header("authorization", &self.auth())
            .send(ureq::SendBody::from_reader(&mut input))
            .map_err(|e| self.unreachable(e))?;
        self.decode::<serde_json::Value>(response).map(|_| ())
    }

    pub fn kv_keys(&self, app: &str, bucket: &str, prefix: &str) -> Result<KvKeys> {
        self.get(&format!(
            "/apps/{app}/kv/keys?bucket={}&prefix={}",
            encode(bucket),
            encode(prefix)
        ))
    }
    pub fn kv_get(&self, app: &str, bucket: &str, key: &str) -> Result<KvEntry> {
        self.get(&format!(
            "/apps/{app}/kv/entry?bucket={}&key={}",
            encode(bucket),
            encode(key)
        ))
    }
    pub fn kv_delete(&self, app: &str, bucket: &str, key: &str) -> Result<()> {
        self.delete(&format!(
            "/apps/{app}/kv/entry?bucket={}&key={}",
            encode(bucket),
            encode(key)
        ))
    }
    pub fn kv_set(&self, app: &str, bucket: &str, key: &str, value: &str) -> Result<KvEntry> {
        self.send(
            "PUT",
            &format!(
                "/apps/{app}/kv/entry?bucket={}&key={}",
                encode(bucket),
                encode(key)
            ),
            &KvSet {
                value: value.to_string(),
            },
        )
    }
    pub fn addon_usage(&self, app: &str) -> Result<AddonUsage> {
        self.get(&format!("/apps/{app}/addons"))
    }
    pub fn queues(&self, app: &str) -> Result<Vec<QueueInfo>> {
        self.get(&format!("/apps/{app}/queues"))
    }
    pub fn drains(&self, app: &str) -> Result<Vec<DrainInfo>> {
        self.get(&format!("/apps/{app}/log-drains"))
    }
    pub fn add_drain(&self, app: &str, url: &str) -> Result<DrainInfo> {
        let req = CreateDrain {
            url: url.to_string(),
        };
        self.send("POST", &format!("/apps/{app}/log-drains"), &req)
    }
    /// Removes the drain `which` names: its id or its URL.
    pub fn remove_drain(&self, app: &str, which: &str) -> Result<DrainInfo> {
        let response = self
            .agent
            .delete(&self.url(&format!("/apps/{app}/log-drains/{}", encode(which))))
            .header("authorization", &self.auth())
            .call()
            .map_err(|e| self.unreachable(e))?;
        self.decode(response)
    }

    pub fn domains(&self, app: &str) -> Result<Vec<DomainInfo>> {
        self.get(&format!("/apps/{app}/domains"))
    }
    /// With `acme`, the host orders a certificate for it too.
    pub fn add_domain(&self, app: &str, hostname: &str, acme: bool) -> Result<DomainInfo> {
        let req = CreateDomain {
            hostname: hostname.to_string(),
            acme,
        };
        self.send("POST", &format!("/apps/{app}/domains"), &req)
    }
    /// `hostname` as typed: the host normalises it (a path segment cannot hold a `/`,
    /// which no host name has).
    pub fn remove_domain(&self, app: &str, hostname: &str) -> Result<()> {
        self.delete(&format!("/apps/{app}/domains/{hostname}"))
    }

    /// The TLS certificates of the app's domains.
    pub fn certs(&self, app: &str) -> Result<Vec<CertInfo>> {
        self.get(&format!("/apps/{app}/certs"))
    }
    /// Sets a certificate (PEM) for `domain`, or for every domain of the app it covers;
    /// answers the certificates set.
    pub fn add_cert(&self, app: &str, req: &CreateCert) -> Result<Vec<CertInfo>> {
        self.send("POST", &format!("/apps/{app}/certs"), req)
    }
    pub fn remove_cert(&self, app: &str, domain: &str) -> Result<CertInfo> {
        self.delete_for(&format!("/apps/{app}/certs/{}", encode(domain)))
    }

    /// The app's last hour on the node answering (`GET /apps/{app}/metrics`).
    pub fn app_metrics(&self, app: &str) -> Result<MetricsHistory> {
        self.get(&format!("/apps/{app}/metrics"))
    }

    /// Everyone the host knows (admin only).
    /// Who this client's token belongs to.
    pub fn account(&self) -> Result<Account> {
        self.get("/account")
    }
    pub fn users(&self) -> Result<Vec<UserInfo>> {
        self.get("/users")
    }
    /// Adds a person (admin only); the answer holds their first token, shown only now.
    pub fn add_user(&self, req: &CreateUser) -> Result<NewToken> {
        self.send("POST", "/users", req)
    }
    /// Removes a person with their tokens and access (admin only).
    pub fn remove_user(&self, email: &Person) -> Result<UserRemoved> {
        self.delete_for(&format!("/users/{}", encode(email.as_str())))
    }
    /// The caller's tokens (an admin's: everyone's).
    pub fn tokens(&self) -> Result<Vec<TokenInfo>> {
        self.get("/tokens")
    }
    /// A new token for the caller, shown only now.
    pub fn create_token(&self, req: &CreateToken) -> Result<NewToken> {
        self.send("POST", "/tokens", req)
    }
    pub fn revoke_token(&self, id: &str) -> Result<()> {
        self.delete(&format!("/tokens/{}", encode(id)))
    }
    /// Who has access to the app.
    pub fn collaborators(&self, app: &str) -> Result<Vec<Collaborator>> {
        self.get(&format!("/apps/{app}/collaborators"))
    }
    pub fn add_collaborator(&self, app: &str, email: &Person) -> Result<Collaborator> {
        let body = Collaborator {
            email: email.clone(),
        };
        self.send("POST", &format!("/apps/{app}/collaborators"), &body)
    }
    pub fn remove_collaborator(&self, app: &str, email: &Person) -> Result<()> {
        self.delete(&format!(
            "/apps/{app}/collaborators/{}",
            encode(email.as_str())
        ))
    }

    fn stream(&self, mut response: http::Response<ureq::Body>) -> Result<Box<dyn Read + Send>> {
        let status = response.status().as_u16();
        if status >= 400 {
            let text = response.body_mut().read_to_string().unwrap_or_default();
            return Err(error_from(status, &text).into());
        }
        Ok(Box::new(response.into_body().into_reader()))
    }
}

/// Percent-encodes a query value (keys may hold any character, `&` and `#` included).
fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn error_from(status: u16, text: &str) -> ApiError {
    match serde_json::from_str::<ErrorBody>(text) {
        Ok(body) if status == 404 && body.message == crate::server::NO_SUCH_ROUTE => ApiError::new(
            status,
            &body.id,
            "the host does not know this request: its wdeploy is older than this CLI \
                 (upgrade the host, or use a CLI of its version)",
        ),
        Ok(body) => ApiError::new(status, &body.id, body.message),
        Err(_) => ApiError::new(
            status,
            "http_error",
            format!("the host answered {status}: {}", text.trim()),
        ),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_route_the_host_lacks_is_told_as_an_older_host() {
        let e = super::error_from(404, r#"{"id":"not_found","message":"no such API route"}"#);
        assert!(
            e.message.starts_with("the host does not know this request"),
            "{e:?}"
        );
        let e = super::error_from(404, r#"{"id":"not_found","message":"app x not found"}"#);
        assert_eq!(e.message, "app x not found");
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(super::encode("job/1/runs"), "job%2F1%2Fruns");
        assert_eq!(super::encode("a b&c=d#é"), "a%20b%26c%3Dd%23%C3%A9");
        assert_eq!(super::encode("plain-key_1.x~"), "plain-key_1.x~");
    }
}

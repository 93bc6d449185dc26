//! One archive in object storage, whichever the store: its real server
//! (S3: s3s-fs; Cloud Storage: fake-gcs-server; Azure: Azurite) with the
//! bucket `wal`, the fault-injecting proxy in front of it, and the
//! variables that point the binary at either. Tests of a behaviour every
//! store shares take a [`Kind`] and run once per store (see
//! [`every_store`]), so that the behaviour is written once.
//!
//! A test file includes it with `#[path = "support/stores.rs"] mod
//! stores;` beside `mod support;`, and reaches the servers and the proxy
//! through it (`stores::fault_proxy::Action`).

#![allow(dead_code)]

use std::fs;
use std::process::{Command, Stdio};

#[cfg(feature = "azure")]
#[path = "azure_server.rs"]
pub mod azure_server;
#[path = "fault_proxy.rs"]
pub mod fault_proxy;
#[path = "gcs_server.rs"]
pub mod gcs_server;
#[path = "s3_server.rs"]
pub mod s3_server;

use crate::support::{Env, Job, binary};
use fault_proxy::{Action, FaultProxy};

/// The archive's location in the bucket.
pub const PREFIX: &str = "archive/";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    S3,
    Gcs,
    #[cfg(feature = "azure")]
    Azure,
}

/// Each test, once per store: `mod s3 { #[test] fn name() }` and so on.
#[macro_export]
macro_rules! every_store {
    ($($name:ident),* $(,)?) => {
        mod s3 {
            $( #[test] fn $name() { super::$name($crate::stores::Kind::S3) } )*
        }
        mod gcs {
            $( #[test] fn $name() { super::$name($crate::stores::Kind::Gcs) } )*
        }
        #[cfg(feature = "azure")]
        mod azure {
            $( #[test] fn $name() { super::$name($crate::stores::Kind::Azure) } )*
        }
    };
}

enum Server {
    S3(s3_server::S3Server),
    Gcs(gcs_server::GcsServer),
    #[cfg(feature = "azure")]
    Azure(azure_server::AzureServer),
}

/// Where a call sends its requests.
pub enum Via<'a> {
    /// Straight to the server.
    Server,
    /// Through the fault proxy.
    Proxy,
    /// Another address (`http://127.0.0.1:PORT`): a closed port, a
    /// listener that never answers.
    Address(&'a str),
}

pub struct Archive {
    pub kind: Kind,
    pub env: Env,
    // Dropped before the server: its threads forward to it.
    pub proxy: FaultProxy,
    server: Server,
}

impl Archive {
    pub fn new(kind: Kind) -> Archive {
        let server = match kind {
            Kind::S3 => {
                let s = s3_server::S3Server::start();
                s.bucket("wal");
                Server::S3(s)
            }
            Kind::Gcs => {
                let s = gcs_server::GcsServer::start();
                s.bucket("wal");
                Server::Gcs(s)
            }
            #[cfg(feature = "azure")]
            Kind::Azure => {
                let s = azure_server::AzureServer::start();
                s.container("wal");
                Server::Azure(s)
            }
        };
        let proxy = FaultProxy::start(&address(&server));
        Archive {
            kind,
            env: Env::new(),
            proxy,
            server,
        }
    }

    /// The archive's URL: `s3://wal/archive` and the like.
    pub fn url(&self) -> String {
        self.url_of("wal")
    }

    /// The URL of an archive in `bucket` (a container on Azure).
    pub fn url_of(&self, bucket: &str) -> String {
        let scheme = match self.kind {
            Kind::S3 => "s3",
            Kind::Gcs => "gs",
            #[cfg(feature = "azure")]
            Kind::Azure => "azure",
        };
        format!("{scheme}://{bucket}/archive")
    }

    /// An object of the archive appears whole, as an upload does.
    pub fn put(&self, name: &str, bytes: &[u8]) {
        self.put_key(&format!("{PREFIX}{name}"), bytes);
    }

    /// An object anywhere in the bucket, by its whole key.
    pub fn put_key(&self, key: &str, bytes: &[u8]) {
        match &self.server {
            Server::S3(s) => {
                let path = s.root().join("wal").join(key);
                fs::create_dir_all(path.parent().unwrap()).unwrap();
                let tmp = self.env.path("object.upload");
                fs::write(&tmp, bytes).unwrap();
                fs::rename(&tmp, path).unwrap();
            }
            Server::Gcs(s) => s.put("wal", key, bytes),
            #[cfg(feature = "azure")]
            Server::Azure(s) => s
                .store("azure://wal")
                .put(key, bytes)
                .unwrap_or_else(|e| panic!("uploading {key}: {e}\n{}", s.log())),
        }
    }

    /// Whether the bucket holds an object of this whole key.
    pub fn has_key(&self, key: &str) -> bool {
        match &self.server {
            Server::S3(s) => s.root().join("wal").join(key).is_file(),
            Server::Gcs(s) => s.names("wal", key).iter().any(|n| n == key),
            #[cfg(feature = "azure")]
            Server::Azure(s) => s
                .store("azure://wal")
                .list(key)
                .unwrap()
                .iter()
                .any(|(n, _)| n == key),
        }
    }

    /// Whether the bucket holds any object whose key starts with `prefix`
    /// (a "directory" of it, ending with `/`).
    pub fn holds_any_under(&self, prefix: &str) -> bool {
        match &self.server {
            Server::S3(s) => fs::read_dir(s.root().join("wal").join(prefix))
                .is_ok_and(|mut d| d.next().is_some()),
            Server::Gcs(s) => !s.names("wal", prefix).is_empty(),
            #[cfg(feature = "azure")]
            Server::Azure(s) => s
                .store(&format!("azure://wal/{prefix}"))
                .list("")
                .is_ok_and(|l| !l.is_empty()),
        }
    }

    /// The archive's objects (not deeper ones, nor the standbys'
    /// registry, `.pg_standby/`), sorted.
    pub fn objects(&self) -> Vec<String> {
        let mut names: Vec<String> = match &self.server {
            Server::S3(s) => fs::read_dir(s.root().join("wal").join(PREFIX))
                .map(|d| {
                    d.map(|e| e.unwrap())
                        .filter(|e| e.file_type().unwrap().is_file())
                        .map(|e| e.file_name().into_string().unwrap())
                        .collect()
                })
                .unwrap_or_default(),
            Server::Gcs(s) => s
                .names("wal", PREFIX)
                .into_iter()
                .map(|n| n.trim_start_matches(PREFIX).to_string())
                .filter(|n| !n.contains('/'))
                .collect(),
            #[cfg(feature = "azure")]
            Server::Azure(s) => s
                .store("azure://wal/archive")
                .list("")
                .unwrap()
                .into_iter()
                .map(|(n, _)| n)
                .collect(),
        };
        names.sort();
        names
    }

    /// The store's own answer when it is overloaded.
    pub fn busy(&self) -> Action {
        self.refusal(match self.kind {
            Kind::S3 => (503, "SlowDown"),
            Kind::Gcs => (429, "rateLimitExceeded"),
            #[cfg(feature = "azure")]
            Kind::Azure => (503, "ServerBusy"),
        })
    }

    /// The store's own answer when it is unavailable for a moment, with
    /// `Retry-After: 1`.
    pub fn unavailable(&self) -> Action {
        let code = match self.kind {
            Kind::S3 => "SlowDown",
            Kind::Gcs => "backendError",
            #[cfg(feature = "azure")]
            Kind::Azure => "ServerBusy",
        };
        Action::status(503, code, Some(1))
    }

    /// The store's own answer when a permission is missing.
    pub fn denied(&self) -> Action {
        self.refusal(match self.kind {
            Kind::S3 => (403, "AccessDenied"),
            Kind::Gcs => (403, "forbidden"),
            #[cfg(feature = "azure")]
            Kind::Azure => (403, "AuthorizationPermissionMismatch"),
        })
    }

    fn refusal(&self, (status, code): (u16, &'static str)) -> Action {
        Action::status(status, code, None)
    }

    /// A command of the binary with `args`, its requests sent `via`, with
    /// the store's variables and none of the caller's.
    pub fn command(&self, via: Via, args: &[String]) -> Command {
        let address = match via {
            Via::Server => address(&self.server),
            Via::Proxy => self.proxy.endpoint.clone(),
            Via::Address(a) => a.to_string(),
        };
        let mut cmd = Command::new(binary());
        cmd.current_dir(&self.env.datadir)
            .args(args)
            .stdin(Stdio::null());
        match self.kind {
            Kind::S3 => {
                cmd.env("AWS_ENDPOINT_URL", address)
                    .env("AWS_ACCESS_KEY_ID", s3_server::ACCESS_KEY)
                    .env("AWS_SECRET_ACCESS_KEY", s3_server::SECRET_KEY)
                    .env("AWS_REGION", s3_server::REGION)
                    .env_remove("AWS_PROFILE");
            }
            Kind::Gcs => {
                // `host:port`, as STORAGE_EMULATOR_HOST takes it; never the
                // metadata address of the machine running the tests.
                cmd.env(
                    "STORAGE_EMULATOR_HOST",
                    address.trim_start_matches("http://"),
                )
                .env_remove("GOOGLE_APPLICATION_CREDENTIALS")
                .env_remove("CLOUDSDK_CONFIG")
                .env("NO_GCE_CHECK", "true");
            }
            #[cfg(feature = "azure")]
            Kind::Azure => {
                for v in [
                    "AZURE_STORAGE_CONNECTION_STRING",
                    "AZURE_STORAGE_SAS_TOKEN",
                    "AZURE_STORAGE_ACCESS_KEY",
                    "AZURE_CLIENT_ID",
                    "AZURE_POD_IDENTITY_AUTHORITY_HOST",
                    "IDENTITY_ENDPOINT",
                    "IDENTITY_HEADER",
                ] {
                    cmd.env_remove(v);
                }
                // Azurite's addresses are path-style: the account is in
                // the path.
                let account = azure_server::ACCOUNT;
                cmd.env("AZURE_STORAGE_ACCOUNT", account)
                    .env("AZURE_STORAGE_KEY", azure_server::KEY)
                    .env(
                        "AZURE_STORAGE_BLOB_ENDPOINT",
                        format!("{address}/{account}"),
                    );
            }
        }
        cmd
    }

    /// A failure the store answers for a while (the proxy's `faults`),
    /// then good answers: the call warns (`warning`), keeps waiting and
    /// restores the segment whole.
    #[track_caller]
    pub fn restores_after(&self, faults: Vec<Action>, warning: &str) {
        let name = "000000010000000000000005";
        let bytes = crate::support::segment(name);
        self.put(name, &bytes);
        let n = faults.len();
        self.proxy.then(faults);
        let opts = ["-d", "-s", "1", "--bad-file-timeout", "2"];
        self.start(Via::Proxy, &opts, name, &[])
            .finish_within(std::time::Duration::from_secs(30))
            .exited(0)
            .logged(warning)
            .logged(&format!("restored {name}"));
        assert!(
            fs::read(self.env.restored()).unwrap() == bytes,
            "%p differs"
        );
        assert_eq!(self.env.stray_files(), Vec::<String>::new());
        assert_eq!(self.proxy.pending(), 0);
        assert!(self.proxy.count() > n, "requests: {:?}", self.proxy.seen());
    }

    /// A restore of `name` from the archive, `via`, with `opts` before the
    /// URL and `extra` after `%p` (`%r`).
    pub fn start(&self, via: Via, opts: &[&str], name: &str, extra: &[&str]) -> Job {
        let args = self.env.restore_args_at(&self.url(), opts, name, extra);
        Job::launch(&self.env, self.command(via, &args))
    }
}

/// The server's address, `http://127.0.0.1:PORT` (Azure's without the
/// account: the proxy forwards to the host).
fn address(server: &Server) -> String {
    match server {
        Server::S3(s) => s.endpoint.clone(),
        Server::Gcs(s) => s.endpoint.clone(),
        #[cfg(feature = "azure")]
        Server::Azure(s) => format!("http://127.0.0.1:{}", s.port),
    }
}

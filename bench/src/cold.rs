//! Cold start: the app's own start-up, measured by spawning the upstream binary and polling it
//! until it answers, beside the time to first byte of a request to a fresh key through valet.
//! valet's share is the difference. The two run alternately so both see the same machine load.

use crate::http::{get_fresh, BoxError};
use crate::stats::{ResultLine, Samples};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

pub struct Cold {
    /// valet's gateway.
    pub valet: SocketAddr,
    /// Request path with `{key}` where the fresh key goes, e.g. `/cold/{key}/`.
    pub path: String,
    /// Prefix of the fresh keys, so repeated runs against one valet never reuse a key.
    pub key_prefix: String,
    pub runs: usize,
    /// The same binary valet's class runs, started here without valet.
    pub upstream_bin: PathBuf,
    /// How often the direct measurement retries while the app is not up yet.
    pub poll: Duration,
}

impl Cold {
    pub async fn run(&self) -> Result<(), BoxError> {
        let mut app = Vec::with_capacity(self.runs);
        let mut through = Vec::with_capacity(self.runs);
        for i in 0..self.runs {
            app.push(self.app_alone().await?);
            let path = self
                .path
                .replace("{key}", &format!("{}{i}", self.key_prefix));
            let (status, first_byte) = get_fresh(self.valet, &path).await?;
            if !status.is_success() {
                return Err(format!("cold request {path} answered {status}").into());
            }
            through.push(first_byte);
        }
        let (app, through) = (
            Samples::from_durations_ms(&app),
            Samples::from_durations_ms(&through),
        );
        ResultLine::new()
            .int("runs", self.runs)
            .num("app_p50_ms", app.pct(50.0))
            .num("app_p90_ms", app.pct(90.0))
            .num("valet_p50_ms", through.pct(50.0))
            .num("valet_p90_ms", through.pct(90.0))
            .num("share_p50_ms", through.pct(50.0) - app.pct(50.0))
            .num("share_p90_ms", through.pct(90.0) - app.pct(90.0))
            .print();
        Ok(())
    }

    /// Spawn to first answered request, polling every `poll`; the process is killed after.
    async fn app_alone(&self) -> Result<Duration, BoxError> {
        let port = free_port()?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let started = Instant::now();
        let mut child = tokio::process::Command::new(&self.upstream_bin)
            .arg(port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        let deadline = started + Duration::from_secs(10);
        let answered = loop {
            if let Ok((status, _)) = get_fresh(addr, "/").await {
                if status.is_success() {
                    break started.elapsed();
                }
            }
            if Instant::now() > deadline {
                return Err("the upstream did not answer within 10 s".into());
            }
            tokio::time::sleep(self.poll).await;
        };
        child.kill().await?;
        Ok(answered)
    }
}

/// A port that was free a moment ago; the kernel does not hand it out again right away.
fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

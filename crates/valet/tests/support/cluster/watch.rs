//! Watching one key while a fault happens: who answers for it through each replica, and which
//! of its backends run, sampled continuously, so a test can say that no two replicas ever
//! served the key at once.
//!
//! ```ignore
//! let watch = Watch::key(&replicas, "k1", "/k/k1/who").every(Duration::from_millis(50)).start();
//! lab.cut(1); watch.pause(1);   // the test process cannot reach a cut node either ...
//! // ... but `.inside(1, &lab.nsenter(1))` keeps asking replica 1 from within its own node
//! let report = watch.stop().await;
//! assert_eq!(report.duplicates(), 0, "{report}");
//! ```

use super::Replicas;
use crate::support::procs::{eventually, pid_alive, read_starts};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Who answered one request: the backend's echo of `VALET_NODE`, its pid and `VALET_EPOCH`.
/// Two are the same backend whatever their answers' times.
#[derive(Debug, Clone)]
pub struct Served {
    pub node: String,
    pub pid: u32,
    pub epoch: u64,
    /// When the backend made the answer (CLOCK_MONOTONIC, nanoseconds).
    pub at_ns: Option<u64>,
}

impl PartialEq for Served {
    fn eq(&self, other: &Self) -> bool {
        (&self.node, self.pid, self.epoch) == (&other.node, other.pid, other.epoch)
    }
}

impl Eq for Served {}

/// CLOCK_MONOTONIC now, in nanoseconds (the clock the test backend stamps its answers with).
pub fn monotonic_ns() -> u64 {
    let now =
        nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).expect("CLOCK_MONOTONIC");
    now.tv_sec() as u64 * 1_000_000_000 + now.tv_nsec() as u64
}

/// GET `url` within `within`: the backend that answered, or why none did (`"503 {...}"`, or
/// the client's error).
pub async fn who(client: &reqwest::Client, url: &str, within: Duration) -> Result<Served, String> {
    let response = client
        .get(url)
        .timeout(within)
        .send()
        .await
        .map_err(|e| format!("no answer: {e}"))?;
    let status = response.status();
    let retry_after = response.headers().get("retry-after").cloned();
    let text = response.text().await.map_err(|e| format!("body: {e}"))?;
    if status != reqwest::StatusCode::OK {
        let retry = retry_after.map_or(String::new(), |v| {
            format!(" retry-after={}", v.to_str().unwrap_or("?"))
        });
        return Err(format!("{}{retry} {text}", status.as_u16()));
    }
    served(&text).ok_or_else(|| format!("200 but not an echo: {text}"))
}

/// The [`Served`] of a backend's echo JSON.
pub fn served(text: &str) -> Option<Served> {
    let echo: serde_json::Value = serde_json::from_str(text).ok()?;
    Some(Served {
        node: echo["node"].as_str()?.to_string(),
        pid: echo["pid"].as_u64()? as u32,
        epoch: echo["epoch"].as_str()?.parse().ok()?,
        at_ns: echo["monotonic_ns"].as_u64(),
    })
}

/// One sampled request.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The replica asked.
    pub replica: usize,
    /// Asked from within the replica's own node (see [`WatchBuilder::inside`]).
    pub inside: bool,
    /// When it was sent and answered (or given up), since the watch started.
    pub sent: Duration,
    pub done: Duration,
    pub result: Result<Served, String>,
}

/// A watch being set up; see [`Watch::key`].
pub struct WatchBuilder {
    urls: Vec<(usize, String)>,
    /// Replicas also asked from within their node: (replica, command prefix).
    inside: Vec<(usize, Vec<String>)>,
    starts: Vec<PathBuf>,
    key: String,
    every: Duration,
    within: Duration,
}

/// A running watch: a task that asks every replica not paused every `every`, and a thread that
/// looks at the key's backend processes every 10 ms.
pub struct Watch {
    began: Instant,
    /// CLOCK_MONOTONIC at `began`.
    began_ns: u64,
    paused: Arc<Vec<AtomicBool>>,
    stop: Arc<AtomicBool>,
    answers: Arc<Mutex<Vec<Answer>>>,
    asker: tokio::task::JoinHandle<()>,
    looker: std::thread::JoinHandle<Processes>,
    insiders: Vec<std::thread::JoinHandle<()>>,
}

/// What the process thread saw.
#[derive(Debug, Default)]
pub struct Processes {
    /// Per backend pid: first and last moment it was seen alive.
    pub alive: BTreeMap<u32, (Duration, Duration)>,
    /// Samples in which two or more of the key's backends were alive at once.
    pub together: Vec<(Duration, BTreeSet<u32>)>,
    pub samples: usize,
}

/// Everything a watch saw.
#[derive(Debug)]
pub struct Report {
    pub answers: Vec<Answer>,
    pub processes: Processes,
    /// CLOCK_MONOTONIC when the watch started, to place backends' answer stamps on its clock.
    pub began_ns: u64,
}

impl Watch {
    /// Watches `key` through `path` (which must reach the echo of the key's backend) on every
    /// replica, and the backends of `key` in every replica's STARTS_FILE.
    pub fn key(replicas: &Replicas, key: &str, path: &str) -> WatchBuilder {
        WatchBuilder {
            urls: (1..=replicas.len())
                .map(|i| (i, replicas.url(i, path)))
                .collect(),
            starts: (1..=replicas.len())
                .map(|i| replicas.valet(i).dir().join("starts"))
                .collect(),
            inside: Vec::new(),
            key: key.to_string(),
            every: Duration::from_millis(50),
            within: Duration::from_secs(1),
        }
    }

    /// Since the watch started.
    pub fn now(&self) -> Duration {
        self.began.elapsed()
    }

    /// Stops asking replica `i` (it is cut off, or dead) until [`Self::resume`].
    pub fn pause(&self, i: usize) {
        self.paused[i - 1].store(true, Ordering::SeqCst);
    }

    pub fn resume(&self, i: usize) {
        self.paused[i - 1].store(false, Ordering::SeqCst);
    }

    /// The answers so far.
    pub fn answers(&self) -> Vec<Answer> {
        self.answers.lock().unwrap().clone()
    }

    /// Waits, `within` at most (then panics), until replica `node` served the key in an
    /// answer that came after `since` (on [`Self::now`]'s clock): a takeover.
    pub async fn served_by(&self, node: &str, since: Duration, within: Duration) {
        let what = format!("{node} serves the watched key");
        eventually(within, &what, || async {
            let answers = self.answers();
            let served = answers
                .iter()
                .any(|a| a.done > since && a.result.as_ref().is_ok_and(|s| s.node == node));
            served.then_some(())
        })
        .await;
    }

    /// Ends the watch once the requests in flight are answered or given up.
    pub async fn stop(self) -> Report {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.asker.await;
        let (looker, insiders) = (self.looker, self.insiders);
        let processes = tokio::task::spawn_blocking(move || {
            for insider in insiders {
                insider.join().unwrap();
            }
            looker.join().unwrap()
        })
        .await
        .unwrap();
        let mut answers = self.answers.lock().unwrap().clone();
        answers.sort_by_key(|a| a.sent);
        Report {
            answers,
            processes,
            began_ns: self.began_ns,
        }
    }
}

impl WatchBuilder {
    /// How often each replica is asked (default 50 ms).
    pub fn every(mut self, every: Duration) -> Self {
        self.every = every;
        self
    }

    /// How long one request may take before it counts as unanswered (default 1 s).
    pub fn within(mut self, within: Duration) -> Self {
        self.within = within;
        self
    }

    /// Also asks replica `i` from within its node, through `wrapper` (`Lab::nsenter`) and
    /// curl, never paused: the clients a partition leaves on the cut node's side.
    pub fn inside(mut self, i: usize, wrapper: &[String]) -> Self {
        self.inside.push((i, wrapper.to_vec()));
        self
    }

    pub fn start(self) -> Watch {
        let began = Instant::now();
        let began_ns = monotonic_ns();
        let paused = Arc::new(
            self.urls
                .iter()
                .map(|_| AtomicBool::new(false))
                .collect::<Vec<_>>(),
        );
        let stop = Arc::new(AtomicBool::new(false));
        let answers = Arc::new(Mutex::new(Vec::new()));
        let asker = tokio::spawn(ask(
            self.urls.clone(),
            self.every,
            self.within,
            began,
            paused.clone(),
            stop.clone(),
            answers.clone(),
        ));
        let insiders = self
            .inside
            .into_iter()
            .map(|(i, wrapper)| {
                let url = self.urls[i - 1].1.clone();
                let (stop, answers, every, within) =
                    (stop.clone(), answers.clone(), self.every, self.within);
                std::thread::spawn(move || {
                    while !stop.load(Ordering::SeqCst) {
                        let sent = began.elapsed();
                        let result = curl(&wrapper, &url, within);
                        let done = began.elapsed();
                        answers.lock().unwrap().push(Answer {
                            replica: i,
                            inside: true,
                            sent,
                            done,
                            result,
                        });
                        std::thread::sleep(every.saturating_sub(done - sent));
                    }
                })
            })
            .collect();
        let (starts, key, done) = (self.starts, self.key, stop.clone());
        let looker = std::thread::spawn(move || look(&starts, &key, began, &done));
        Watch {
            began,
            began_ns,
            paused,
            stop,
            answers,
            asker,
            looker,
            insiders,
        }
    }
}

async fn ask(
    urls: Vec<(usize, String)>,
    every: Duration,
    within: Duration,
    began: Instant,
    paused: Arc<Vec<AtomicBool>>,
    stop: Arc<AtomicBool>,
    answers: Arc<Mutex<Vec<Answer>>>,
) {
    // Connections are not reused across samples: a pooled one to a cut node would hang.
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .build()
        .expect("reqwest client");
    let mut inflight = tokio::task::JoinSet::new();
    let mut tick = tokio::time::interval(every);
    while !stop.load(Ordering::SeqCst) {
        tick.tick().await;
        for (i, url) in &urls {
            if paused[i - 1].load(Ordering::SeqCst) {
                continue;
            }
            let (client, url, answers, replica) =
                (client.clone(), url.clone(), answers.clone(), *i);
            inflight.spawn(async move {
                let sent = began.elapsed();
                let result = who(&client, &url, within).await;
                let done = began.elapsed();
                answers.lock().unwrap().push(Answer {
                    replica,
                    inside: false,
                    sent,
                    done,
                    result,
                });
            });
        }
        while inflight.try_join_next().is_some() {}
    }
    while inflight.join_next().await.is_some() {}
}

/// GET `url` with curl under `wrapper` (a program that runs it in another network namespace).
fn curl(wrapper: &[String], url: &str, within: Duration) -> Result<Served, String> {
    let out = std::process::Command::new(&wrapper[0])
        .args(&wrapper[1..])
        .args(["curl", "-s", "--noproxy", "*", "-w", "\n%{http_code}"])
        .args(["-m", &format!("{:.3}", within.as_secs_f64()), url])
        .output()
        .map_err(|e| format!("curl: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    match code {
        "200" => served(body).ok_or_else(|| format!("200 but not an echo: {body}")),
        "000" | "" => Err(format!("no answer (curl exit {})", out.status)),
        code => Err(format!("{code} {body}")),
    }
}

fn look(starts: &[PathBuf], key: &str, began: Instant, stop: &AtomicBool) -> Processes {
    let mut seen = Processes::default();
    while !stop.load(Ordering::SeqCst) {
        let now = began.elapsed();
        let alive: BTreeSet<u32> = starts
            .iter()
            .flat_map(|path| read_starts(path))
            .filter(|s| s.key == key && pid_alive(s.pid))
            .map(|s| s.pid)
            .collect();
        for pid in &alive {
            seen.alive
                .entry(*pid)
                .and_modify(|(_, last)| *last = now)
                .or_insert((now, now));
        }
        if alive.len() > 1 {
            seen.together.push((now, alive));
        }
        seen.samples += 1;
        std::thread::sleep(Duration::from_millis(10));
    }
    seen
}

impl Report {
    /// Moments at which two different backends of the key answered or ran at once: pairs of
    /// backends whose answer spans overlap, plus process samples with two alive. Must be 0.
    pub fn duplicates(&self) -> usize {
        self.overlapping_answers().len() + self.processes.together.len()
    }

    /// Pairs of backends (by pid) whose first-to-last answer spans overlap, by when each
    /// backend made its answers (an answer held up on its way back, by a partition say, was
    /// still made while its backend served).
    pub fn overlapping_answers(&self) -> Vec<(Served, Served)> {
        let spans = self.spans();
        let mut out = Vec::new();
        for (i, (a, a_from, a_to)) in spans.iter().enumerate() {
            for (b, b_from, b_to) in &spans[i + 1..] {
                if a_from <= b_to && b_from <= a_to {
                    out.push((a.clone(), b.clone()));
                }
            }
        }
        out
    }

    /// Each backend that answered, with its first answer's send time and last answer's time.
    pub fn spans(&self) -> Vec<(Served, Duration, Duration)> {
        let mut spans: Vec<(Served, Duration, Duration)> = Vec::new();
        for answer in &self.answers {
            let Ok(served) = &answer.result else { continue };
            let made = served.at_ns.map_or(answer.done, |ns| {
                Duration::from_nanos(ns.saturating_sub(self.began_ns))
            });
            match spans.iter_mut().find(|(s, _, _)| s.pid == served.pid) {
                Some((_, from, to)) => {
                    *from = (*from).min(made);
                    *to = (*to).max(made);
                }
                None => spans.push((served.clone(), made, made)),
            }
        }
        spans
    }

    /// Requests through replica `replica`'s listener from the test process (not from inside
    /// its node) sent at or after `since`: (served, failed).
    pub fn tally(&self, replica: usize, since: Duration) -> (usize, usize) {
        let after = self
            .answers
            .iter()
            .filter(|a| a.replica == replica && !a.inside && a.sent >= since);
        after.fold((0, 0), |(ok, failed), a| match a.result {
            Ok(_) => (ok + 1, failed),
            Err(_) => (ok, failed + 1),
        })
    }

    /// The backend that answered the last request sent.
    pub fn last_served(&self) -> Served {
        let answer = self.answers.iter().rev().find(|a| a.result.is_ok());
        answer.expect("some answer").result.clone().unwrap()
    }

    /// Answers that were not a backend's 200.
    pub fn failed(&self) -> Vec<&Answer> {
        self.answers.iter().filter(|a| a.result.is_err()).collect()
    }

    /// The first answer at or after `since` served by a backend on `node`.
    pub fn first_from(&self, node: &str, since: Duration) -> Option<&Answer> {
        self.answers
            .iter()
            .filter(|a| a.done >= since)
            .filter(|a| a.result.as_ref().is_ok_and(|s| s.node == node))
            .min_by_key(|a| a.done)
    }

    /// The last answer served by a backend on `node`.
    pub fn last_from(&self, node: &str) -> Option<&Answer> {
        self.answers
            .iter()
            .filter(|a| a.result.as_ref().is_ok_and(|s| s.node == node))
            .max_by_key(|a| a.done)
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{} answers, {} failed; backends alive: {:?}; together: {:?}",
            self.answers.len(),
            self.failed().len(),
            self.processes.alive,
            self.processes.together
        )?;
        for (served, from, to) in self.spans() {
            writeln!(f, "  {served:?} answered {from:?}..{to:?}")?;
        }
        // The failures, grouped by who asked and what came back (the error's first words).
        let mut kinds: BTreeMap<(String, String), (usize, Duration, Duration)> = BTreeMap::new();
        for answer in self.failed() {
            let error = answer.result.as_ref().unwrap_err();
            let kind: String = error.chars().take(90).collect();
            let asked = match answer.inside {
                true => format!("replica {} from inside its node", answer.replica),
                false => format!("replica {}", answer.replica),
            };
            let entry = kinds
                .entry((asked, kind))
                .or_insert((0, answer.sent, answer.done));
            entry.0 += 1;
            entry.1 = entry.1.min(answer.sent);
            entry.2 = entry.2.max(answer.done);
        }
        for ((asked, kind), (n, from, to)) in kinds {
            writeln!(f, "  {asked}: {n} x {kind} ({from:?}..{to:?})")?;
        }
        Ok(())
    }
}

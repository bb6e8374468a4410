//! The upload part of `valet deploy`'s progress: the file goes out as a counted stream of
//! chunks, and while the request is being sent a bar (bytes sent of the total, percentage,
//! rate) is redrawn on stderr. Only on a terminal: piped into a file or a CI log, escape codes
//! and carriage returns are noise, so there is one `uploaded N bytes` line instead. Stdout is
//! never touched (`--json` stays clean).

use bytes::Bytes;
use futures_util::stream::{self, Stream, StreamExt};
use std::future::Future;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Size of the chunks the upload is handed to the HTTP client in: small enough that the bar
/// moves on a slow link, large enough that counting costs nothing.
const CHUNK: usize = 64 * 1024;

/// How often the bar is redrawn.
const REDRAW: Duration = Duration::from_millis(100);

/// Width of the bar itself, in characters.
const BAR_WIDTH: usize = 30;

/// One upload's progress: how many bytes the HTTP client has taken so far.
pub struct UploadProgress {
    total: u64,
    sent: Arc<AtomicU64>,
    terminal: bool,
}

impl UploadProgress {
    /// Progress of an upload of `total` bytes, drawn as a bar when stderr is a terminal.
    pub fn new(total: u64) -> Self {
        Self {
            total,
            sent: Arc::new(AtomicU64::new(0)),
            terminal: std::io::stderr().is_terminal(),
        }
    }

    /// `bytes` as a request body that counts what the client takes.
    pub fn body(&self, bytes: Vec<u8>) -> reqwest::Body {
        reqwest::Body::wrap_stream(counted(Bytes::from(bytes), self.sent.clone()))
    }

    /// Runs `request` (the send, which ends once valet has read the upload and answered),
    /// redrawing the bar meanwhile; then ends the bar's line, or prints the one summary line.
    pub async fn during<F: Future>(&self, request: F) -> F::Output {
        let started = Instant::now();
        let output = if self.terminal {
            // The first frame after one period: a rate measured over no time means nothing.
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + REDRAW, REDRAW);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            tokio::pin!(request);
            loop {
                tokio::select! {
                    output = &mut request => break output,
                    _ = tick.tick() => self.draw(started.elapsed()),
                }
            }
        } else {
            request.await
        };
        let elapsed = started.elapsed();
        let sent = self.sent.load(Ordering::Relaxed);
        if self.terminal {
            self.draw(elapsed);
            eprintln!();
        } else if let Some(line) = summary(sent, self.total, elapsed) {
            eprintln!("{line}");
        }
        output
    }

    fn draw(&self, elapsed: Duration) {
        let line = bar(self.sent.load(Ordering::Relaxed), self.total, elapsed);
        // Back to the start of the line and clear it: the new bar may be shorter.
        let mut stderr = std::io::stderr().lock();
        let _ = write!(stderr, "\r\x1b[2K{line}");
        let _ = stderr.flush();
    }
}

/// `data` in chunks of [`CHUNK`] bytes, adding each chunk's length to `sent` as the client
/// takes it.
fn counted(
    data: Bytes,
    sent: Arc<AtomicU64>,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    let chunks = (0..data.len())
        .step_by(CHUNK)
        .map(move |start| data.slice(start..(start + CHUNK).min(data.len())));
    stream::iter(chunks).map(move |chunk| {
        sent.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        Ok(chunk)
    })
}

/// The bar: `uploading [#####     ]  50%  1.0 MiB / 2.0 MiB  512.0 KiB/s`.
fn bar(sent: u64, total: u64, elapsed: Duration) -> String {
    let fraction = if total == 0 {
        1.0
    } else {
        (sent as f64 / total as f64).min(1.0)
    };
    let filled = (fraction * BAR_WIDTH as f64).round() as usize;
    format!(
        "uploading [{}{}] {:>3}%  {} / {}  {}",
        "#".repeat(filled),
        " ".repeat(BAR_WIDTH - filled),
        (fraction * 100.0).floor() as u32,
        size(sent),
        size(total),
        rate(sent, elapsed),
    )
}

/// The one line for a log: what went out, and how fast. Nothing when nothing was sent (the
/// connection failed; the error says so).
fn summary(sent: u64, total: u64, elapsed: Duration) -> Option<String> {
    if sent == 0 && total > 0 {
        return None;
    }
    let of = if sent < total {
        format!(" of {total}")
    } else {
        String::new()
    };
    Some(format!(
        "uploaded {sent}{of} bytes in {:.1} s ({})",
        elapsed.as_secs_f64(),
        rate(sent, elapsed)
    ))
}

fn rate(sent: u64, elapsed: Duration) -> String {
    // Under a millisecond says nothing about the link.
    if elapsed < Duration::from_millis(1) {
        return "-/s".into();
    }
    let per_second = sent as f64 / elapsed.as_secs_f64();
    format!("{}/s", size(per_second as u64))
}

/// Bytes for people: `512 B`, `1.5 KiB`, `20.0 MiB`.
fn size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_stream_carries_every_byte_and_counts_them_as_they_are_taken() {
        let data: Vec<u8> = (0..(CHUNK * 2 + 100)).map(|i| i as u8).collect();
        let sent = Arc::new(AtomicU64::new(0));
        let mut stream = Box::pin(counted(Bytes::from(data.clone()), sent.clone()));
        let mut received = Vec::new();
        let mut counts = Vec::new();
        while let Some(chunk) = stream.next().await {
            received.extend_from_slice(&chunk.unwrap());
            counts.push(sent.load(Ordering::Relaxed));
        }
        assert_eq!(received, data);
        // Counted chunk by chunk, not all at once at the start.
        let chunk = CHUNK as u64;
        assert_eq!(counts, [chunk, 2 * chunk, 2 * chunk + 100]);
    }

    #[tokio::test]
    async fn an_empty_upload_is_an_empty_stream() {
        let sent = Arc::new(AtomicU64::new(0));
        let chunks: Vec<_> = counted(Bytes::new(), sent.clone()).collect().await;
        assert!(chunks.is_empty());
        assert_eq!(sent.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn the_bar_shows_bytes_percentage_and_rate() {
        let half = bar(1024 * 1024, 2 * 1024 * 1024, Duration::from_secs(2));
        assert_eq!(
            half,
            format!(
                "uploading [{}{}]  50%  1.0 MiB / 2.0 MiB  512.0 KiB/s",
                "#".repeat(15),
                " ".repeat(15)
            )
        );
        let done = bar(300, 300, Duration::from_millis(500));
        assert!(
            done.contains(&format!(
                "[{}] 100%  300 B / 300 B  600 B/s",
                "#".repeat(30)
            )),
            "{done}"
        );
        assert!(
            bar(0, 0, Duration::ZERO).contains("100%"),
            "nothing to send"
        );
        // Not a byte more than 100%, even if the count ran past the total.
        assert!(bar(10, 5, Duration::from_secs(1)).contains("100%"));
    }

    #[test]
    fn the_summary_line_says_what_went_out() {
        assert_eq!(
            summary(2048, 2048, Duration::from_secs(2)).unwrap(),
            "uploaded 2048 bytes in 2.0 s (1.0 KiB/s)"
        );
        assert_eq!(
            summary(1024, 2048, Duration::from_secs(1)).unwrap(),
            "uploaded 1024 of 2048 bytes in 1.0 s (1.0 KiB/s)"
        );
        assert_eq!(summary(0, 2048, Duration::from_secs(1)), None);
    }

    #[test]
    fn sizes_read_like_people_write_them() {
        assert_eq!(size(0), "0 B");
        assert_eq!(size(1023), "1023 B");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(20 * 1024 * 1024), "20.0 MiB");
        assert_eq!(size(3 * 1024 * 1024 * 1024), "3.0 GiB");
    }
}

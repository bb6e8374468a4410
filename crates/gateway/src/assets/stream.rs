//! Response bodies that stream a file in chunks, as it is or compressed on the fly; a file is
//! never read into memory whole.

use std::io::{self, Seek, SeekFrom};

use async_compression::tokio::bufread::{BrotliEncoder, GzipEncoder};
use async_compression::Level;
use futures_util::TryStreamExt;
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use tokio::io::{AsyncRead, AsyncReadExt, BufReader};
use tokio_util::io::ReaderStream;

use super::negotiate::Encoding;
use crate::body::{Body, BoxError};

/// Read size: large enough to keep syscalls (and blocking-pool hops) few, small enough that many
/// concurrent downloads stay cheap.
const CHUNK: usize = 64 * 1024;

/// Brotli's default (11) is meant for build-time compression; 4 compresses about as well as gzip's
/// best at a fraction of the CPU, which is what a per-request encoder needs. Files that deserve
/// 11 can ship a precompressed `.br` sibling.
const BROTLI_ON_THE_FLY: i32 = 4;

/// `len` bytes of `file` from `start`.
pub(crate) fn file_range(mut file: std::fs::File, start: u64, len: u64) -> io::Result<Body> {
    // lseek only moves the file offset and never waits for the disk, so it is done here rather
    // than through another blocking-pool trip.
    if start > 0 {
        file.seek(SeekFrom::Start(start))?;
    }
    let reader = tokio::fs::File::from_std(file).take(len);
    Ok(reader_body(reader))
}

/// The whole file, compressed with `encoding` as it is read.
pub(crate) fn compressed(file: std::fs::File, encoding: Encoding) -> Body {
    let reader = BufReader::with_capacity(CHUNK, tokio::fs::File::from_std(file));
    match encoding {
        Encoding::Brotli => reader_body(BrotliEncoder::with_quality(
            reader,
            Level::Precise(BROTLI_ON_THE_FLY),
        )),
        Encoding::Gzip => reader_body(GzipEncoder::with_quality(reader, Level::Default)),
    }
}

fn reader_body<R: AsyncRead + Send + 'static>(reader: R) -> Body {
    let frames = ReaderStream::with_capacity(reader, CHUNK)
        .map_ok(Frame::data)
        .map_err(BoxError::from);
    StreamBody::new(frames).boxed_unsync()
}

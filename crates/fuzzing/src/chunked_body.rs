//! An instance's chunked body as valet decodes it (crates/gateway/src/http1/response.rs `decode_chunk`, a
//! hand-written state machine fed whatever the socket gave), held to RFC 9112 7.1 (`wire`, which
//! like valet skips extensions and trailers unread), to itself fed in other pieces, and to what
//! `encode_chunk` writes.

use crate::wire;
use bytes::BytesMut;
use valet_gateway::http1::chunked::{decode_chunk, encode_chunk, Chunk, LAST_CHUNK};

/// Longest chunk-size line and trailer section valet reads (http1/chunked.rs `MAX_CHUNK_LINE`,
/// `MAX_TRAILERS`): a body the reference takes may be refused past them.
const MAX_CHUNK_LINE: usize = 4096;
const MAX_TRAILERS: usize = 16 * 1024;

/// What decoding a whole input came to.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Failed,
    /// The data so far; the body needs more bytes.
    More(Vec<u8>),
    /// The data and the length of the body on the wire (bytes after it are the next answer's).
    Ended(Vec<u8>, usize),
}

/// Input: the bytes after an answer head that said `Transfer-Encoding: chunked`.
pub fn chunked_body(data: &[u8]) {
    // Where the socket's reads split the body must not change what it decodes to.
    let whole = decode(data, usize::MAX);
    // Byte by byte, a long line costs a scan of all of it per byte: short inputs only.
    let steps: &[usize] = if data.len() <= 1024 {
        &[1, 2, 7, 64]
    } else {
        &[64, 509]
    };
    for &step in steps {
        assert_eq!(decode(data, step), whole, "fed {step} bytes at a time");
    }
    match (&whole, wire::chunked(data)) {
        (Outcome::Ended(got, end), Ok(Some((want, want_end)))) => {
            assert_eq!((got, end), (&want, &want_end), "valet and RFC 9112 differ");
        }
        (Outcome::Ended(got, end), reference) => panic!(
            "valet ended a body of {} bytes at {end} that RFC 9112 does not ({reference:?}): {:?}",
            got.len(),
            String::from_utf8_lossy(data)
        ),
        (_, Ok(Some((_, end)))) => {
            // valet may refuse a valid body only past its own limits.
            assert!(
                over_limits(&data[..end]),
                "valet does not end a valid body ({whole:?}): {:?}",
                String::from_utf8_lossy(data)
            );
        }
        _ => {}
    }
    round_trip(data);
}

/// Runs the decoder over `wire` given to it `step` bytes at a time, as reads would.
fn decode(wire: &[u8], step: usize) -> Outcome {
    let mut buf = BytesMut::new();
    let mut state = Chunk::Size;
    let mut data = Vec::new();
    let mut fed = 0;
    loop {
        let Ok((next, piece)) = decode_chunk(&mut buf, state) else {
            return Outcome::Failed;
        };
        if next == Chunk::Trailers(usize::MAX) {
            return Outcome::Ended(data, fed - buf.len());
        }
        if let Some(piece) = &piece {
            assert!(!piece.is_empty(), "an empty data frame");
            data.extend_from_slice(piece);
        }
        if next == state && piece.is_none() {
            if fed == wire.len() {
                return Outcome::More(data);
            }
            let end = wire.len().min(fed.saturating_add(step));
            buf.extend_from_slice(&wire[fed..end]);
            fed = end;
        }
        state = next;
    }
}

/// Whether a body breaks one of valet's limits: a chunk-size line longer than it reads, a
/// size of more than 15 hex digits (more than it counts without overflow), or a trailer
/// section larger than it skips.
fn over_limits(body: &[u8]) -> bool {
    let mut at = 0;
    loop {
        let Some(lf) = body[at..].iter().position(|&b| b == b'\n') else {
            return false;
        };
        let line = &body[at..at + lf];
        let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
        if lf > MAX_CHUNK_LINE || digits > 15 {
            return true;
        }
        let size = u64::from_str_radix(std::str::from_utf8(&line[..digits]).unwrap(), 16)
            .unwrap_or(u64::MAX);
        at += lf + 1;
        if size == 0 {
            return body.len() - at > MAX_TRAILERS;
        }
        at = at.saturating_add(size as usize).saturating_add(2);
        if at > body.len() {
            return false;
        }
    }
}

/// The input cut into chunks (the cut lengths taken from its own bytes), encoded as valet
/// encodes a body for a client, decodes to the input again, however it is fed.
fn round_trip(data: &[u8]) {
    let mut wire = BytesMut::new();
    let mut rest = data;
    while !rest.is_empty() {
        let n = (usize::from(rest[0]) + 1).min(rest.len());
        encode_chunk(&rest[..n], &mut wire);
        rest = &rest[n..];
    }
    wire.extend_from_slice(LAST_CHUNK);
    let want = Outcome::Ended(data.to_vec(), wire.len());
    for step in [usize::MAX, 3] {
        assert_eq!(
            decode(&wire, step),
            want,
            "valet's own chunking, fed by {step}"
        );
    }
}

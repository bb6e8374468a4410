//! Chunked bodies (RFC 9112 7.1), with no I/O: [`encode_chunk`] writes one chunk, and
//! [`decode_chunk`] takes one step over what is buffered, whichever way the reads split it.

use super::response::BadResponse;
use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Longest chunk-size line (with extensions) and total trailer section accepted.
const MAX_CHUNK_LINE: usize = 4096;
const MAX_TRAILERS: usize = 16 * 1024;

/// Appends one chunk of a chunked body.
pub fn encode_chunk(data: &[u8], out: &mut BytesMut) {
    out.reserve(data.len() + 20);
    let mut size = [0u8; 16];
    let digits = hex(data.len() as u64, &mut size);
    out.put_slice(digits);
    out.put_slice(b"\r\n");
    out.put_slice(data);
    out.put_slice(b"\r\n");
}

/// The last chunk, with no trailers.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

fn hex(mut n: u64, buf: &mut [u8; 16]) -> &[u8] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = DIGITS[(n & 15) as usize];
        n >>= 4;
        if n == 0 {
            return &buf[i..];
        }
    }
}

/// Where a chunked body's reader is. Public (hidden) only for the fuzz targets in
/// crates/fuzzing, which drive [`decode_chunk`] without a connection.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunk {
    Size,
    Data(u64),
    DataEnd,
    Trailers(usize),
}

/// One step of a chunked body over what is buffered: the next state and maybe data. The same
/// state and no data means more bytes are needed. `Trailers(usize::MAX)` marks the end.
#[doc(hidden)]
pub fn decode_chunk(
    buf: &mut BytesMut,
    state: Chunk,
) -> Result<(Chunk, Option<Bytes>), BadResponse> {
    match state {
        Chunk::Size => {
            let Some(end) = buf.iter().position(|&b| b == b'\n') else {
                if buf.len() > MAX_CHUNK_LINE {
                    return Err(BadResponse::Chunked);
                }
                return Ok((state, None));
            };
            // The limit holds however the line arrived: checked only while it is incomplete,
            // a long line that came in one read would pass where the same line in two fails.
            if end > MAX_CHUNK_LINE {
                return Err(BadResponse::Chunked);
            }
            let line = buf[..end].strip_suffix(b"\r").ok_or(BadResponse::Chunked)?;
            let mut digits = line.split(|&b| b == b';').next().unwrap_or_default();
            // Only SP and HTAB may come before a `;` (BWS): a bare CR or a form feed there is
            // no whitespace of HTTP's.
            while let [rest @ .., b' ' | b'\t'] = digits {
                digits = rest;
            }
            if digits.is_empty() || digits.len() > 15 {
                return Err(BadResponse::Chunked);
            }
            let mut size = 0u64;
            for &d in digits {
                let v = (d as char).to_digit(16).ok_or(BadResponse::Chunked)?;
                size = size * 16 + u64::from(v);
            }
            buf.advance(end + 1);
            Ok((
                if size == 0 {
                    Chunk::Trailers(0)
                } else {
                    Chunk::Data(size)
                },
                None,
            ))
        }
        Chunk::Data(left) => {
            if buf.is_empty() {
                return Ok((state, None));
            }
            let n = (buf.len() as u64).min(left);
            let data = buf.split_to(n as usize).freeze();
            let next = if n == left {
                Chunk::DataEnd
            } else {
                Chunk::Data(left - n)
            };
            Ok((next, Some(data)))
        }
        Chunk::DataEnd => {
            if buf.len() < 2 {
                return Ok((state, None));
            }
            if &buf[..2] != b"\r\n" {
                return Err(BadResponse::Chunked);
            }
            buf.advance(2);
            Ok((Chunk::Size, None))
        }
        Chunk::Trailers(seen) => {
            // Every line counts with its LF, the empty one too, whether it is whole or still
            // arriving: the limit then falls at the same byte however the reads split it.
            let Some(end) = buf.iter().position(|&b| b == b'\n') else {
                if seen + buf.len() + 1 > MAX_TRAILERS {
                    return Err(BadResponse::Chunked);
                }
                return Ok((state, None));
            };
            let seen = seen + end + 1;
            if seen > MAX_TRAILERS {
                return Err(BadResponse::Chunked);
            }
            // Trailer fields are dropped: the head has gone to the client already.
            let empty = buf[..end] == *b"\r" || end == 0;
            buf.advance(end + 1);
            if empty {
                return Ok((Chunk::Trailers(usize::MAX), None));
            }
            Ok((Chunk::Trailers(seen), None))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_bodies_decode_across_splits() {
        let wire = b"5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nTrailer: x\r\n\r\n";
        // Feed the bytes one at a time and all at once: the same data comes out.
        for step in [1, 3, wire.len()] {
            let mut buf = BytesMut::new();
            let mut state = Chunk::Size;
            let mut out = Vec::new();
            let mut fed = 0;
            loop {
                let (next, data) = decode_chunk(&mut buf, state).unwrap();
                if next == Chunk::Trailers(usize::MAX) {
                    break;
                }
                if let Some(d) = &data {
                    out.extend_from_slice(d);
                }
                if next == state && data.is_none() {
                    let end = (fed + step).min(wire.len());
                    assert!(fed < end, "ran out of input in state {state:?}");
                    buf.extend_from_slice(&wire[fed..end]);
                    fed = end;
                }
                state = next;
            }
            assert_eq!(out, b"hello, world");
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn bad_chunking_fails() {
        for bad in [
            b"zz\r\n".to_vec(),
            b"5\r\nhelloXX".to_vec(),
            b"\r\n".to_vec(),
            b"1234567890abcdef0\r\n".to_vec(),
            // Found by the fuzz target `chunked_body`: a bare CR or a form feed after the
            // size was taken for whitespace.
            b"5\r\r\nhello\r\n".to_vec(),
            b"5\x0c;x\r\nhello\r\n".to_vec(),
            // ... and a size line past the limit passed when it came in one read.
            [&b"5;"[..], &[b'e'; MAX_CHUNK_LINE], b"\r\nhello\r\n"].concat(),
        ] {
            let mut buf = BytesMut::from(&bad[..]);
            let mut state = Chunk::Size;
            let result = loop {
                match decode_chunk(&mut buf, state) {
                    Err(e) => break Err(e),
                    Ok((next, data)) if next == state && data.is_none() => break Ok(()),
                    Ok((next, _)) => state = next,
                }
            };
            assert_eq!(result, Err(BadResponse::Chunked), "{bad:?}");
        }
    }
}

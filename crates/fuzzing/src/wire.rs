//! A second reading of HTTP/1.1 message heads and chunked bodies, written from RFC 9112's
//! grammar alone, as the reference the `request_head`, `response_head` and `chunked_body`
//! targets hold valet's parsers to. It takes the liberties the RFC gives a recipient and no
//! others: a lone LF ends a line (2.2), empty lines before a request-line are skipped (2.2;
//! httparse skips them before a status line too, where they are as harmless).
//! Everything else (obs-fold, a bare CR, a space before the colon, a NUL) makes a head invalid.
//! It is slow and simple on purpose: a second parser as clever as the first would share its
//! mistakes.

/// What the reference makes of the bytes at the start of a buffer.
#[derive(Debug)]
pub(crate) enum Reading<'a> {
    /// No empty line yet, and nothing invalid in the complete lines before it.
    Incomplete,
    Invalid(&'static str),
    Head(Head<'a>),
}

impl<'a> Reading<'a> {
    /// The head of `data`, which valet accepted: a failure, saying why, if the reference does
    /// not read one.
    pub fn accepted(&self, data: &[u8]) -> &Head<'a> {
        match self {
            Reading::Head(head) => head,
            Reading::Invalid(why) => panic!(
                "valet took what RFC 9112 refuses ({why}): {:?}",
                String::from_utf8_lossy(data)
            ),
            Reading::Incomplete => panic!(
                "valet took an incomplete head: {:?}",
                String::from_utf8_lossy(data)
            ),
        }
    }
}

/// A complete head: its start line's three parts, its fields (values without the optional
/// whitespace around them) and its length, the empty line included.
#[derive(Debug)]
pub(crate) struct Head<'a> {
    pub start: [&'a [u8]; 3],
    pub fields: Vec<(&'a [u8], &'a [u8])>,
    pub len: usize,
}

impl Head<'_> {
    /// The values of the fields named `name` (any case), in order.
    pub fn values<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s [u8]> + 's {
        self.fields
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| *v)
    }
}

/// Reads a request head (`request`) or a response head at the start of `buf`.
pub(crate) fn head(buf: &[u8], request: bool) -> Reading<'_> {
    let mut at = 0;
    let mut start = None;
    let mut fields = Vec::new();
    loop {
        let Some(lf) = buf[at..].iter().position(|&b| b == b'\n') else {
            return Reading::Incomplete;
        };
        let line = &buf[at..at + lf];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        at += lf + 1;
        if line.contains(&b'\r') {
            return Reading::Invalid("bare CR");
        }
        let Some(first) = start else {
            if line.is_empty() {
                continue;
            }
            start = Some(match start_line(line, request) {
                Ok(parts) => parts,
                Err(why) => return Reading::Invalid(why),
            });
            continue;
        };
        if line.is_empty() {
            return Reading::Head(Head {
                start: first,
                fields,
                len: at,
            });
        }
        match field_line(line) {
            Ok(field) => fields.push(field),
            Err(why) => return Reading::Invalid(why),
        }
    }
}

/// `method SP request-target SP HTTP-version`, or `HTTP-version SP 3DIGIT SP reason-phrase`.
fn start_line(line: &[u8], request: bool) -> Result<[&[u8]; 3], &'static str> {
    let mut parts = line.splitn(3, |&b| b == b' ');
    let (a, b) = (parts.next().unwrap_or_default(), parts.next());
    let b = b.ok_or("one word in the start line")?;
    let c = parts.next();
    if request {
        let c = c.ok_or("two words in the request line")?;
        if a.is_empty() || !a.iter().all(|&x| tchar(x)) {
            return Err("method is no token");
        }
        // Bytes past ASCII are let through as httparse, hyper and `http` all take them (the
        // path is then valet's to normalise); no space, control byte or DEL is.
        if b.is_empty() || !b.iter().all(|&x| x > 0x20 && x != 0x7f) {
            return Err("target is empty or holds a space or control byte");
        }
        if !version(c) {
            return Err("no HTTP version");
        }
        Ok([a, b, c])
    } else {
        if !version(a) {
            return Err("no HTTP version");
        }
        if b.len() != 3 || !b.iter().all(u8::is_ascii_digit) {
            return Err("status is not three digits");
        }
        let reason = c.unwrap_or_default();
        if !reason.iter().all(|&x| field_byte(x)) {
            return Err("reason holds a control byte");
        }
        Ok([a, b, reason])
    }
}

/// `field-name ":" OWS field-value OWS`.
fn field_line(line: &[u8]) -> Result<(&[u8], &[u8]), &'static str> {
    let colon = line.iter().position(|&b| b == b':').ok_or("no colon")?;
    let name = &line[..colon];
    if name.is_empty() || !name.iter().all(|&b| tchar(b)) {
        return Err("field name is no token (obs-fold, space before the colon)");
    }
    let value = ows_trim(&line[colon + 1..]);
    if !value.iter().all(|&b| field_byte(b)) {
        return Err("field value holds a control byte");
    }
    Ok((name, value))
}

fn version(v: &[u8]) -> bool {
    matches!(v, [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
        if major.is_ascii_digit() && minor.is_ascii_digit())
}

/// RFC 9110 5.6.2.
pub(crate) fn tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A byte of a field value: HTAB, SP, VCHAR, obs-text.
pub(crate) fn field_byte(b: u8) -> bool {
    b == b'\t' || b == b' ' || (0x21..=0x7e).contains(&b) || b >= 0x80
}

/// Without leading and trailing SP and HTAB (OWS), and nothing else.
pub(crate) fn ows_trim(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

/// A `Content-Length` element as RFC 9110 8.6 has it: 1*DIGIT, here also fitting a u64.
pub(crate) fn length(v: &[u8]) -> Option<u64> {
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// A chunked body (RFC 9112 7.1) read whole: its data and where it ends, or why not. `Ok(None)`:
/// it needs more bytes. Chunk sizes beyond what a u64 holds are refused. Chunk extensions and
/// trailer fields are skipped unread, as valet drops both: their syntax decides nothing about
/// where the body ends, which only a size line's CRLF, the data's length and the empty line
/// do. Trailer lines may end in a lone LF (they are field lines, 2.2); size lines may not.
pub(crate) fn chunked(wire: &[u8]) -> Result<Option<(Vec<u8>, usize)>, &'static str> {
    let mut data = Vec::new();
    let mut at = 0;
    loop {
        let Some(lf) = wire[at..].iter().position(|&b| b == b'\n') else {
            return Ok(None);
        };
        let size_line = wire[at..at + lf]
            .strip_suffix(b"\r")
            .ok_or("chunk size line ends without CR")?;
        let hex = size_line
            .iter()
            .position(|b| !b.is_ascii_hexdigit())
            .unwrap_or(size_line.len());
        if hex == 0 {
            return Err("no chunk size");
        }
        // chunk-ext = *( BWS ";" ... ): after the size, only SP, HTAB, then `;`.
        let ext = ows_trim_start(&size_line[hex..]);
        if !ext.is_empty() && !ext.starts_with(b";") {
            return Err("junk after the chunk size");
        }
        let size = u64::from_str_radix(std::str::from_utf8(&size_line[..hex]).unwrap(), 16)
            .map_err(|_| "chunk size overflows")?;
        at += lf + 1;
        if size == 0 {
            break;
        }
        let size = usize::try_from(size).map_err(|_| "chunk size overflows")?;
        if wire.len() - at < size.saturating_add(2) {
            return Ok(None);
        }
        data.extend_from_slice(&wire[at..at + size]);
        if &wire[at + size..at + size + 2] != b"\r\n" {
            return Err("chunk data not followed by CRLF");
        }
        at += size + 2;
    }
    loop {
        let Some(lf) = wire[at..].iter().position(|&b| b == b'\n') else {
            return Ok(None);
        };
        let line = &wire[at..at + lf];
        at += lf + 1;
        if line.is_empty() || line == b"\r" {
            return Ok(Some((data, at)));
        }
    }
}

fn ows_trim_start(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    v
}

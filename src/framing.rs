//! A second look at the framing of the bytes a client sends, for what hyper resolves silently.
//!
//! hyper follows RFC 9112 6.1 and 6.3 to the letter: a request with both `Content-Length` and
//! `Transfer-Encoding` is read as chunked (the length is dropped and the connection closed
//! afterwards), and repeated equal `Content-Length` fields are folded into one. Both are legal for
//! an origin server, but in front of other servers they are the classic request-smuggling
//! probes, and langur refuses them outright. hyper leaves no trace of either in the parsed
//! request, so this scanner watches the byte stream itself, as it is read from the socket: it
//! finds each request head, counts those two fields, and skips the body by the same rules
//! (a length, or chunks, or none) to find the next head. It looks at heads and chunk-size lines
//! byte by byte and skips body data whole, so its cost is small and independent of body size.
//!
//! It only has to agree with hyper on requests hyper accepts; anything hyper refuses ends the
//! connection anyway. Once a head is found ambiguous, or something it does not understand
//! comes by, it stops.
//!
//! Chunked bodies are held to RFC 9112 7.1 exactly, more strictly than hyper: a chunk-size line
//! is hex digits, then extensions (`;` name, optionally `=` token or quoted string, whitespace
//! only around `;` and `=`), then CRLF; no whitespace before the CRLF, no control bytes. Every
//! line of the trailer section ends with CRLF: hyper ends a trailer line only at CRLF, so a bare
//! LF there would let it read a pipelined request as trailer text where other parsers see two
//! requests. The first byte that breaks these rules makes the stream *invalid*: the connection
//! hands hyper the bytes before it and then a read error, so the request is answered 400 and the
//! connection closed.
//!
//! [`H2Frames`] follows an HTTP/2 connection's frames the same way (lengths and flags only), so
//! the connection knows when its client is inside the preface or an unfinished header block,
//! states that get a deadline of their own (see `conn.rs`).

/// Where the scanner is in the request stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Empty lines before a request line (which RFC 9112 2.2 lets a server ignore).
    Before,
    /// Inside a head: `line_start` says the previous byte ended a line.
    Head,
    /// `num` body bytes to skip.
    Body,
    ChunkSize,
    /// Whitespace after the size: only `;` may follow.
    ChunkSizeBws,
    /// After `;` (and whitespace): an extension name must start.
    ExtName0,
    ExtName,
    /// Whitespace after a name: `=` or `;`.
    ExtNameBws,
    /// After `=` (and whitespace): a token or a quoted string.
    ExtValue0,
    ExtToken,
    ExtQuoted,
    ExtQuotedPair,
    /// After a value: whitespace then `;`, or CRLF.
    ExtValueEnd,
    ExtValueBws,
    ChunkSizeLf,
    /// `num` chunk bytes to skip.
    ChunkData,
    ChunkDataCr,
    ChunkDataLf,
    TrailerLineStart,
    TrailerLine,
    TrailerLineLf,
    TrailerEndLf,
    Stopped,
    /// A byte broke the chunked framing rules: nothing after it is accepted.
    Invalid,
}

/// The field a header line is being matched against.
const CL: &[u8] = b"content-length";
const TE: &[u8] = b"transfer-encoding";

/// Kept small: it lives in every client connection, parked ones included.
#[derive(Debug)]
pub struct Framing {
    state: State,
    /// Heads seen completely.
    heads: u64,
    /// Index of the first ambiguous head (`u64::MAX`: none yet).
    ambiguous: u64,
    /// The Content-Length value being read, then the body or chunk bytes left to skip.
    num: u64,
    // Within a head:
    first_line: bool,
    line_start: bool,
    /// Bytes of the current line's name so far, and whether it may still be CL or TE.
    name_len: u8,
    maybe_cl: bool,
    maybe_te: bool,
    in_name: bool,
    /// The line is a Content-Length line and its value is being read.
    in_cl_value: bool,
    cl_count: u8,
    te_count: u8,
    cl_digits: bool,
    /// The head's last byte was CR at the start of a line (the head ends at the LF).
    blank_cr: bool,
    /// Hex digits of the current chunk size.
    size_digits: u8,
}

impl Default for Framing {
    fn default() -> Framing {
        Framing {
            state: State::Before,
            heads: 0,
            ambiguous: u64::MAX,
            num: 0,
            first_line: true,
            line_start: true,
            name_len: 0,
            maybe_cl: true,
            maybe_te: true,
            in_name: true,
            in_cl_value: false,
            cl_count: 0,
            te_count: 0,
            cl_digits: false,
            blank_cr: false,
            size_digits: 0,
        }
    }
}

impl Framing {
    /// A scanner whose first head is the connection's request number `heads` (from 0).
    pub fn starting_at(heads: u64) -> Framing {
        Framing {
            heads,
            ..Framing::default()
        }
    }

    /// The index (from 0, in order of arrival) of the first request whose framing was
    /// ambiguous, if one was seen.
    pub fn ambiguous(&self) -> Option<u64> {
        (self.ambiguous != u64::MAX).then_some(self.ambiguous)
    }

    /// Stops scanning (the connection was upgraded to another protocol).
    pub fn stop(&mut self) {
        if self.state != State::Invalid {
            self.state = State::Stopped;
        }
    }

    /// A byte broke the chunked framing rules (see the module documentation).
    pub fn invalid(&self) -> bool {
        self.state == State::Invalid
    }

    /// Heads seen completely, and whether part of the next head (a byte other than the empty
    /// lines a server may skip) has arrived: what the connection's head deadline follows.
    pub fn progress(&self) -> (u64, bool) {
        let reading = match self.state {
            State::Before => false,
            State::Head => true,
            // A body without a request in flight, or a stream the scanner gave up on: only
            // a head could be late here.
            _ => true,
        };
        (self.heads, reading)
    }

    /// Scans bytes as they arrive from the client. Returns how many of them are acceptable: all
    /// of them, unless one breaks the chunked framing rules (then the bytes before it).
    pub fn scan(&mut self, bytes: &[u8]) -> usize {
        let len = bytes.len();
        let left = self.scan_inner(bytes);
        len - left
    }

    /// Scans; returns the number of bytes left unscanned (from the invalid byte on).
    fn scan_inner(&mut self, mut bytes: &[u8]) -> usize {
        while !bytes.is_empty() {
            match self.state {
                State::Stopped => return 0,
                State::Invalid => return bytes.len(),
                State::Body | State::ChunkData => {
                    let take = (bytes.len() as u64).min(self.num);
                    bytes = &bytes[take as usize..];
                    self.num -= take;
                    if self.num == 0 {
                        self.state = match self.state {
                            State::Body => State::Before,
                            _ => State::ChunkDataCr,
                        };
                    }
                }
                // Inside a line that cannot matter (the request line, a value of any field
                // but Content-Length, a name that is neither field): jump to its end.
                State::Head if self.skippable() => match memchr::memchr(b'\n', bytes) {
                    Some(i) => {
                        bytes = &bytes[i..];
                        self.blank_cr = false;
                        self.in_name = false;
                        let b = bytes[0];
                        bytes = &bytes[1..];
                        self.byte(b);
                    }
                    None => return 0,
                },
                _ => {
                    let b = bytes[0];
                    self.byte(b);
                    if self.state == State::Invalid {
                        return bytes.len();
                    }
                    bytes = &bytes[1..];
                }
            }
        }
        0
    }

    /// In a head, the rest of the current line holds nothing the scanner needs.
    fn skippable(&self) -> bool {
        !self.line_start
            && !self.blank_cr
            && !self.in_cl_value
            && (self.first_line || !self.in_name || (!self.maybe_cl && !self.maybe_te))
    }

    fn byte(&mut self, b: u8) {
        match self.state {
            State::Before => match b {
                b'\r' | b'\n' => {}
                _ => {
                    self.start_head();
                    self.state = State::Head;
                    self.head_byte(b);
                }
            },
            State::Head => self.head_byte(b),
            State::ChunkSize => self.size_byte(b),
            State::ChunkSizeBws
            | State::ExtName0
            | State::ExtName
            | State::ExtNameBws
            | State::ExtValue0
            | State::ExtToken
            | State::ExtQuoted
            | State::ExtQuotedPair
            | State::ExtValueEnd
            | State::ExtValueBws => self.state = extension(self.state, b),
            State::ChunkSizeLf => match b {
                b'\n' => self.chunk_line_done(),
                _ => self.state = State::Invalid,
            },
            State::ChunkDataCr => match b {
                b'\r' => self.state = State::ChunkDataLf,
                _ => self.state = State::Invalid,
            },
            State::ChunkDataLf => match b {
                b'\n' => self.next_chunk(),
                _ => self.state = State::Invalid,
            },
            State::TrailerLineStart
            | State::TrailerLine
            | State::TrailerLineLf
            | State::TrailerEndLf => self.state = trailer(self.state, b),
            State::Body | State::ChunkData | State::Stopped | State::Invalid => {}
        }
    }

    /// A byte of a chunk size (hex digits, at least one): a digit, or what ends the size.
    fn size_byte(&mut self, b: u8) {
        match b {
            b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                let d = (b as char).to_digit(16).unwrap_or(0) as u64;
                self.size_digits = self.size_digits.saturating_add(1);
                match self.num.checked_mul(16).and_then(|c| c.checked_add(d)) {
                    Some(c) => self.num = c,
                    None => self.state = State::Invalid,
                }
            }
            _ if self.size_digits == 0 => self.state = State::Invalid,
            b';' => self.state = State::ExtName0,
            b' ' | b'\t' => self.state = State::ChunkSizeBws,
            b'\r' => self.state = State::ChunkSizeLf,
            _ => self.state = State::Invalid,
        }
    }

    fn next_chunk(&mut self) {
        self.num = 0;
        self.size_digits = 0;
        self.state = State::ChunkSize;
    }

    fn chunk_line_done(&mut self) {
        self.state = if self.num == 0 {
            State::TrailerLineStart
        } else {
            State::ChunkData
        };
    }

    fn start_head(&mut self) {
        self.first_line = true;
        self.line_start = false;
        self.cl_count = 0;
        self.te_count = 0;
        self.num = 0;
        self.cl_digits = false;
        self.blank_cr = false;
        self.in_cl_value = false;
    }

    fn head_byte(&mut self, b: u8) {
        if self.line_start {
            self.line_start = false;
            match b {
                b'\r' => {
                    self.blank_cr = true;
                    return;
                }
                b'\n' => return self.head_done(),
                _ => {
                    self.in_name = true;
                    self.name_len = 0;
                    self.maybe_cl = true;
                    self.maybe_te = true;
                    self.in_cl_value = false;
                }
            }
        } else if self.blank_cr {
            self.blank_cr = false;
            if b == b'\n' {
                return self.head_done();
            }
        }
        if b == b'\n' {
            self.line_start = true;
            self.first_line = false;
            self.in_cl_value = false;
            return;
        }
        if self.first_line {
            return;
        }
        if self.in_name {
            if b == b':' {
                self.in_name = false;
                if self.maybe_cl && usize::from(self.name_len) == CL.len() {
                    self.cl_count = self.cl_count.saturating_add(1);
                    self.in_cl_value = self.cl_count == 1;
                } else if self.maybe_te && usize::from(self.name_len) == TE.len() {
                    self.te_count = self.te_count.saturating_add(1);
                }
                return;
            }
            let lower = b.to_ascii_lowercase();
            self.maybe_cl &= CL.get(usize::from(self.name_len)) == Some(&lower);
            self.maybe_te &= TE.get(usize::from(self.name_len)) == Some(&lower);
            self.name_len = self.name_len.saturating_add(1);
            return;
        }
        if self.in_cl_value {
            match b {
                b'0'..=b'9' => {
                    self.cl_digits = true;
                    self.num = self
                        .num
                        .saturating_mul(10)
                        .saturating_add(u64::from(b - b'0'));
                }
                // The first value of a list ("5, 5"): hyper checks they agree.
                _ if self.cl_digits => self.in_cl_value = false,
                _ => {}
            }
        }
    }

    fn head_done(&mut self) {
        let index = self.heads;
        self.heads += 1;
        self.line_start = true;
        if self.cl_count > 1 || (self.cl_count > 0 && self.te_count > 0) {
            self.ambiguous = self.ambiguous.min(index);
            self.state = State::Stopped;
        } else if self.te_count > 0 {
            self.next_chunk();
        } else if self.cl_count == 1 && self.num > 0 {
            self.state = State::Body;
        } else {
            self.state = State::Before;
        }
    }
}

/// The state after byte `b` of a chunk-size line past the size: whitespace, then chunk
/// extensions (RFC 9112 7.1.1: `;` name, optionally `=` token or quoted string, whitespace
/// only around `;` and `=`), up to the CR. `state` is one of the extension states.
fn extension(state: State, b: u8) -> State {
    match (state, b) {
        (State::ChunkSizeBws, b' ' | b'\t') => state,
        (State::ChunkSizeBws, b';') => State::ExtName0,
        (State::ExtName0, b' ' | b'\t') => state,
        (State::ExtName0, _) if tchar(b) => State::ExtName,
        (State::ExtName, _) if tchar(b) => state,
        (State::ExtName, b'=') => State::ExtValue0,
        (State::ExtName, b';') => State::ExtName0,
        (State::ExtName, b' ' | b'\t') => State::ExtNameBws,
        (State::ExtName, b'\r') => State::ChunkSizeLf,
        (State::ExtNameBws, b' ' | b'\t') => state,
        (State::ExtNameBws, b'=') => State::ExtValue0,
        (State::ExtNameBws, b';') => State::ExtName0,
        (State::ExtValue0, b' ' | b'\t') => state,
        (State::ExtValue0, b'"') => State::ExtQuoted,
        (State::ExtValue0, _) if tchar(b) => State::ExtToken,
        (State::ExtToken, _) if tchar(b) => state,
        (State::ExtToken, b';') => State::ExtName0,
        (State::ExtToken, b' ' | b'\t') => State::ExtValueBws,
        (State::ExtToken, b'\r') => State::ChunkSizeLf,
        (State::ExtQuoted, b'"') => State::ExtValueEnd,
        (State::ExtQuoted, b'\\') => State::ExtQuotedPair,
        // qdtext: HTAB, SP, visible characters but `"` and `\`, obs-text.
        (State::ExtQuoted, b'\t' | b' ' | 0x21..=0x7e | 0x80..=0xff) => state,
        (State::ExtQuotedPair, b'\t' | b' ' | 0x21..=0x7e | 0x80..=0xff) => State::ExtQuoted,
        (State::ExtValueEnd, b';') => State::ExtName0,
        (State::ExtValueEnd, b' ' | b'\t') => State::ExtValueBws,
        (State::ExtValueEnd, b'\r') => State::ChunkSizeLf,
        (State::ExtValueBws, b' ' | b'\t') => state,
        (State::ExtValueBws, b';') => State::ExtName0,
        _ => State::Invalid,
    }
}

/// The state after byte `b` of the trailer section (RFC 9112 7.1.2): every trailer line, and
/// the empty line that ends the section, ends with CRLF. `state` is one of the trailer states.
fn trailer(state: State, b: u8) -> State {
    match (state, b) {
        (State::TrailerLineStart, b'\r') => State::TrailerEndLf,
        (State::TrailerLineStart | State::TrailerLine, b'\n') => State::Invalid,
        (State::TrailerLineStart, _) => State::TrailerLine,
        (State::TrailerLine, b'\r') => State::TrailerLineLf,
        (State::TrailerLine, _) => state,
        (State::TrailerLineLf, b'\n') => State::TrailerLineStart,
        (State::TrailerEndLf, b'\n') => State::Before,
        _ => State::Invalid,
    }
}

/// A token character (RFC 9110 5.6.2).
fn tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The HTTP/2 client connection preface (RFC 9113 3.4).
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const H2_HEADERS: u8 = 0x1;
const H2_CONTINUATION: u8 = 0x9;
const H2_END_HEADERS: u8 = 0x4;

/// Follows the frames a client sends on an HTTP/2 connection: the preface (the 24 bytes and the
/// first frame, which must be SETTINGS), and header blocks (a HEADERS frame without
/// END_HEADERS, until the CONTINUATION that ends it). Frame headers are read byte by byte,
/// payloads skipped whole. It only reports what it sees; the h2 crate enforces the protocol.
#[derive(Debug, Default)]
pub struct H2Frames {
    /// Preface bytes matched (24: done), then whether the first frame was read whole.
    preface: u8,
    settings_done: bool,
    /// The frame header being read, and how much of it arrived.
    head: [u8; 9],
    have: u8,
    /// Payload bytes of the current frame still to skip.
    left: u32,
    /// Inside a header block (HEADERS without END_HEADERS, then CONTINUATIONs).
    in_block: bool,
    /// Header blocks begun (each starts a stream, or trailers).
    blocks: u64,
    /// Not HTTP/2 after all (the h2 crate refuses it): nothing more to follow.
    stopped: bool,
}

impl H2Frames {
    /// Header blocks begun, and whether the client is inside the preface or a header block:
    /// what the connection's deadlines follow.
    pub fn progress(&self) -> (u64, bool) {
        let reading = !self.stopped && (!self.settings_done || self.in_block);
        (self.blocks, reading)
    }

    pub fn scan(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() && !self.stopped {
            if usize::from(self.preface) < H2_PREFACE.len() {
                let at = usize::from(self.preface);
                let n = bytes.len().min(H2_PREFACE.len() - at);
                if bytes[..n] != H2_PREFACE[at..at + n] {
                    self.stopped = true;
                    return;
                }
                self.preface += n as u8;
                bytes = &bytes[n..];
                continue;
            }
            if self.left > 0 {
                let n = (bytes.len() as u64).min(u64::from(self.left)) as usize;
                bytes = &bytes[n..];
                self.left -= n as u32;
                if self.left == 0 {
                    self.settings_done = true;
                }
                continue;
            }
            let n = bytes.len().min(9 - usize::from(self.have));
            self.head[usize::from(self.have)..usize::from(self.have) + n]
                .copy_from_slice(&bytes[..n]);
            self.have += n as u8;
            bytes = &bytes[n..];
            if self.have < 9 {
                continue;
            }
            self.have = 0;
            let h = self.head;
            let len = u32::from_be_bytes([0, h[0], h[1], h[2]]);
            let (kind, flags) = (h[3], h[4]);
            match kind {
                H2_HEADERS => {
                    self.blocks += 1;
                    self.in_block = flags & H2_END_HEADERS == 0;
                }
                H2_CONTINUATION if flags & H2_END_HEADERS != 0 => self.in_block = false,
                _ => {}
            }
            self.left = len;
            if len == 0 {
                self.settings_done = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_all(input: &[u8], step: usize) -> Framing {
        let mut f = Framing::default();
        for part in input.chunks(step.max(1)) {
            f.scan(part);
        }
        f
    }

    fn ambiguous_at(input: &[u8]) -> Option<u64> {
        // The answer must not depend on how the bytes were split across reads.
        let whole = scan_all(input, input.len()).ambiguous();
        for step in [1, 2, 3, 7] {
            assert_eq!(scan_all(input, step).ambiguous(), whole, "step {step}");
        }
        whole
    }

    #[test]
    fn plain_requests_are_not_flagged() {
        let s = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nPOST /x HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloGET /y HTTP/1.1\r\n\r\n";
        assert_eq!(ambiguous_at(s), None);
        let f = scan_all(s, s.len());
        assert_eq!(f.heads, 3);
    }

    #[test]
    fn bodies_that_look_like_heads_are_skipped() {
        let body = b"\r\n\r\nGET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n";
        let mut s =
            format!("POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
        s.extend_from_slice(body);
        s.extend_from_slice(b"GET /next HTTP/1.1\r\n\r\n");
        assert_eq!(ambiguous_at(&s), None);
        assert_eq!(scan_all(&s, 1).heads, 2);
    }

    #[test]
    fn chunked_bodies_and_trailers_are_skipped() {
        let s = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\nA\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\nGET / HTTP/1.1\r\nContent-Length: 0\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(ambiguous_at(s), Some(1));
    }

    /// Where the first invalid byte is, scanning whole or byte by byte (`None`: all valid).
    fn invalid_at(input: &[u8]) -> Option<usize> {
        let mut whole = Framing::default();
        let n = whole.scan(input);
        let mut bytewise = Framing::default();
        let m = input
            .iter()
            .take_while(|b| bytewise.scan(std::slice::from_ref(b)) == 1)
            .count();
        assert_eq!(n, m, "split scans disagree on {input:?}");
        assert_eq!(whole.invalid(), n < input.len());
        (n < input.len()).then_some(n)
    }

    fn chunked(body: &str) -> Vec<u8> {
        format!("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n{body}").into_bytes()
    }

    #[test]
    fn chunk_size_lines_follow_rfc_9112_exactly() {
        for good in [
            "5\r\nhello\r\n0\r\n\r\n",
            "5;a\r\nhello\r\n0\r\n\r\n",
            "5 ;a=b\r\nhello\r\n0\r\n\r\n",
            "5\t; a = b ;c\r\nhello\r\n0;x\r\n\r\n",
            "5;a=\"q \\\"x\\\" é\"\r\nhello\r\n0\r\n\r\n",
            "0005;a=\"\" ;b\r\nhello\r\n000\r\n\r\n",
        ] {
            assert_eq!(invalid_at(&chunked(good)), None, "{good:?}");
        }
        for bad in [
            "5 \r\nhello\r\n0\r\n\r\n",
            "5\t\r\nhello\r\n0\r\n\r\n",
            "5;\r\nhello\r\n0\r\n\r\n",
            "5;a \r\nhello\r\n0\r\n\r\n",
            "5;a=b \r\nhello\r\n0\r\n\r\n",
            "5;a=\r\nhello\r\n0\r\n\r\n",
            "5;a=\x01\r\nhello\r\n0\r\n\r\n",
            "5;a\x01\r\nhello\r\n0\r\n\r\n",
            "5;a=\"x\x01\"\r\nhello\r\n0\r\n\r\n",
            "5;a=\"x\"y\r\nhello\r\n0\r\n\r\n",
            "5;a\nb\r\nhello\r\n0\r\n\r\n",
            "5;a\rb\r\nhello\r\n0\r\n\r\n",
            "5\nhello\r\n0\r\n\r\n",
            ";a\r\nhello\r\n0\r\n\r\n",
            "\r\nhello\r\n0\r\n\r\n",
            "5\r\nhello\n0\r\n\r\n",
            "5\r\nhelloX\r\n0\r\n\r\n",
            "FFFFFFFFFFFFFFFFFF\r\nhello\r\n0\r\n\r\n",
        ] {
            assert!(invalid_at(&chunked(bad)).is_some(), "{bad:?}");
        }
    }

    #[test]
    fn a_bare_lf_anywhere_in_trailers_is_invalid() {
        // The case: hyper would read the pipelined GET as trailer text.
        let input =
            chunked("5\r\nhello\r\n0\r\nX-Note: a\n\r\nGET /second HTTP/1.1\r\nHost: x\r\n\r\n");
        let at = invalid_at(&input).expect("invalid");
        assert_eq!(input[at], b'\n');
        assert_eq!(&input[at - 9..at], b"X-Note: a");
        for bad in [
            "0\r\n\n",
            "0\r\nX: a\r\n\n",
            "0\r\nX: a\nY: b\r\n\r\n",
            "0\r\nX: a\rb\r\n\r\n",
            "0\r\n\rX",
        ] {
            assert!(invalid_at(&chunked(bad)).is_some(), "{bad:?}");
        }
        let good = chunked("0\r\nX: a\r\nY: b\r\n\r\nGET / HTTP/1.1\r\n\r\n");
        assert_eq!(invalid_at(&good), None);
        let mut f = Framing::default();
        f.scan(&good);
        assert_eq!(f.heads, 2);
    }

    #[test]
    fn progress_tells_a_head_in_progress_from_an_idle_stream() {
        let mut f = Framing::default();
        f.scan(b"\r\n");
        assert_eq!(f.progress(), (0, false));
        f.scan(b"GET / HT");
        assert_eq!(f.progress(), (0, true));
        f.scan(b"TP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(f.progress(), (1, false));
    }

    fn frame(kind: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
        let len = (payload.len() as u32).to_be_bytes();
        let mut f = vec![len[1], len[2], len[3], kind, flags, 0, 0, 0, 1];
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn h2_frames_follow_the_preface_and_header_blocks() {
        let mut stream = H2_PREFACE.to_vec();
        let mut marks = vec![(stream.len(), (0, true))];
        stream.extend(frame(0x4, 0, &[0, 3, 0, 0, 0, 100]));
        marks.push((stream.len(), (0, false)));
        stream.extend(frame(0x1, 0, b"abc"));
        marks.push((stream.len(), (1, true)));
        stream.extend(frame(0x9, 0, b"d"));
        marks.push((stream.len(), (1, true)));
        stream.extend(frame(0x9, 0x4, b"e"));
        marks.push((stream.len(), (1, false)));
        stream.extend(frame(0x1, 0x5, b"fgh"));
        marks.push((stream.len(), (2, false)));
        stream.extend(frame(0x0, 0x1, &[0; 40]));
        marks.push((stream.len(), (2, false)));
        for step in [1, 3, 7, 1000] {
            let mut f = H2Frames::default();
            let mut at = 0;
            for &(end, want) in &marks {
                while at < end {
                    let n = step.min(end - at);
                    f.scan(&stream[at..at + n]);
                    at += n;
                }
                assert_eq!(f.progress(), want, "step {step}, at {end}");
            }
        }
        // Half a preface is reading; a stream that is not HTTP/2 is not followed.
        let mut f = H2Frames::default();
        f.scan(&H2_PREFACE[..10]);
        assert_eq!(f.progress(), (0, true));
        let mut f = H2Frames::default();
        f.scan(b"GET / HTTP/1.1\r\n");
        assert_eq!(f.progress(), (0, false));
    }

    #[test]
    fn ambiguous_heads_are_flagged_by_index() {
        assert_eq!(
            ambiguous_at(b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
            Some(0)
        );
        assert_eq!(
            ambiguous_at(b"GET / HTTP/1.1\r\n\r\nPOST / HTTP/1.1\r\ntransfer-encoding: chunked\r\nCONTENT-LENGTH: 3\r\n\r\n"),
            Some(1)
        );
        assert_eq!(
            ambiguous_at(b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc"),
            Some(0)
        );
        // Names that only start like the two fields are not them.
        assert_eq!(
            ambiguous_at(b"GET / HTTP/1.1\r\nContent-Lengthy: 3\r\nTransfer-Encodings: x\r\nContent-Length: 0\r\n\r\n"),
            None
        );
        // Bare LF line ends, as httparse accepts.
        assert_eq!(
            ambiguous_at(b"POST / HTTP/1.1\nContent-Length: 3\nTransfer-Encoding: chunked\n\n"),
            Some(0)
        );
    }
}

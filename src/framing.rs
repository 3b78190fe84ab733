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
    ChunkExt,
    ChunkSizeLf,
    /// `num` chunk bytes to skip.
    ChunkData,
    ChunkDataCr,
    ChunkDataLf,
    TrailerLineStart,
    TrailerLine,
    TrailerEndLf,
    Stopped,
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
        self.state = State::Stopped;
    }

    /// Scans bytes as they arrive from the client.
    pub fn scan(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            match self.state {
                State::Stopped => return,
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
                    None => return,
                },
                _ => {
                    let b = bytes[0];
                    bytes = &bytes[1..];
                    self.byte(b);
                }
            }
        }
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
            State::ChunkSize => match b {
                b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                    let d = (b as char).to_digit(16).unwrap_or(0) as u64;
                    match self.num.checked_mul(16).and_then(|c| c.checked_add(d)) {
                        Some(c) => self.num = c,
                        None => self.state = State::Stopped,
                    }
                }
                b';' | b' ' | b'\t' => self.state = State::ChunkExt,
                b'\r' => self.state = State::ChunkSizeLf,
                b'\n' => self.chunk_line_done(),
                _ => self.state = State::Stopped,
            },
            State::ChunkExt => match b {
                b'\r' => self.state = State::ChunkSizeLf,
                b'\n' => self.chunk_line_done(),
                _ => {}
            },
            State::ChunkSizeLf => match b {
                b'\n' => self.chunk_line_done(),
                _ => self.state = State::Stopped,
            },
            State::ChunkDataCr => match b {
                b'\r' => self.state = State::ChunkDataLf,
                b'\n' => self.next_chunk(),
                _ => self.state = State::Stopped,
            },
            State::ChunkDataLf => match b {
                b'\n' => self.next_chunk(),
                _ => self.state = State::Stopped,
            },
            State::TrailerLineStart => match b {
                b'\r' => self.state = State::TrailerEndLf,
                b'\n' => self.state = State::Before,
                _ => self.state = State::TrailerLine,
            },
            State::TrailerLine => {
                if b == b'\n' {
                    self.state = State::TrailerLineStart;
                }
            }
            State::TrailerEndLf => match b {
                b'\n' => self.state = State::Before,
                _ => self.state = State::Stopped,
            },
            State::Body | State::ChunkData | State::Stopped => {}
        }
    }

    fn next_chunk(&mut self) {
        self.num = 0;
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

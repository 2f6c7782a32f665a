//! Deadlines on reading a request, which poem 3.1 does not expose (hyper's header-read timeout
//! is not reachable through it): a request head must arrive within `HTTP_HEADER_TIMEOUT_SECS` of
//! its first byte (for a new connection: of being accepted, so a stalled TLS handshake counts),
//! and a body within `HTTP_BODY_TIMEOUT_SECS` of the end of its head. A client trickling a byte a
//! second is never silent, so the idle timeout alone would let it hold its connection for ever.
//!
//! The connection's bytes are followed as HTTP/1.1 frames them: a head ends at an empty line, a
//! body is `Content-Length` bytes (a chunked body lasts until the gateway starts answering).
//! Between requests no deadline runs: the idle timeout closes a silent keep-alive connection. A
//! connection upgraded to a WebSocket (a `101` answer) is left to its own limits (socket pings
//! and caps; the idle timeout) once its first head is in. An HTTP/2 connection (its preface
//! read as a first head) owes the same deadlines per stream ([`http2`]).

mod http2;

use std::time::Duration;

use tokio::time::Instant;

/// `HTTP_HEADER_TIMEOUT_SECS` and `HTTP_BODY_TIMEOUT_SECS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadDeadlines {
    pub header: Duration,
    pub body: Duration,
}

/// What a connection is reading now.
#[derive(Debug)]
enum Phase {
    /// Between requests.
    Idle,
    /// A request head, since `since`; `head` keeps its first bytes (enough for the headers this
    /// needs) and `matched` how much of the blank line ending it was seen.
    Head {
        since: Instant,
        head: Vec<u8>,
        matched: u8,
    },
    /// `remaining` bytes of a body whose head ended at `since`.
    Body { since: Instant, remaining: u64 },
    /// A chunked body: read until the gateway answers.
    Chunked { since: Instant },
    /// An upgrade was asked for: a `101` answer hands the connection over, anything else
    /// goes back to requests. A body the head announced (which the server reads as usual, and
    /// a WebSocket's `GET` never has) is due from `body_since` until the answer.
    UpgradeAsked { body_since: Option<Instant> },
    /// A WebSocket.
    Passthrough,
    /// An HTTP/2 connection.
    Http2(Box<http2::Http2Framing>),
}

/// Which deadline cut a connection (the metric's `phase` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    Header,
    Body,
}

impl Cut {
    pub fn label(self) -> &'static str {
        match self {
            Cut::Header => "header",
            Cut::Body => "body",
        }
    }
}

/// Heads longer than this are refused by the server anyway; only their start is kept.
const KEPT_HEAD_BYTES: usize = 16 * 1024;

/// Follows one connection's requests and says when its current read must end.
#[derive(Debug)]
pub struct RequestFraming {
    limits: ReadDeadlines,
    phase: Phase,
}

impl RequestFraming {
    /// A connection accepted at `now`: its first head is due from now.
    pub fn new(limits: ReadDeadlines, now: Instant) -> Self {
        Self {
            limits,
            phase: Phase::Head {
                since: now,
                head: Vec::new(),
                matched: 0,
            },
        }
    }

    /// When the current read must have finished, and which deadline that is; `None` when no
    /// deadline runs.
    pub fn deadline(&self) -> Option<(Instant, Cut)> {
        match &self.phase {
            Phase::Head { since, .. } => Some((*since + self.limits.header, Cut::Header)),
            Phase::Body { since, .. }
            | Phase::Chunked { since }
            | Phase::UpgradeAsked {
                body_since: Some(since),
            } => Some((*since + self.limits.body, Cut::Body)),
            Phase::Http2(framing) => framing.deadline(self.limits),
            Phase::Idle | Phase::UpgradeAsked { body_since: None } | Phase::Passthrough => None,
        }
    }

    /// Bytes the server read at `now`.
    pub fn read(&mut self, mut bytes: &[u8], now: Instant) {
        while !bytes.is_empty() {
            match &mut self.phase {
                Phase::Passthrough | Phase::UpgradeAsked { .. } | Phase::Chunked { .. } => return,
                Phase::Http2(framing) => return framing.read(bytes, now),
                Phase::Idle => {
                    self.phase = Phase::Head {
                        since: now,
                        head: Vec::new(),
                        matched: 0,
                    };
                }
                Phase::Body { remaining, .. } => {
                    let taken = (*remaining).min(bytes.len() as u64);
                    *remaining -= taken;
                    bytes = &bytes[taken as usize..];
                    if *remaining == 0 {
                        self.phase = Phase::Idle;
                    }
                }
                Phase::Head { head, matched, .. } => {
                    let byte = bytes[0];
                    bytes = &bytes[1..];
                    if head.len() < KEPT_HEAD_BYTES {
                        head.push(byte);
                    }
                    // Counts "\r\n\r\n" (and a bare "\n\n", which servers accept too).
                    *matched = match (byte, *matched) {
                        (b'\n', 1 | 3) => *matched + 1,
                        (b'\r', 0 | 2) => *matched + 1,
                        (b'\n', 0) => 2,
                        (b'\n', 2) => 4,
                        _ => 0,
                    };
                    if *matched == 4 {
                        let head = std::mem::take(head);
                        self.phase = after_head(&head, now);
                    }
                }
            }
        }
    }

    /// The server started writing `bytes` (its answer). True when this answer hands the
    /// connection over to a WebSocket (a `101` to an upgrade).
    pub fn wrote(&mut self, bytes: &[u8]) -> bool {
        match self.phase {
            Phase::UpgradeAsked { .. } => {
                let upgraded = bytes.starts_with(b"HTTP/1.1 101");
                self.phase = if upgraded {
                    Phase::Passthrough
                } else {
                    Phase::Idle
                };
                upgraded
            }
            Phase::Chunked { .. } => {
                self.phase = Phase::Idle;
                false
            }
            _ => false,
        }
    }

    /// The server wrote `bytes` at `now` (exactly what went out, in order): on HTTP/2, the
    /// streams it answers or resets owe nothing more.
    pub fn sent(&mut self, bytes: &[u8], now: Instant) {
        if let Phase::Http2(framing) = &mut self.phase {
            framing.sent(bytes, now);
        }
    }
}

/// What follows a complete head.
fn after_head(head: &[u8], now: Instant) -> Phase {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split('\n').map(|l| l.trim_end_matches('\r'));
    // Blank lines before a request line are allowed (RFC 9112, 2.2).
    let request_line = lines.by_ref().find(|l| !l.is_empty()).unwrap_or_default();
    if request_line.starts_with("PRI * HTTP/2.0") {
        return Phase::Http2(Box::new(http2::Http2Framing::after_preface_line()));
    }
    let mut length = 0u64;
    let mut chunked = false;
    let mut upgrade = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => length = value.parse().unwrap_or(0),
            "transfer-encoding" => chunked |= value.to_ascii_lowercase().contains("chunked"),
            "upgrade" => upgrade = true,
            _ => {}
        }
    }
    if upgrade {
        Phase::UpgradeAsked {
            body_since: (chunked || length > 0).then_some(now),
        }
    } else if chunked {
        Phase::Chunked { since: now }
    } else if length > 0 {
        Phase::Body {
            since: now,
            remaining: length,
        }
    } else {
        Phase::Idle
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: ReadDeadlines = ReadDeadlines {
        header: Duration::from_secs(10),
        body: Duration::from_secs(30),
    };

    fn at(start: Instant, secs: u64) -> Instant {
        start + Duration::from_secs(secs)
    }

    #[test]
    fn a_new_connection_owes_its_first_head_from_the_accept() {
        let start = Instant::now();
        let mut framing = RequestFraming::new(LIMITS, start);
        assert_eq!(framing.deadline(), Some((at(start, 10), Cut::Header)));
        // Trickled a byte at a time: the deadline stays where the head began.
        for (i, byte) in b"GET /healthz HTTP/1.1\r\nHost: x\r\n".iter().enumerate() {
            framing.read(&[*byte], at(start, i as u64));
            assert_eq!(framing.deadline(), Some((at(start, 10), Cut::Header)));
        }
        framing.read(b"\r\n", at(start, 40));
        assert_eq!(
            framing.deadline(),
            None,
            "a head without a body ends the request"
        );
        // The next request's head is due from its own first byte.
        framing.read(b"G", at(start, 100));
        assert_eq!(framing.deadline(), Some((at(start, 110), Cut::Header)));
    }

    #[test]
    fn a_body_is_due_from_the_end_of_its_head_and_ends_at_its_length() {
        let start = Instant::now();
        let mut framing = RequestFraming::new(LIMITS, start);
        framing.read(
            b"POST /api/v1/x HTTP/1.1\r\ncontent-length: 5\r\n\r\nab",
            at(start, 1),
        );
        assert_eq!(framing.deadline(), Some((at(start, 31), Cut::Body)));
        framing.read(b"cd", at(start, 2));
        assert_eq!(framing.deadline(), Some((at(start, 31), Cut::Body)));
        // The last body byte and the next request's first bytes in one read.
        framing.read(b"eGET / HTTP/1.1\r\n", at(start, 3));
        assert_eq!(framing.deadline(), Some((at(start, 13), Cut::Header)));
    }

    #[test]
    fn chunked_bodies_run_until_the_answer() {
        let start = Instant::now();
        let mut framing = RequestFraming::new(LIMITS, start);
        framing.read(
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
            start,
        );
        assert_eq!(framing.deadline(), Some((at(start, 30), Cut::Body)));
        framing.wrote(b"HTTP/1.1 200 OK\r\n");
        assert_eq!(framing.deadline(), None);
    }

    #[test]
    fn an_accepted_upgrade_is_left_alone_and_a_refused_one_is_not() {
        let start = Instant::now();
        let upgrade = b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
        let mut framing = RequestFraming::new(LIMITS, start);
        framing.read(upgrade, start);
        assert!(framing.wrote(b"HTTP/1.1 101 Switching Protocols\r\n"));
        framing.read(b"\x81\x05hello", at(start, 1));
        assert_eq!(framing.deadline(), None);

        let mut framing = RequestFraming::new(LIMITS, start);
        framing.read(upgrade, start);
        framing.wrote(b"HTTP/1.1 401 Unauthorized\r\n");
        framing.read(b"GET", at(start, 5));
        assert_eq!(framing.deadline(), Some((at(start, 15), Cut::Header)));
    }

    #[test]
    fn an_upgrade_asked_with_a_body_still_owes_the_body() {
        let start = Instant::now();
        let mut framing = RequestFraming::new(LIMITS, start);
        framing.read(
            b"POST /api/v1/payment-events HTTP/1.1\r\nUpgrade: x\r\ncontent-length: 900\r\n\r\n{",
            at(start, 1),
        );
        assert_eq!(framing.deadline(), Some((at(start, 31), Cut::Body)));
        framing.read(b"x", at(start, 20));
        assert_eq!(framing.deadline(), Some((at(start, 31), Cut::Body)));
        // Refused (no `101`): back to requests.
        assert!(!framing.wrote(b"HTTP/1.1 413 Payload Too Large\r\n"));
        assert_eq!(framing.deadline(), None);
    }

    /// An HTTP/2 frame: its header and `length` payload bytes.
    fn frame(kind: u8, flags: u8, stream: u32, length: usize) -> Vec<u8> {
        let mut bytes = (length as u32).to_be_bytes()[1..].to_vec();
        bytes.extend([kind, flags]);
        bytes.extend(stream.to_be_bytes());
        bytes.resize(9 + length, 0xaa);
        bytes
    }

    /// A connection past its preface and its client's first `SETTINGS`.
    fn http2(start: Instant) -> RequestFraming {
        let mut framing = RequestFraming::new(LIMITS, start);
        framing.read(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", start);
        framing.read(&frame(0x4, 0, 0, 12), start);
        assert_eq!(
            framing.deadline(),
            None,
            "a connection between frames owes nothing"
        );
        framing
    }

    #[test]
    fn an_http2_frame_trickled_is_due_from_its_first_byte() {
        let start = Instant::now();
        let mut framing = RequestFraming::new(LIMITS, start);
        framing.read(b"PRI * HTTP/2.0\r\n\r\nS", start);
        assert_eq!(framing.deadline(), Some((at(start, 10), Cut::Header)));
        framing.read(b"M\r\n\r\n", at(start, 2));
        assert_eq!(framing.deadline(), None);
        // A PING a byte at a time: due from its first byte, however the rest arrives.
        let ping = frame(0x6, 0, 0, 8);
        for (i, byte) in ping[..16].iter().enumerate() {
            framing.read(&[*byte], at(start, 3 + i as u64));
            assert_eq!(framing.deadline(), Some((at(start, 13), Cut::Header)));
        }
        framing.read(&ping[16..], at(start, 20));
        assert_eq!(framing.deadline(), None);
    }

    #[test]
    fn an_http2_request_owes_its_head_then_its_body() {
        let start = Instant::now();
        let mut framing = http2(start);
        // A head in a HEADERS frame and a CONTINUATION, the body in two DATA frames.
        framing.read(&frame(0x1, 0, 1, 20), at(start, 1));
        assert_eq!(framing.deadline(), Some((at(start, 11), Cut::Header)));
        framing.read(&frame(0x9, 0x4, 1, 5), at(start, 4));
        assert_eq!(framing.deadline(), Some((at(start, 34), Cut::Body)));
        framing.read(&frame(0x0, 0, 1, 100), at(start, 5));
        assert_eq!(framing.deadline(), Some((at(start, 34), Cut::Body)));
        // A DATA frame begun and not finished is due by the body limit too.
        let last = frame(0x0, 0x1, 1, 100);
        framing.read(&last[..50], at(start, 6));
        assert_eq!(framing.deadline(), Some((at(start, 34), Cut::Body)));
        framing.read(&last[50..], at(start, 7));
        assert_eq!(framing.deadline(), None, "END_STREAM ends what it owes");

        // A head that says it has no body owes nothing once complete.
        framing.read(&frame(0x1, 0x1 | 0x4, 3, 20), at(start, 8));
        assert_eq!(framing.deadline(), None);
        // Nor does one whose END_STREAM came on the HEADERS before its CONTINUATION.
        framing.read(&frame(0x1, 0x1, 5, 20), at(start, 9));
        framing.read(&frame(0x9, 0x4, 5, 20), at(start, 10));
        assert_eq!(framing.deadline(), None);
    }

    #[test]
    fn http2_streams_owe_their_own_deadlines_and_the_soonest_cuts() {
        let start = Instant::now();
        let mut framing = http2(start);
        framing.read(&frame(0x1, 0x4, 1, 10), at(start, 1));
        framing.read(&frame(0x1, 0, 3, 10), at(start, 2));
        assert_eq!(framing.deadline(), Some((at(start, 12), Cut::Header)));
        // The client resets the stream whose head stalled: the other's body is what is due.
        framing.read(&frame(0x3, 0, 3, 4), at(start, 3));
        assert_eq!(framing.deadline(), Some((at(start, 31), Cut::Body)));
    }

    #[test]
    fn an_http2_stream_the_gateway_answers_or_resets_owes_nothing_more() {
        let start = Instant::now();
        let mut framing = http2(start);
        framing.read(&frame(0x1, 0x4, 1, 10), at(start, 1));
        framing.read(&frame(0x1, 0x4, 3, 10), at(start, 2));
        // The server's own SETTINGS, then its answer on stream 1 (head and body in one write)
        // and, split across two writes, a reset of stream 3.
        let mut written = frame(0x4, 0, 0, 6);
        written.extend(frame(0x1, 0x4, 1, 30));
        written.extend(frame(0x0, 0x1, 1, 200));
        framing.sent(&written, at(start, 3));
        assert_eq!(framing.deadline(), Some((at(start, 32), Cut::Body)));
        let reset = frame(0x3, 0, 3, 4);
        framing.sent(&reset[..5], at(start, 4));
        framing.sent(&reset[5..], at(start, 4));
        assert_eq!(framing.deadline(), None);
    }

    #[test]
    fn an_http2_client_opening_streams_without_end_is_cut_at_once() {
        let start = Instant::now();
        let mut framing = http2(start);
        for stream in 0..=1024u32 {
            framing.read(&frame(0x1, 0, 2 * stream + 1, 1), at(start, 1));
        }
        assert_eq!(framing.deadline(), Some((at(start, 1), Cut::Header)));
    }
}

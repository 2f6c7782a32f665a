//! The read deadlines on an HTTP/2 connection. Requests share the connection as streams, so
//! each stream owes its own: a request's head (a `HEADERS` frame and its `CONTINUATION`s) within
//! the header limit of its first byte, its body (`DATA` until `END_STREAM`) within the body limit
//! of the head's end, and any frame once begun — a stream's or the connection's own (`SETTINGS`,
//! `PING`, `WINDOW_UPDATE`) — within the header limit (a `DATA` frame: the body limit), so a
//! frame trickled a byte at a time is cut as an HTTP/1.1 head would be. A stream stops owing
//! anything once it ends, is reset by either side, or the gateway starts answering it (as a
//! chunked HTTP/1.1 body). Frames are followed by their 9-byte headers only (RFC 9113, 4.1):
//! no payload is decoded.

use std::collections::BTreeMap;

use tokio::time::Instant;

use super::{Cut, ReadDeadlines};

/// What the client still sends after the request line `PRI * HTTP/2.0` and its blank line:
/// the rest of the connection preface (RFC 9113, 3.4).
const PREFACE_REST: &[u8] = b"SM\r\n\r\n";
/// Streams followed at once. The gateway's HTTP/2 server refuses streams beyond its own
/// concurrency limit (a few hundred) with `RST_STREAM`, which ends them here too; a client
/// that still gets past this many has only one purpose, and its connection is cut.
const MOST_STREAMS: usize = 1024;

const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

/// A frame's header: what is needed of it.
#[derive(Debug, Clone, Copy)]
struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    length: u32,
}

/// Splits one direction's bytes into frames.
#[derive(Debug)]
struct Frames {
    /// Bytes still to skip before the first frame (the preface's rest, inbound).
    skip: usize,
    header: [u8; 9],
    /// Bytes of `header` received so far.
    have: usize,
    /// The frame whose payload is arriving, and how much of it is still due.
    current: Option<(Frame, u32)>,
    /// When the preface's rest or the frame arriving now began.
    started: Option<Instant>,
}

impl Frames {
    fn new(skip: usize) -> Self {
        Self {
            skip,
            header: [0; 9],
            have: 0,
            current: None,
            started: None,
        }
    }

    /// Takes `bytes` at `now`; calls `at_header` with each frame header as it completes and
    /// `at_end` with each frame as its payload completes (and the time it began).
    fn take(
        &mut self,
        mut bytes: &[u8],
        now: Instant,
        mut at_header: impl FnMut(Frame),
        mut at_end: impl FnMut(Frame, Instant),
    ) {
        while !bytes.is_empty() {
            let started = *self.started.get_or_insert(now);
            if self.skip > 0 {
                let taken = self.skip.min(bytes.len());
                self.skip -= taken;
                bytes = &bytes[taken..];
                if self.skip == 0 {
                    self.started = None;
                }
                continue;
            }
            if let Some((frame, due)) = &mut self.current {
                let taken = (*due as usize).min(bytes.len());
                *due -= taken as u32;
                bytes = &bytes[taken..];
                if *due == 0 {
                    let frame = *frame;
                    self.current = None;
                    self.started = None;
                    at_end(frame, started);
                }
                continue;
            }
            let taken = (9 - self.have).min(bytes.len());
            self.header[self.have..self.have + taken].copy_from_slice(&bytes[..taken]);
            self.have += taken;
            bytes = &bytes[taken..];
            if self.have == 9 {
                self.have = 0;
                let h = self.header;
                let frame = Frame {
                    length: u32::from_be_bytes([0, h[0], h[1], h[2]]),
                    kind: h[3],
                    flags: h[4],
                    stream: u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff,
                };
                at_header(frame);
                if frame.length == 0 {
                    self.started = None;
                    at_end(frame, started);
                } else {
                    self.current = Some((frame, frame.length));
                }
            }
        }
    }

    /// When the frame (or preface) arriving now must be complete.
    fn deadline(&self, limits: ReadDeadlines) -> Option<(Instant, Cut)> {
        let started = self.started?;
        match self.current {
            Some((frame, _)) if frame.kind == DATA => Some((started + limits.body, Cut::Body)),
            _ => Some((started + limits.header, Cut::Header)),
        }
    }
}

/// What a stream still owes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owed {
    /// The rest of its head, begun at `since`; `ends_stream` when the head carries no body.
    Head { since: Instant, ends_stream: bool },
    /// Its body, due from `since` (the head's end).
    Body { since: Instant },
}

/// One HTTP/2 connection's streams and frames.
#[derive(Debug)]
pub(super) struct Http2Framing {
    inbound: Frames,
    outbound: Frames,
    streams: BTreeMap<u32, Owed>,
    /// When the client opened more than [`MOST_STREAMS`] streams at once.
    flooded: Option<Instant>,
}

impl Http2Framing {
    /// A connection whose client has sent `PRI * HTTP/2.0` and its blank line.
    pub(super) fn after_preface_line() -> Self {
        Self {
            inbound: Frames::new(PREFACE_REST.len()),
            outbound: Frames::new(0),
            streams: BTreeMap::new(),
            flooded: None,
        }
    }

    pub(super) fn deadline(&self, limits: ReadDeadlines) -> Option<(Instant, Cut)> {
        if let Some(at) = self.flooded {
            return Some((at, Cut::Header));
        }
        let streams = self.streams.values().map(|owed| match *owed {
            Owed::Head { since, .. } => (since + limits.header, Cut::Header),
            Owed::Body { since } => (since + limits.body, Cut::Body),
        });
        streams
            .chain(self.inbound.deadline(limits))
            .min_by_key(|(at, _)| *at)
    }

    /// Bytes the client sent, read at `now`.
    pub(super) fn read(&mut self, bytes: &[u8], now: Instant) {
        let streams = &mut self.streams;
        self.inbound.take(
            bytes,
            now,
            |_| {},
            |frame, began| match frame.kind {
                HEADERS | CONTINUATION => {
                    let (since, ends_stream) = match streams.get(&frame.stream) {
                        Some(Owed::Head { since, ends_stream }) => (*since, *ends_stream),
                        // Trailers end a body; they owe nothing new.
                        Some(Owed::Body { .. }) if frame.kind == HEADERS => {
                            if frame.flags & END_STREAM != 0 {
                                streams.remove(&frame.stream);
                            }
                            return;
                        }
                        // A CONTINUATION of nothing followed: the server refuses it.
                        _ if frame.kind == CONTINUATION => return,
                        _ => (began, frame.flags & END_STREAM != 0),
                    };
                    if frame.flags & END_HEADERS == 0 {
                        streams.insert(frame.stream, Owed::Head { since, ends_stream });
                    } else if ends_stream {
                        streams.remove(&frame.stream);
                    } else {
                        streams.insert(frame.stream, Owed::Body { since: now });
                    }
                }
                DATA if frame.flags & END_STREAM != 0 => {
                    streams.remove(&frame.stream);
                }
                RST_STREAM => {
                    streams.remove(&frame.stream);
                }
                _ => {}
            },
        );
        if self.streams.len() > MOST_STREAMS {
            self.flooded.get_or_insert(now);
        }
    }

    /// Bytes the gateway wrote: a stream it answers or resets owes nothing more.
    pub(super) fn sent(&mut self, bytes: &[u8], now: Instant) {
        let streams = &mut self.streams;
        self.outbound.take(
            bytes,
            now,
            |frame| {
                if matches!(frame.kind, HEADERS | RST_STREAM) {
                    streams.remove(&frame.stream);
                }
            },
            |_, _| {},
        );
    }
}

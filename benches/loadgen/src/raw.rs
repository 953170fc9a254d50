//! `--engine raw`: HTTP/1.1 written straight to the socket, for a generator that costs the
//! machine as little as it can.
//!
//! The load generator shares the machine with the server it measures. At batch 1 each of the
//! 16 connections waits for its answer, so the generator's pass over its connections is part of
//! every cycle of a server that answers in groups (triaged's group commit), while a server that
//! is busy on every CPU (Alertmanager) loses only the CPU the generator takes. hyper's client
//! spends about 2.5 µs of user time a request here (its dispatch channel between the caller and
//! the connection task, the request's head encoded each time); this engine writes a request
//! built before the clock starts with one `write` and parses the answer's head with `httparse`
//! (what hyper parses with), about as cheap as `wrk`.
//!
//! It reads what a server may send back to a POST: a head, then a body framed by
//! `Content-Length`, by `Transfer-Encoding: chunked`, or by the end of the connection; no body
//! for 1xx (skipped), 204 and 304.

use std::io;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::{keep_sample, CONTENT_TYPE_JSON, USER_AGENT_VALUE};

/// Longest answer head taken.
const MAX_HEAD: usize = 64 * 1024;
/// Most headers in an answer head.
const MAX_HEADERS: usize = 64;

/// A request with its head, ready to write.
pub fn request(path: &str, host: &str, body: &[u8]) -> Vec<u8> {
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: {host}\r\ncontent-type: {CONTENT_TYPE_JSON}\r\nuser-agent: {USER_AGENT_VALUE}\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    let mut req = Vec::with_capacity(head.len() + body.len());
    req.extend_from_slice(head.as_bytes());
    req.extend_from_slice(body);
    req
}

/// Why an exchange failed; `kind` is the loadgen's error class.
#[derive(Debug)]
pub struct Failure {
    pub kind: &'static str,
    pub detail: String,
}

impl Failure {
    fn io(e: io::Error) -> Failure {
        Failure {
            kind: "io",
            detail: e.to_string(),
        }
    }

    fn bad(detail: impl Into<String>) -> Failure {
        Failure {
            kind: "bad_response",
            detail: detail.into(),
        }
    }

    fn closed() -> Failure {
        Failure {
            kind: "closed_by_server",
            detail: "the server closed the connection before the answer was complete".into(),
        }
    }
}

/// An answer: its status, whether the connection must close after it, and the first
/// `keep` bytes of its body.
#[derive(Debug, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub close: bool,
    pub body: Vec<u8>,
}

/// How the body after a head ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(u64),
    Chunked,
    UntilClose,
}

/// One keep-alive connection.
pub struct Conn<S = TcpStream> {
    stream: S,
    buf: Vec<u8>,
    /// `buf[start..end]` is read and not yet taken.
    start: usize,
    end: usize,
}

impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin> Conn<S> {
    pub fn new(stream: S) -> Conn<S> {
        Conn {
            stream,
            buf: vec![0; 16 * 1024],
            start: 0,
            end: 0,
        }
    }

    /// Write `request` and read its answer, keeping up to `keep` bytes of the body when the
    /// status is not 2xx.
    pub async fn exchange(&mut self, request: &[u8], keep: usize) -> Result<Answer, Failure> {
        self.stream.write_all(request).await.map_err(Failure::io)?;
        loop {
            let (status, framing, close) = self.head().await?;
            if (100..200).contains(&status) {
                continue;
            }
            let keep = if (200..300).contains(&status) {
                0
            } else {
                keep
            };
            let mut body = Vec::new();
            let framing = if status == 204 || status == 304 {
                Framing::Length(0)
            } else {
                framing
            };
            match framing {
                Framing::Length(n) => self.body_of_length(n, keep, &mut body).await?,
                Framing::Chunked => self.chunked_body(keep, &mut body).await?,
                Framing::UntilClose => self.body_until_close(keep, &mut body).await?,
            }
            return Ok(Answer {
                status,
                close: close || framing == Framing::UntilClose,
                body,
            });
        }
    }

    /// Read more into the buffer; false at the end of the connection.
    async fn fill(&mut self) -> Result<bool, Failure> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == self.buf.len() {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else {
                if self.buf.len() >= MAX_HEAD {
                    return Err(Failure::bad(format!(
                        "an answer head or chunk line longer than {MAX_HEAD} bytes"
                    )));
                }
                self.buf.resize(self.buf.len() * 2, 0);
            }
        }
        let n = self
            .stream
            .read(&mut self.buf[self.end..])
            .await
            .map_err(Failure::io)?;
        self.end += n;
        Ok(n > 0)
    }

    /// Parse the next head: status, body framing, whether the connection closes after it.
    async fn head(&mut self) -> Result<(u16, Framing, bool), Failure> {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut resp = httparse::Response::new(&mut headers);
            match resp.parse(&self.buf[self.start..self.end]) {
                Ok(httparse::Status::Complete(len)) => {
                    let status = resp.code.unwrap_or(0);
                    let http10 = resp.version == Some(0);
                    let mut framing = Framing::UntilClose;
                    let mut close = http10;
                    for h in resp.headers.iter() {
                        if h.name.eq_ignore_ascii_case("content-length") {
                            let n = std::str::from_utf8(h.value)
                                .ok()
                                .and_then(|v| v.trim().parse::<u64>().ok())
                                .ok_or_else(|| {
                                    Failure::bad("a Content-Length that is no number")
                                })?;
                            if framing != Framing::Chunked {
                                framing = Framing::Length(n);
                            }
                        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                            if h.value.eq_ignore_ascii_case(b"chunked") {
                                framing = Framing::Chunked;
                            } else {
                                return Err(Failure::bad(format!(
                                    "Transfer-Encoding {:?} is not taken",
                                    String::from_utf8_lossy(h.value)
                                )));
                            }
                        } else if h.name.eq_ignore_ascii_case("connection") {
                            if h.value.eq_ignore_ascii_case(b"close") {
                                close = true;
                            } else if h.value.eq_ignore_ascii_case(b"keep-alive") {
                                close = false;
                            }
                        }
                    }
                    self.start += len;
                    return Ok((status, framing, close));
                }
                Ok(httparse::Status::Partial) => {
                    if !self.fill().await? {
                        return Err(Failure::closed());
                    }
                }
                Err(e) => return Err(Failure::bad(format!("answer head: {e}"))),
            }
        }
    }

    /// Take up to `n` buffered bytes, keeping what `keep` still allows; how many were taken.
    fn take(&mut self, n: u64, keep: usize, body: &mut Vec<u8>) -> u64 {
        let have = (self.end - self.start) as u64;
        let took = have.min(n) as usize;
        keep_sample(body, &self.buf[self.start..self.start + took], keep);
        self.start += took;
        took as u64
    }

    async fn body_of_length(
        &mut self,
        mut n: u64,
        keep: usize,
        body: &mut Vec<u8>,
    ) -> Result<(), Failure> {
        loop {
            n -= self.take(n, keep, body);
            if n == 0 {
                return Ok(());
            }
            if !self.fill().await? {
                return Err(Failure::closed());
            }
        }
    }

    async fn body_until_close(&mut self, keep: usize, body: &mut Vec<u8>) -> Result<(), Failure> {
        loop {
            self.take(u64::MAX, keep, body);
            if !self.fill().await? {
                return Ok(());
            }
        }
    }

    /// The next CRLF-ended line, without its CRLF (buffered; a line is short).
    async fn line(&mut self) -> Result<Vec<u8>, Failure> {
        loop {
            let have = &self.buf[self.start..self.end];
            if let Some(i) = have.windows(2).position(|w| w == b"\r\n") {
                let line = have[..i].to_vec();
                self.start += i + 2;
                return Ok(line);
            }
            if !self.fill().await? {
                return Err(Failure::closed());
            }
        }
    }

    async fn chunked_body(&mut self, keep: usize, body: &mut Vec<u8>) -> Result<(), Failure> {
        loop {
            let line = self.line().await?;
            let size = line.split(|&b| b == b';').next().unwrap_or(&[]);
            let size = std::str::from_utf8(size)
                .ok()
                .and_then(|s| u64::from_str_radix(s.trim(), 16).ok())
                .ok_or_else(|| {
                    Failure::bad(format!(
                        "a chunk size that is no hex number: {:?}",
                        String::from_utf8_lossy(&line)
                    ))
                })?;
            if size == 0 {
                // Trailers, up to the empty line.
                while !self.line().await?.is_empty() {}
                return Ok(());
            }
            self.body_of_length(size, keep, body).await?;
            if !self.line().await?.is_empty() {
                return Err(Failure::bad("a chunk longer than its size"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// The answers a server writes, in pieces of `piece` bytes; what the connection reads.
    async fn answers(
        wire: &[u8],
        piece: usize,
        n: usize,
        keep: usize,
    ) -> Vec<Result<Answer, String>> {
        let (client, mut server) = tokio::io::duplex(64 * 1024);
        let wire = wire.to_vec();
        let writer = tokio::spawn(async move {
            // The client may stop reading (and drop its end) at an error: writes may fail then.
            for chunk in wire.chunks(piece) {
                if server.write_all(chunk).await.is_err() {
                    return;
                }
                tokio::task::yield_now().await;
            }
            // End the answers, then take the requests until the client is gone.
            let _ = server.shutdown().await;
            let mut sink = Vec::new();
            let _ = server.read_to_end(&mut sink).await;
        });
        let mut conn = Conn::new(client);
        let mut out = Vec::new();
        for _ in 0..n {
            let r = conn.exchange(b"POST / HTTP/1.1\r\n\r\n", keep).await;
            let stop = r.is_err();
            out.push(r.map_err(|f| format!("{}: {}", f.kind, f.detail)));
            if stop {
                break;
            }
        }
        drop(conn);
        writer.await.unwrap();
        out
    }

    fn ok(status: u16, close: bool, body: &[u8]) -> Result<Answer, String> {
        Ok(Answer {
            status,
            close,
            body: body.to_vec(),
        })
    }

    #[tokio::test]
    async fn reads_answers_framed_every_way_in_any_pieces() {
        let wire = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok\
HTTP/1.1 400 Bad Request\r\nContent-Length: 5\r\n\r\nnope!\
HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n\
HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n4;x=y\r\nbusy\r\n3\r\n...\r\n0\r\nTrailer: t\r\n\r\n\
HTTP/1.1 500 Oops\r\nConnection: close\r\ncontent-length: 3\r\n\r\nbad\
HTTP/1.0 502 Bad Gateway\r\n\r\nto the end";
        for piece in [1, 3, 7, wire.len()] {
            let got = answers(wire, piece, 6, 300).await;
            assert_eq!(
                got,
                vec![
                    ok(200, false, b""),
                    ok(400, false, b"nope!"),
                    ok(204, false, b""),
                    ok(503, false, b"busy..."),
                    ok(500, true, b"bad"),
                    ok(502, true, b"to the end"),
                ],
                "in pieces of {piece}"
            );
        }
    }

    #[tokio::test]
    async fn keeps_only_so_much_of_a_refusal() {
        let wire = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 10\r\n\r\n0123456789\
HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\nx";
        let got = answers(wire, 4, 2, 4).await;
        assert_eq!(got, vec![ok(400, false, b"0123"), ok(200, false, b"")]);
    }

    /// `wire`, read in pieces of `piece` bytes, fails its one exchange with an error of `kind`.
    async fn fails_as(wire: &[u8], piece: usize, kind: &str) {
        let got = answers(wire, piece, 1, 0).await;
        assert!(
            matches!(&got[..], [Err(e)] if e.starts_with(kind)),
            "{:?}: wanted {kind}, got {got:?}",
            String::from_utf8_lossy(wire)
        );
    }

    #[tokio::test]
    async fn a_cut_or_garbled_answer_is_an_error_of_its_kind() {
        let cut = b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort";
        fails_as(cut, 5, "closed_by_server").await;
        fails_as(b"HTTX/1.1 200 OK\r\n\r\n", 5, "bad_response").await;
        fails_as(b"", 1, "closed_by_server").await;
        let bad_length = b"HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n";
        fails_as(bad_length, 5, "bad_response").await;
    }

    #[test]
    fn a_request_carries_its_length() {
        let req = request("/api/v2/alerts", "127.0.0.1:9595", b"[]");
        assert_eq!(
            req,
            b"POST /api/v2/alerts HTTP/1.1\r\nhost: 127.0.0.1:9595\r\ncontent-type: application/json\r\nuser-agent: triaged-loadgen/0.1\r\ncontent-length: 2\r\n\r\n[]"
        );
    }
}

//! A webhook receiver for the tests: a tiny HTTP/1.1 server on 127.0.0.1 that records every
//! request and answers it with the status it is told (200 while "up", 503 while "down").

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use serde_json::Value;

use super::poll_until_for;

/// One request the receiver got, with the status it answered.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub answered: u16,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "webhook body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn event_id(&self) -> String {
        self.json()["event_id"]
            .as_str()
            .unwrap_or_else(|| panic!("event without event_id: {}", self.json()))
            .to_string()
    }
}

/// A webhook receiver on 127.0.0.1:<ephemeral>: answers every request with the current status
/// (`Connection: close`) and records it.
pub struct Receiver {
    pub port: u16,
    status: Arc<AtomicU16>,
    log: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    pub fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the receiver");
        let port = listener.local_addr().unwrap().port();
        let status = Arc::new(AtomicU16::new(200));
        let log = Arc::new(Mutex::new(Vec::new()));
        let (st, lg) = (status.clone(), log.clone());
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (st, lg) = (st.clone(), lg.clone());
                thread::spawn(move || serve(stream, &st, &lg));
            }
        });
        Receiver { port, status, log }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    /// Answer 503 (down) or 200 (up) from now on.
    pub fn set_up(&self, up: bool) {
        self.status
            .store(if up { 200 } else { 503 }, Ordering::SeqCst);
    }

    pub fn all(&self) -> Vec<Received> {
        self.log.lock().unwrap().clone()
    }

    /// The requests answered 200, in arrival order.
    pub fn delivered(&self) -> Vec<Received> {
        self.all()
            .into_iter()
            .filter(|r| r.answered == 200)
            .collect()
    }

    /// The event_ids of the delivered events, in arrival order (repeats included).
    pub fn delivered_ids(&self) -> Vec<String> {
        self.delivered().iter().map(Received::event_id).collect()
    }

    /// Wait until every event_id of `expected` has been delivered; returns the delivered ones.
    pub fn wait_for_ids(&self, what: &str, timeout: Duration, expected: &BTreeSet<String>) {
        poll_until_for(what, timeout, || {
            let got: BTreeSet<String> = self.delivered_ids().into_iter().collect();
            let missing: Vec<&String> = expected.difference(&got).collect();
            if missing.is_empty() {
                Ok(())
            } else {
                Err(format!("missing {missing:?}; delivered {got:?}"))
            }
        });
    }
}

fn serve(mut stream: TcpStream, status: &AtomicU16, log: &Mutex<Vec<Received>>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(10)));
    let mut raw = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(p) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return, // the client went away before a whole request
            Ok(n) => raw.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next().unwrap_or("").split(' ');
    let method = request_line.next().unwrap_or("").to_string();
    let path = request_line.next().unwrap_or("").to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = raw[head_end + 4..].to_vec();
    while body.len() < length {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    body.truncate(length);
    let answered = status.load(Ordering::SeqCst);
    log.lock().unwrap().push(Received {
        method,
        path,
        headers,
        body,
        answered,
    });
    let reason = if answered == 200 {
        "OK"
    } else {
        "Service Unavailable"
    };
    let _ = stream.write_all(
        format!("HTTP/1.1 {answered} {reason}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    );
    let _ = stream.flush();
}

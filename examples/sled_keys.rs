//! What sled's memory grows with: record bytes or keys. Writes N records the way triaged's writer
//! did before its journal (batches of 100, each applied and flushed; the writer now flushes sled
//! only at checkpoints, and the figures in benches/HISTORY.md were taken this way), each with INDEX
//! empty-valued index keys beside it (as `firing/`, `member/` and `timer/` were beside
//! `alert/`), in a fresh store under the system's temporary directory, then prints the time taken
//! and the process's peak RSS.
//!
//! ```text
//! cargo run --release --example sled_keys -- N INDEX RECORD_BYTES CACHE_MB
//! cargo run --release --example sled_keys -- 100000 3 330 64   # triaged's shape with 100k alerts
//! cargo run --release --example sled_keys -- 100000 0 330 64   # the records alone
//! ```
//!
//! All keys here are in fingerprint order, as `alert/` and `firing/` are; triaged's `member/` and
//! `timer/` keys are grouped by incident and by deadline first, so this is their worst case. Run
//! one shape per process (peak RSS is the process's). See benches/HISTORY.md.

use std::process::ExitCode;
use std::time::Instant;

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const INDEXES: [&[u8]; 3] = [b"firing/", b"member/", b"timer/"];

fn main() -> ExitCode {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let [n, index, record_bytes, cache_mb] = args[..] else {
        eprintln!("usage: sled_keys N INDEX(0-3) RECORD_BYTES CACHE_MB");
        return ExitCode::from(2);
    };
    let dir = match tempfile::tempdir() {
        Ok(dir) => dir,
        Err(e) => {
            eprintln!("cannot make a temporary directory: {e}");
            return ExitCode::FAILURE;
        }
    };
    match run(
        dir.path(),
        n,
        index.min(3) as usize,
        record_bytes as usize,
        cache_mb,
    ) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sled failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(
    dir: &std::path::Path,
    n: u64,
    index: usize,
    record_bytes: usize,
    cache_mb: u64,
) -> sled::Result<()> {
    let db = sled::Config::new()
        .path(dir)
        .cache_capacity(cache_mb << 20)
        .open()?;
    let record = vec![7u8; record_bytes];
    let started = Instant::now();
    for first in (0..n).step_by(100) {
        let mut batch = sled::Batch::default();
        for i in first..(first + 100).min(n) {
            // Fingerprints are hashes: spread over the key space, as triaged's are.
            let fp = i.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_be_bytes();
            batch.insert([&b"alert/"[..], &fp].concat(), record.clone());
            for prefix in &INDEXES[..index] {
                batch.insert([prefix, &fp[..]].concat(), &[]);
            }
        }
        db.apply_batch(batch)?;
        db.flush()?;
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let hwm = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .map_or("unknown".into(), |v| v.trim().to_string());
    println!(
        "records={n} index_keys_each={index} record_bytes={record_bytes} cache_mb={cache_mb} \
         seconds={:.2} peak_rss={hwm}",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

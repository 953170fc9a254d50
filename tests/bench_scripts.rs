//! `benches/compare.sh` and `benches/retention.sh` refuse what they cannot run, before they
//! build or start anything: a wrong argument is exit 2 with the reason. (Running the comparison itself takes minutes and a quiet
//! machine; it is a benchmark, not a test.)

use std::path::Path;
use std::process::{Command, Output};

/// Run compare.sh with a `PATH` that holds only `sed` (its usage text needs it): were an
/// argument wrongly taken, the script would stop at its check for `prometheus-alertmanager`
/// (exit 2, another reason) instead of starting a benchmark.
fn compare(args: &[&str]) -> Output {
    script("compare.sh", args)
}

/// Run `benches/<name>` with a `PATH` that holds only `sed`: see [`compare`].
fn script(name: &str, args: &[&str]) -> Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("benches")
        .join(name);
    let bin = tempfile::tempdir().expect("a temporary directory");
    let sed = ["/usr/bin/sed", "/bin/sed"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("sed in /usr/bin or /bin");
    std::os::unix::fs::symlink(sed, bin.path().join("sed")).expect("linking sed");
    Command::new("/bin/bash")
        .arg(script)
        .args(args)
        .env("PATH", bin.path())
        .output()
        .unwrap_or_else(|e| panic!("running bash benches/{name}: {e}"))
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_wrong_argument_is_exit_2_with_the_reason() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["--rounds", "0"],
            "--rounds takes a number from 1 to 99, not '0'",
        ),
        (
            &["--rounds", "100"],
            "--rounds takes a number from 1 to 99, not '100'",
        ),
        (
            &["--rounds", "x"],
            "--rounds takes a number from 1 to 99, not 'x'",
        ),
        (
            &["--case", "2x5"],
            "--case takes one of 1x1000, 1x100000, 100x1000, 100x100000, not '2x5'",
        ),
        (
            &["--engine", "curl"],
            "--engine takes raw or hyper, not 'curl'",
        ),
        (&["--engine"], "--engine needs a value"),
        (&["--rounds"], "--rounds needs a value"),
        (&["--fast"], "unknown argument: --fast"),
    ];
    for (args, reason) in cases {
        let out = compare(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(reason),
            "{args:?}: wanted {reason:?} in {:?}",
            stderr(&out)
        );
        assert!(
            out.stdout.is_empty(),
            "{args:?}: nothing runs before the arguments are checked, yet it printed {:?}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

#[test]
fn help_names_every_option() {
    let out = compare(&["--help"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let help = String::from_utf8_lossy(&out.stdout);
    for option in [
        "--quick",
        "--rounds N",
        "--case BATCHxPOOL",
        "--engine raw|hyper",
    ] {
        assert!(help.contains(option), "{option} missing from:\n{help}");
    }
    // The usage is the script's header comment, and only that.
    assert!(!help.contains("set -euo"), "{help}");
    assert!(help.lines().count() >= 10, "{help}");
}

#[test]
fn retention_sh_refuses_a_wrong_argument_and_names_its_options() {
    let cases: &[(&[&str], &str)] = &[
        (&["--duration", "x"], "x is not a number"),
        (&["--alerts", "-1"], "-1 is not a number"),
        (&["--incidents"], "--incidents needs a value"),
        (&["--fast"], "unknown argument: --fast"),
        // Accepted arguments get as far as the tools: none but sed is on this PATH.
        (&["--duration", "5"], "cargo is not on PATH"),
    ];
    for (args, reason) in cases {
        let out = script("retention.sh", args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(reason),
            "{args:?}: wanted {reason:?} in {:?}",
            stderr(&out)
        );
    }
    let out = script("retention.sh", &["--help"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let help = String::from_utf8_lossy(&out.stdout);
    for option in [
        "--alerts N",
        "--incidents N",
        "--resolved-pct P",
        "--duration SECS",
    ] {
        assert!(help.contains(option), "{option} missing from:\n{help}");
    }
    assert!(!help.contains("set -euo"), "{help}");
}

//! `benches/compare.sh` refuses what it cannot run, before it builds or starts anything: a wrong
//! argument is exit 2 with the reason. (Running the comparison itself takes minutes and a quiet
//! machine; it is a benchmark, not a test.)

use std::path::Path;
use std::process::{Command, Output};

/// Run compare.sh with a `PATH` that holds only `sed` (its usage text needs it): were an
/// argument wrongly taken, the script would stop at its check for `prometheus-alertmanager`
/// (exit 2, another reason) instead of starting a benchmark.
fn compare(args: &[&str]) -> Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/compare.sh");
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
        .expect("running bash benches/compare.sh")
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

//! Running a script of `tests/browser/` (Playwright-core driving Debian's headless Chromium with
//! a fake camera) and failing with its own output. Needs `node` and `/usr/bin/chromium` (or
//! `$CHROMIUM`); `.ci/run` installs both. The script's npm dependency is installed from the lock
//! file on first use. Screenshots and logs land in `target/browser-artifacts/<script>/`.
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// `npm ci` once per test process, whichever test gets there first.
fn node_modules() {
    static INSTALLED: Mutex<bool> = Mutex::new(false);
    let mut done = INSTALLED.lock().unwrap_or_else(|e| e.into_inner());
    if *done || browser_dir().join("node_modules/playwright-core").is_dir() {
        *done = true;
        return;
    }
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--prefix"])
        .arg(browser_dir())
        .status()
        .expect("npm must be installed to run the browser tests");
    assert!(status.success(), "npm ci --prefix tests/browser failed");
    *done = true;
}

fn chromium() -> PathBuf {
    let path = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(
        path.exists(),
        "{} not found: install it (`apt-get install -y chromium`) or set CHROMIUM",
        path.display()
    );
    path
}

/// Runs `tests/browser/<script> <args>` and asserts it reported no failure. One script at a time: each
/// starts two or three Chromium processes with fake cameras, and three scripts at once on a
/// 2-core machine starved them (screenshots took 40-120 s, and new pages missed their 10 s).
pub fn run_script(script: &str, args: &[OsString]) {
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    // A script that failed poisons the lock; the next one still runs alone.
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    node_modules();
    let chromium = chromium();
    let name = script.trim_end_matches(".mjs");
    let out = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/browser-artifacts")
        .join(name);
    std::fs::create_dir_all(&out).expect("create the artifacts folder");
    let output = Command::new("node")
        .arg(browser_dir().join(script))
        .args(args)
        .arg("--out")
        .arg(&out)
        .arg("--chromium")
        .arg(&chromium)
        .output()
        .expect("node must be installed to run the browser tests");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let summary = stdout.lines().rev().find(|l| l.contains(" passed, "));
    assert!(
        output.status.success() && summary.is_some_and(|l| l.contains(" 0 failed")),
        "{script} failed ({}); artifacts in {}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        output.status,
        out.display()
    );
    println!("{script}: {}", summary.unwrap_or_default());
}

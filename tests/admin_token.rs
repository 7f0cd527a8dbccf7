//! docs/flags.md, `--admin-token-file` and `RTCSERVER_ADMIN_TOKEN`: the admin token without it
//! showing in `ps`, through the built binary.
mod common;
use common::admin::*;
use common::run;
use std::time::Duration;

/// A file of its own in the system's temp dir, removed on drop.
struct TempFile(std::path::PathBuf);

impl TempFile {
    fn new(name: &str, text: &str) -> TempFile {
        let path = std::env::temp_dir().join(format!("rtcserver-{}-{name}", std::process::id()));
        std::fs::write(&path, text).expect("write the temp file");
        TempFile(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().expect("a UTF-8 temp path")
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The admin API of `binary` wants exactly `token`, and its command line does not show it.
fn wants(binary: &mut Binary, token: &str) {
    let (_, admin) = binary.addresses();
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", binary.pid())).expect("cmdline");
    assert!(
        !String::from_utf8_lossy(&cmdline).contains(token),
        "the token is in the command line"
    );
    run(async {
        get(admin, "/tree").await.expect(401);
        let wrong = [("Authorization", "Bearer nope")];
        http(admin, "GET", "/tree", &wrong, "").await.expect(401);
        let bearer = format!("Bearer {token}");
        let right = [("Authorization", bearer.as_str())];
        http(admin, "GET", "/tree", &right, "").await.expect(200);
    });
}

#[test]
fn the_token_comes_from_a_file() {
    // The first line, without its line end; what follows is ignored.
    let file = TempFile::new("token", "fr0m-a-file\r\nsecond line\n");
    let mut binary = Binary::on_loopback(&["--admin-token-file", file.path()]);
    wants(&mut binary, "fr0m-a-file");
}

#[test]
fn the_token_comes_from_the_environment() {
    let mut binary =
        Binary::on_loopback_with_env(&[], &[("RTCSERVER_ADMIN_TOKEN", "fr0m-the-env")]);
    wants(&mut binary, "fr0m-the-env");
}

/// Extra arguments, environment, and what the log must say.
type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);

/// Two sources, a missing file and an empty one: the start fails with exit status 1 and a line
/// that says why (and never the token).
#[test]
fn a_token_given_twice_or_unreadable_stops_the_start() {
    let empty = TempFile::new("empty", "\n");
    let file = TempFile::new("both", "t0ken\n");
    let cases: [Case; 4] = [
        (
            &["--admin-token", "a", "--admin-token-file", file.path()],
            &[],
            "give the admin token one way",
        ),
        (
            &["--admin-token-file", file.path()],
            &[("RTCSERVER_ADMIN_TOKEN", "b")],
            "give the admin token one way",
        ),
        (
            &["--admin-token-file", "/nonexistent/rtcserver-token"],
            &[],
            "cannot read --admin-token-file /nonexistent/rtcserver-token",
        ),
        (
            &["--admin-token-file", empty.path()],
            &[],
            "an admin token is a non-empty word without spaces",
        ),
    ];
    for (args, env, says) in cases {
        let mut binary = Binary::on_loopback_with_env(args, env);
        let (code, log) = binary.exit_code(Duration::from_secs(10));
        assert_eq!(code, Some(1), "{args:?}: {log:?}");
        assert!(log.iter().any(|l| l.contains(says)), "{args:?}: {log:?}");
        assert!(!log.iter().any(|l| l.contains("t0ken")), "{log:?}");
    }
}

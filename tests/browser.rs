//! Real browsers against the built server: each test runs one script of `tests/browser/`
//! (Playwright-core driving Debian's headless Chromium with a fake camera) with
//! `--server-bin` set to this build's `rtcserver`, and fails with the script's own output.
//!
//! Needs `node` and `/usr/bin/chromium` (or `$CHROMIUM`); `.ci/run` installs both. The
//! script's npm dependency is installed from the lock file on first use. Screenshots and logs
//! land in `target/browser-artifacts/<script>/`.
mod common;

fn run_script(script: &str) {
    common::browser::run_script(
        script,
        &[
            "--server-bin".into(),
            env!("CARGO_BIN_EXE_rtcserver").into(),
        ],
    );
}

/// README "The demo page": the call, then a reload of the host mid-call, a page leaving (the other
/// shows it within 2 s, with the invite), the invite followed again, a crashed renderer.
#[test]
fn two_browsers_make_a_call_on_the_demo_page() {
    run_script("call.mjs");
}

/// README "The demo page" (named rooms): the mesh call, the full room's link to the next room, a
/// participant's own peer crash resumed with its calls (docs/rooms-protocol.md "Resume"), another's
/// (without resume) and its "Join again", forged server events ignored.
#[test]
fn three_browsers_make_a_mesh_call_in_a_named_room() {
    run_script("rooms.mjs");
}

/// README "Testing your client against crashes": the observer page draws the tree, crashes a child,
/// loads with no console error, shows the server stopped within 2 s of SIGTERM and live once back.
#[test]
fn the_observer_page_draws_the_tree_and_crashes_a_child() {
    run_script("observer.mjs");
}

/// README "Testing your client against message faults": the demo call under slow signaling,
/// candidates before the offer and answer, a duplicated answer and a duplicated offer.
#[test]
fn the_demo_call_lives_through_message_faults() {
    run_script("faults.mjs");
}

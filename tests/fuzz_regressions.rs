//! What the fuzzers found, through the real server (the inputs themselves are replayed against the
//! parsers by tests/fuzz_corpus.rs from fuzz/regressions/).
mod common;
use common::*;

/// fuzz/regressions/book_frame/number-beyond-f64: a number past f64's range is JSON by the grammar
/// (a browser's `JSON.parse` reads it as Infinity), so a frame holding one is relayed verbatim, as
/// any other object is, and does not close the sender with 1007.
#[test]
fn a_number_beyond_f64_is_relayed_verbatim() {
    run(async {
        let server = server();
        let (mut a, mut b, _) = pair(&server).await;
        for frame in [
            r#"{"type":"offer","n":1e999}"#,
            r#"{"type":1e999}"#,
            r#"{"type":"candidate","n":-2222222.22222222222222144441e41444444444444}"#,
        ] {
            a.send(frame).await;
            assert_eq!(b.recv_text().await, frame);
        }
        a.close().await;
        b.close().await;
        server.assert_clean().await;
    });
}

/// fuzz/regressions/book_frame/enterroom-beyond-f64: such a number as ENTERROOM's `value` is not a
/// room number, answered WRONGROOM like any other (book-protocol.md), not a 1007 close.
#[test]
fn enterroom_with_a_number_beyond_f64_is_a_wrong_room() {
    run(async {
        let server = server();
        let mut a = server.client().await;
        a.enter_refused("1e999").await;
        a.enter_refused("-1e999").await;
        // Still open and usable.
        a.get_room().await;
        a.close().await;
        server.assert_clean().await;
    });
}

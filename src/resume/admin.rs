//! What the admin API shows of resume sessions: `/tree`'s `resume` object and the `/metrics`
//! series (docs/admin-api.md, "Resume").
use super::wire::Failure;
use super::Sessions;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;

/// `/tree`'s `resume`: the window, and every detached peer with what is left of it.
pub fn tree(sessions: &Sessions) -> Value {
    let detached: Vec<Value> = sessions
        .detached()
        .into_iter()
        .map(|d| {
            json!({
                "peer": d.peer,
                "room": d.room,
                "remaining_ms": u64::try_from(d.remaining.as_millis()).unwrap_or(u64::MAX),
                "frames_kept": d.frames,
            })
        })
        .collect();
    json!({
        "window_ms": u64::try_from(sessions.window().as_millis()).unwrap_or(u64::MAX),
        "sessions": sessions.len(),
        "detached": detached,
    })
}

/// The resume series, in Prometheus' text format.
pub fn metrics(sessions: &Sessions, out: &mut String) {
    let c = &sessions.counters;
    let mut series = |name: &str, kind: &str, help: &str, samples: &[(&str, u64)]| {
        crate::metrics::series(out, name, kind, help, samples.iter().copied());
    };
    series(
        "rtcserver_resume_sessions",
        "gauge",
        "Resume sessions, attached or detached.",
        &[("", sessions.len() as u64)],
    );
    series(
        "rtcserver_resume_detached_peers",
        "gauge",
        "Resumable peers without a connection, within their window.",
        &[("", sessions.detached().len() as u64)],
    );
    series(
        "rtcserver_resume_detached_bytes",
        "gauge",
        "Bytes of frames kept for detached peers (at most 256 MiB in all).",
        &[("", sessions.detached_bytes() as u64)],
    );
    series(
        "rtcserver_resume_detaches_total",
        "counter",
        "Resumable peers whose connection ended and that were kept for their window.",
        &[("", c.detaches.load(Ordering::Relaxed))],
    );
    series(
        "rtcserver_resume_frames_kept_total",
        "counter",
        "Frames kept for peers while they were detached.",
        &[("", c.frames_kept.load(Ordering::Relaxed))],
    );
    let failed = |f: Failure| c.failed[f as usize].load(Ordering::Relaxed);
    series(
        "rtcserver_resumes_total",
        "counter",
        "Resume requests by outcome: resumed, or the reason of resume_failed.",
        &[
            ("{outcome=\"resumed\"}", c.resumed.load(Ordering::Relaxed)),
            ("{outcome=\"unknown\"}", failed(Failure::Unknown)),
            ("{outcome=\"expired\"}", failed(Failure::Expired)),
            ("{outcome=\"overflow\"}", failed(Failure::Overflow)),
            ("{outcome=\"left\"}", failed(Failure::Left)),
            ("{outcome=\"gap\"}", failed(Failure::Gap)),
            ("{outcome=\"bad_seq\"}", failed(Failure::BadSeq)),
        ],
    );
    series(
        "rtcserver_resume_sessions_ended_total",
        "counter",
        "Sessions of detached peers that ended without a resume, by the reason their left gave.",
        &[
            ("{reason=\"timeout\"}", c.expired.load(Ordering::Relaxed)),
            (
                "{reason=\"overflow\"}",
                c.overflowed.load(Ordering::Relaxed),
            ),
        ],
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_series_is_there_with_help_and_type() {
        let sessions = Sessions::new(
            std::time::Duration::from_secs(20),
            Default::default(),
            Default::default(),
        );
        let mut text = String::new();
        metrics(&sessions, &mut text);
        for name in [
            "rtcserver_resume_sessions",
            "rtcserver_resume_detached_peers",
            "rtcserver_resume_detached_bytes",
            "rtcserver_resume_detaches_total",
            "rtcserver_resume_frames_kept_total",
            "rtcserver_resumes_total",
            "rtcserver_resume_sessions_ended_total",
        ] {
            assert!(text.contains(&format!("# TYPE {name} ")), "{name}");
        }
        assert!(text.contains("rtcserver_resumes_total{outcome=\"gap\"} 0"));
        assert_eq!(
            tree(&sessions),
            json!({"window_ms": 20000, "sessions": 0, "detached": []})
        );
    }
}

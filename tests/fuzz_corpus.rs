//! The fuzz targets (fuzz/src/targets.rs) on stable, in the normal suite: each target's body over its
//! committed corpus, its regression inputs (fuzz/regressions/<target>/, every crash a fuzz run found),
//! and a bounded number of seeded mutations of them. Not coverage-guided — that is fuzz/run, on nightly
//! (fuzz/README.md says why CI runs this instead) — but every input is one a peer or a file could hand
//! the server, and a failing one is printed so it can be saved as a regression.
#[path = "../fuzz/src/targets.rs"]
#[allow(dead_code)]
mod targets;

use std::path::Path;
use std::time::{Duration, Instant};

/// Mutated inputs per target: enough to shake the parsers' edges, few enough to cost a second or two in
/// all on a loaded machine.
const MUTATIONS: u64 = 10_000;
/// And at most this long per target, whatever the machine.
const TIME: Duration = Duration::from_secs(1);

/// Bytes that parsers branch on: JSON, Erlang, HTTP, percent-escapes, TOML.
const TOKENS: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"",
    b"\\",
    b",",
    b":",
    b".",
    b"-",
    b"%",
    b"%2",
    b"#",
    b"'",
    b"<<",
    b">>",
    b"$",
    b"\r\n",
    b"\r\n\r\n",
    b"\x00",
    b"\xff",
    b"\xc3\xa9",
    b"1e999",
    b"-0",
    b"18446744073709551616",
    b"-9223372036854775808",
    b"9223372036854775807",
    b"16#",
    b"null",
    b"true",
    b"[[rooms]]",
    b"=",
    b"\"type\"",
    b"\"event\"",
    b"\"to\"",
    b"\"all\"",
    b"\"GETROOM\"",
    b"\"ENTERROOM\"",
    b"\"value\"",
    b"Upgrade: websocket\r\n",
    b"Sec-WebSocket-Version: 13\r\n",
    b"?faults=",
    b"&",
    b"::1",
    b"[::",
];

/// xorshift64*: the mutations are the same on every run, so a failure here fails again.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n.max(1) as u64).unwrap_or(0)
    }
}

fn mutate(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut data = seeds[rng.below(seeds.len())].clone();
    for _ in 0..=rng.below(4) {
        let at = rng.below(data.len() + 1);
        match rng.below(6) {
            0 if !data.is_empty() => {
                let i = rng.below(data.len());
                data[i] ^= 1 << rng.below(8);
            }
            1 if !data.is_empty() => {
                let end = (at + 1 + rng.below(16)).min(data.len());
                data.drain(at.min(end)..end);
            }
            2 => {
                let token = TOKENS[rng.below(TOKENS.len())];
                data.splice(at..at, token.iter().copied());
            }
            3 => {
                let other = &seeds[rng.below(seeds.len())];
                let from = rng.below(other.len());
                let to = (from + rng.below(64)).min(other.len());
                data.splice(at..at, other[from..to].iter().copied());
            }
            4 if !data.is_empty() => {
                let i = rng.below(data.len());
                data[i] = u8::try_from(rng.below(256)).unwrap_or(0);
            }
            _ => data.truncate(at),
        }
    }
    data.truncate(8192);
    data
}

fn inputs(dir: &Path) -> Vec<Vec<u8>> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    files.sort();
    files.iter().filter_map(|f| std::fs::read(f).ok()).collect()
}

fn check(name: &str, body: fn(&[u8])) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let corpus = inputs(&root.join("corpus").join(name));
    assert!(!corpus.is_empty(), "fuzz/corpus/{name} is empty");
    let regressions = inputs(&root.join("regressions").join(name));
    let run = |what: &str, data: &[u8]| {
        if let Err(panic) = std::panic::catch_unwind(|| body(data)) {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            panic!(
                "{name}: {what} failed: {message}\n  input ({} bytes): {:?}\n  save it under fuzz/regressions/{name}/",
                data.len(),
                String::from_utf8_lossy(data)
            );
        }
    };
    for data in corpus.iter().chain(&regressions) {
        run("a committed input", data);
    }
    let seeds: Vec<Vec<u8>> = corpus.into_iter().chain(regressions).collect();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ name.len() as u64);
    let began = Instant::now();
    for i in 0..MUTATIONS {
        if began.elapsed() > TIME {
            break;
        }
        let data = mutate(&mut rng, &seeds);
        run(&format!("mutation {i}"), &data);
    }
}

macro_rules! fuzz_tests {
    ($($target:ident),* $(,)?) => {$(
        #[test]
        fn $target() {
            check(stringify!($target), targets::$target);
        }
    )*};
}

fuzz_tests!(
    http_head,
    head_fields,
    book_frame,
    rooms_frame,
    erlang_term,
    app_env,
    rooms_file,
    fault_rules,
    fault_replay,
    admin_request,
);

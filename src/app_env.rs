//! The rtcserver application environment, read from the Erlang files the
//! book uses for configuration.
//!
//! Two layouts are accepted and told apart by their content:
//!
//! * an application resource file (`rtcserver.app.src`):
//!   `{application, rtcserver, [..., {env, [{port, 30000}, ...]}, ...]}.`
//! * a release `sys.config`: `[{rtcserver, [{port, 30000}, ...]}, ...].`
//!   Sections of other applications (`kernel`, `sasl`, ...) are ignored,
//!   since an Erlang deployment's sys.config usually carries them.
//!
//! Every field of [`AppEnv`] is optional: `None` means "not set in the file",
//! so command-line flags and built-in defaults can be layered by the caller.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use crate::erlang_term::{consult, Term, TermError};

const APP: &str = "rtcserver";

/// Settings found in the `rtcserver` application environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppEnv {
    /// `{port, 30000}`: TCP port (0 lets the OS pick one).
    pub port: Option<u16>,
    /// `{acceptors, 100}`: size of the acceptor pool (at least 1).
    pub acceptors: Option<u32>,
    /// `{max_keepalive, 50}`: requests allowed on one keep-alive connection.
    pub max_keepalive: Option<u32>,
    /// `{timeout, 500}`: handshake timeout in milliseconds.
    pub timeout_ms: Option<u64>,
    /// `{bind, "0.0.0.0"}` or `{bind, {0,0,0,0}}`: listen address, validated
    /// and normalised to the textual form of an [`IpAddr`].
    pub bind: Option<String>,
    /// `{max_message_bytes, 65536}`: largest accepted WebSocket message.
    pub max_message_bytes: Option<usize>,
    /// `{max_messages_per_sec, 1000}`: as `--max-messages-per-sec` (0: no limit).
    pub max_messages_per_sec: Option<u64>,
    /// `{max_bytes_per_sec, 4194304}`: as `--max-bytes-per-sec` (0: no limit).
    pub max_bytes_per_sec: Option<u64>,
    /// `{static_dir, "static"}`: folder served over HTTP.
    pub static_dir: Option<String>,
    /// `{log_level, info}`: normalised to a name `log::LevelFilter` parses
    /// (`off`, `error`, `warn`, `info`, `debug`, `trace`); Erlang logger
    /// names are accepted and mapped (`warning` -> `warn`, `notice` ->
    /// `info`, `critical`/`alert`/`emergency` -> `error`, `none` -> `off`,
    /// `all` -> `trace`).
    pub log_level: Option<String>,
    /// `{allowed_origins, ["https://a.example"]}` (or one string, comma-separated, or `'*'`):
    /// as `--allowed-origins`.
    pub allowed_origins: Option<crate::origins::AllowedOrigins>,
    /// `{cluster, "redis://127.0.0.1:6379"}`: as `--cluster`.
    pub cluster: Option<String>,
    /// `{node_id, "a"}`: as `--node-id`.
    pub node_id: Option<crate::cluster::NodeId>,
    /// Non-fatal findings (unknown keys, duplicates, ...) for the caller to log.
    pub warnings: Vec<String>,
}

/// Why the environment could not be read.
#[derive(Debug)]
pub struct AppEnvError {
    /// The file, when the text came from [`load`].
    pub path: Option<PathBuf>,
    pub kind: AppEnvErrorKind,
}

#[derive(Debug)]
#[non_exhaustive]
pub enum AppEnvErrorKind {
    Io(std::io::Error),
    /// The file is not valid Erlang term syntax; the error carries the line.
    Syntax(TermError),
    /// Valid terms, but neither an `.app.src` nor a `sys.config` layout.
    Layout(String),
    /// An `.app.src` describing some other application.
    WrongApplication(String),
    /// An env entry that is not a `{Key, Value}` pair with an atom key.
    BadEntry(String),
    /// A known key with a value of the wrong type or out of range.
    BadValue {
        key: &'static str,
        expected: &'static str,
        found: String,
    },
}

impl fmt::Display for AppEnvErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AppEnvErrorKind::Io(e) => write!(f, "cannot read the file: {e}"),
            AppEnvErrorKind::Syntax(e) => write!(f, "{e}"),
            AppEnvErrorKind::Layout(why) => write!(
                f,
                "expected {{application, {APP}, [...]}}. (an .app.src) or [{{{APP}, [...]}}]. (a sys.config), {why}"
            ),
            AppEnvErrorKind::WrongApplication(name) => {
                write!(f, "this .app.src describes application '{name}', not '{APP}'")
            }
            AppEnvErrorKind::BadEntry(found) => {
                write!(f, "expected {{Key, Value}} entries in the {APP} env, found {found}")
            }
            AppEnvErrorKind::BadValue { key, expected, found } => {
                write!(f, "bad value for '{key}' in the {APP} env: expected {expected}, found {found}")
            }
        }
    }
}

impl fmt::Display for AppEnvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(p) = &self.path {
            write!(f, "{}: ", p.display())?;
        }
        write!(f, "{}", self.kind)
    }
}

impl std::error::Error for AppEnvError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            AppEnvErrorKind::Io(e) => Some(e),
            AppEnvErrorKind::Syntax(e) => Some(e),
            _ => None,
        }
    }
}

impl From<AppEnvErrorKind> for AppEnvError {
    fn from(kind: AppEnvErrorKind) -> Self {
        AppEnvError { path: None, kind }
    }
}

/// Reads the environment from an `.app.src` or `sys.config` file.
///
/// # Errors
/// The file cannot be read, is not valid Erlang term syntax (the error
/// names the line), has neither layout, or gives a known key a bad value.
pub fn load(path: &Path) -> Result<AppEnv, AppEnvError> {
    let with_path = |kind| AppEnvError {
        path: Some(path.to_path_buf()),
        kind,
    };
    let bytes = std::fs::read(path).map_err(|e| with_path(AppEnvErrorKind::Io(e)))?;
    let (text, latin1) = match String::from_utf8(bytes) {
        Ok(s) => (s, false),
        // Erlang also reads Latin-1 source files, and every byte string is
        // valid Latin-1, so this cannot fail.
        Err(e) => (
            e.into_bytes().iter().map(|&b| char::from(b)).collect(),
            true,
        ),
    };
    let mut env = from_text(&text).map_err(|e| with_path(e.kind))?;
    if latin1 {
        env.warnings.insert(
            0,
            format!("{} is not valid UTF-8; read it as Latin-1", path.display()),
        );
    }
    Ok(env)
}

/// Reads the environment from the text of an `.app.src` or `sys.config`.
///
/// # Errors
/// As for [`load`], minus the I/O.
pub fn from_text(text: &str) -> Result<AppEnv, AppEnvError> {
    let terms = consult(text).map_err(AppEnvErrorKind::Syntax)?;
    let mut env = AppEnv::default();
    let Some(first) = terms.first() else {
        return Err(AppEnvErrorKind::Layout("found an empty file".into()).into());
    };
    if terms.len() > 1 {
        return Err(AppEnvErrorKind::Layout(format!(
            "found {} terms (the file must hold exactly one)",
            terms.len()
        ))
        .into());
    }
    match first {
        Term::Tuple(items) if items.first() == Some(&Term::Atom("application".into())) => {
            let [_, name, Term::List(props)] = items.as_slice() else {
                return Err(AppEnvErrorKind::Layout(format!("found {first}")).into());
            };
            match name.as_atom() {
                Some(APP) => {}
                Some(other) => return Err(AppEnvErrorKind::WrongApplication(other.into()).into()),
                None => {
                    return Err(
                        AppEnvErrorKind::Layout(format!("found application name {name}")).into(),
                    )
                }
            }
            let mut found = false;
            for prop in props {
                if let Some(("env", value)) = prop.as_pair() {
                    if found {
                        env.warnings.push(
                            "more than one env entry in the .app.src; later values win".into(),
                        );
                    }
                    found = true;
                    apply_env(&mut env, value)?;
                }
            }
        }
        Term::List(apps) => {
            let mut found = false;
            for app in apps {
                match app {
                    Term::Tuple(pair) if pair.len() == 2 && pair[0].as_atom().is_some() => {
                        if pair[0].as_atom() == Some(APP) {
                            if found {
                                env.warnings.push(format!(
                                    "more than one {APP} section in the sys.config; later values win"
                                ));
                            }
                            found = true;
                            apply_env(&mut env, &pair[1])?;
                        }
                    }
                    // Erlang lets sys.config name further config files; we
                    // do not follow them, but saying so beats silence.
                    Term::String(file) => env.warnings.push(format!(
                        "included config file \"{file}\" is not read, ignored"
                    )),
                    other => {
                        return Err(AppEnvErrorKind::Layout(format!(
                            "found {other} in the sys.config list (expected {{App, [...]}})"
                        ))
                        .into())
                    }
                }
            }
            if !found {
                env.warnings.push(format!(
                    "no {APP} section in the sys.config; using defaults"
                ));
            }
        }
        other => return Err(AppEnvErrorKind::Layout(format!("found {}", show(other))).into()),
    }
    Ok(env)
}

fn article(kind: &str) -> &'static str {
    if kind.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

/// A short rendering of the offending value for error messages; a huge
/// list pasted by mistake should not flood the terminal.
fn show(t: &Term) -> String {
    let s = t.to_string();
    let s = if s.chars().count() > 60 {
        format!("{}...", s.chars().take(60).collect::<String>())
    } else {
        s
    };
    format!("{} {} {s}", article(t.kind_name()), t.kind_name())
}

fn apply_env(env: &mut AppEnv, value: &Term) -> Result<(), AppEnvError> {
    let Term::List(entries) = value else {
        return Err(AppEnvErrorKind::BadEntry(show(value)).into());
    };
    let mut seen: Vec<&str> = Vec::new();
    for entry in entries {
        let Some((key, v)) = entry.as_pair() else {
            return Err(AppEnvErrorKind::BadEntry(show(entry)).into());
        };
        if seen.contains(&key) {
            // application:get_env/2 sees the last occurrence, so follow it.
            env.warnings.push(format!(
                "key '{key}' given more than once in {APP} env, the last value wins"
            ));
        }
        seen.push(key);
        match key {
            "port" => env.port = Some(int_as(v, "port", "an integer 0..65535", 0)?),
            "acceptors" => env.acceptors = Some(int_as(v, "acceptors", "a positive integer", 1)?),
            "max_keepalive" => {
                env.max_keepalive = Some(int_as(v, "max_keepalive", "a non-negative integer", 0)?);
            }
            "timeout" => {
                env.timeout_ms = Some(int_as(
                    v,
                    "timeout",
                    "a non-negative integer (milliseconds)",
                    0,
                )?);
            }
            "max_message_bytes" => {
                env.max_message_bytes =
                    Some(int_as(v, "max_message_bytes", "a positive integer", 1)?);
            }
            "max_messages_per_sec" => {
                env.max_messages_per_sec = Some(int_as(
                    v,
                    "max_messages_per_sec",
                    "a non-negative integer (0: no limit)",
                    0,
                )?);
            }
            "max_bytes_per_sec" => {
                env.max_bytes_per_sec = Some(int_as(
                    v,
                    "max_bytes_per_sec",
                    "a non-negative integer (0: no limit)",
                    0,
                )?);
            }
            "bind" => env.bind = Some(bind_address(v)?),
            "static_dir" => {
                let dir = text(v).filter(|d| !d.is_empty());
                env.static_dir =
                    Some(dir.ok_or_else(|| bad("static_dir", "a non-empty path as a string", v))?);
            }
            "log_level" => env.log_level = Some(log_level(v)?),
            "allowed_origins" => env.allowed_origins = Some(allowed_origins(v)?),
            "cluster" => {
                const EXPECTED: &str = "a Redis URL as a string (\"redis://HOST:PORT[/DB]\")";
                let url = text(v).ok_or_else(|| bad("cluster", EXPECTED, v))?;
                let url =
                    crate::cluster::parse_url(&url).map_err(|_| bad("cluster", EXPECTED, v))?;
                env.cluster = Some(url);
            }
            "node_id" => {
                const EXPECTED: &str = "1 to 64 of A-Z a-z 0-9 . _ - as a string";
                let id = text(v).and_then(|t| t.parse().ok());
                env.node_id = Some(id.ok_or_else(|| bad("node_id", EXPECTED, v))?);
            }
            other => env
                .warnings
                .push(format!("unknown key '{other}' in {APP} env, ignored")),
        }
    }
    Ok(())
}

/// A list of origin strings, or one string (`"https://a.example,https://b.example"`, `"*"`).
fn allowed_origins(v: &Term) -> Result<crate::origins::AllowedOrigins, AppEnvError> {
    const EXPECTED: &str = "a list of origins as strings (\"https://host[:port]\"), or \"*\"";
    let parsed = match v {
        Term::List(items) => {
            let texts: Option<Vec<String>> = items.iter().map(text).collect();
            let texts = texts.ok_or_else(|| bad("allowed_origins", EXPECTED, v))?;
            crate::origins::AllowedOrigins::from_entries(texts.iter().map(String::as_str))
        }
        other => text(other)
            .ok_or_else(|| bad("allowed_origins", EXPECTED, v))?
            .parse(),
    };
    parsed.map_err(|_| bad("allowed_origins", EXPECTED, v))
}

fn bad(key: &'static str, expected: &'static str, found: &Term) -> AppEnvError {
    AppEnvErrorKind::BadValue {
        key,
        expected,
        found: show(found),
    }
    .into()
}

/// An integer of at least `min` that fits in `T`; `T` supplies the upper bound.
fn int_as<T: TryFrom<i64>>(
    v: &Term,
    key: &'static str,
    expected: &'static str,
    min: i64,
) -> Result<T, AppEnvError> {
    match v {
        Term::Integer(i) if *i >= min => T::try_from(*i).map_err(|_| bad(key, expected, v)),
        _ => Err(bad(key, expected, v)),
    }
}

/// Text may be written as an atom, a string, a binary, or (as Erlang itself
/// sees strings) a list of character codes.
fn text(v: &Term) -> Option<String> {
    match v {
        Term::Atom(s) | Term::String(s) => Some(s.clone()),
        Term::Binary(b) => Some(match std::str::from_utf8(b) {
            Ok(s) => s.to_owned(),
            // <<"é">> without /utf8 holds Latin-1 bytes, as in Erlang.
            Err(_) => b.iter().map(|&c| char::from(c)).collect(),
        }),
        Term::List(items) => items
            .iter()
            .map(|i| {
                i.as_integer()
                    .and_then(|c| u32::try_from(c).ok())
                    .and_then(char::from_u32)
            })
            .collect(),
        _ => None,
    }
}

fn bind_address(v: &Term) -> Result<String, AppEnvError> {
    const EXPECTED: &str = "an IP address as a string or tuple, e.g. \"0.0.0.0\" or {0,0,0,0}";
    let addr: Option<IpAddr> = match v {
        Term::Tuple(parts) => {
            let nums: Option<Vec<i64>> = parts.iter().map(Term::as_integer).collect();
            match nums.as_deref() {
                Some(&[a, b, c, d]) => {
                    let o: Option<Vec<u8>> =
                        [a, b, c, d].iter().map(|&x| u8::try_from(x).ok()).collect();
                    o.map(|o| IpAddr::V4(Ipv4Addr::new(o[0], o[1], o[2], o[3])))
                }
                Some(s) if s.len() == 8 => {
                    let h: Option<Vec<u16>> = s.iter().map(|&x| u16::try_from(x).ok()).collect();
                    h.map(|h| {
                        IpAddr::V6(Ipv6Addr::new(
                            h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7],
                        ))
                    })
                }
                _ => None,
            }
        }
        // Atoms would not parse as an address anyway, except `localhost`,
        // which we do not resolve; only real addresses are accepted.
        other => text(other).and_then(|t| t.trim().parse().ok()),
    };
    addr.map(|a| a.to_string())
        .ok_or_else(|| bad("bind", EXPECTED, v))
}

fn log_level(v: &Term) -> Result<String, AppEnvError> {
    const EXPECTED: &str = "one of none, error, warning, notice, info, debug, trace";
    let name = text(v).ok_or_else(|| bad("log_level", EXPECTED, v))?;
    let level = match name.to_ascii_lowercase().as_str() {
        "none" | "off" => "off",
        "emergency" | "alert" | "critical" | "error" => "error",
        "warning" | "warn" => "warn",
        "notice" | "info" => "info",
        "debug" => "debug",
        "all" | "trace" => "trace",
        _ => return Err(bad("log_level", EXPECTED, v)),
    };
    Ok(level.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_err(text: &str) -> String {
        from_text(text).expect_err(text).to_string()
    }

    #[test]
    fn app_src_env() {
        let env = from_text(
            "{application, rtcserver, [{description, \"\"}, {vsn, \"1\"},\n\
             {mod, {rtcserver_app, []}},\n\
             {env, [{port, 30000}, {acceptors, 100}, {max_keepalive, 50}, {timeout, 500}]}]}.",
        )
        .unwrap();
        assert_eq!(
            env,
            AppEnv {
                port: Some(30000),
                acceptors: Some(100),
                max_keepalive: Some(50),
                timeout_ms: Some(500),
                ..AppEnv::default()
            }
        );
    }

    #[test]
    fn allowed_origins_as_a_list_or_one_string() {
        let origins = |env: &str| {
            from_text(&format!("{{application, rtcserver, [{{env, [{env}]}}]}}."))
                .map(|e| e.allowed_origins.map(|o| o.to_string()))
                .map_err(|e| e.to_string())
        };
        assert_eq!(
            origins(r#"{allowed_origins, ["https://a.example", "http://b.example:8080"]}"#),
            Ok(Some("https://a.example,http://b.example:8080".into()))
        );
        assert_eq!(
            origins(r#"{allowed_origins, "https://a.example,https://c.example"}"#),
            Ok(Some("https://a.example,https://c.example".into()))
        );
        assert_eq!(origins(r#"{allowed_origins, "*"}"#), Ok(Some("*".into())));
        for bad in [r#"["ftp://a"]"#, "[]", "42", r#"[https]"#] {
            let e = origins(&format!("{{allowed_origins, {bad}}}")).expect_err(bad);
            assert!(e.contains("allowed_origins"), "{bad}: {e}");
        }
    }

    #[test]
    fn app_src_without_env_is_empty() {
        let env = from_text("{application, rtcserver, [{vsn, \"1\"}]}.").unwrap();
        assert_eq!(env, AppEnv::default());
    }

    #[test]
    fn sys_config_env_and_other_apps() {
        let env = from_text(
            "%% a release config\n\
             [{kernel, [{logger_level, info}]},\n \
              {sasl, [{errlog_type, error}]},\n \
              {rtcserver, [{port, 8080}, {bind, {127,0,0,1}}, {max_message_bytes, 65536},\n\
                           {max_messages_per_sec, 50}, {max_bytes_per_sec, 0},\n\
                           {static_dir, <<\"www\">>}, {log_level, warning}]}].\n",
        )
        .unwrap();
        assert_eq!(env.port, Some(8080));
        assert_eq!(env.bind.as_deref(), Some("127.0.0.1"));
        assert_eq!(env.max_message_bytes, Some(65536));
        assert_eq!(env.max_messages_per_sec, Some(50));
        assert_eq!(env.max_bytes_per_sec, Some(0));
        assert_eq!(env.static_dir.as_deref(), Some("www"));
        assert_eq!(env.log_level.as_deref(), Some("warn"));
        assert!(env.warnings.is_empty(), "{:?}", env.warnings);
    }

    #[test]
    fn sys_config_without_our_section_warns() {
        let env = from_text("[{sasl, [{errlog_type, error}]}].").unwrap();
        assert_eq!(env.port, None);
        assert_eq!(
            env.warnings,
            ["no rtcserver section in the sys.config; using defaults"]
        );
        assert_eq!(from_text("[].").unwrap().warnings.len(), 1);
    }

    #[test]
    fn text_values_as_atom_string_binary_or_char_list() {
        for v in ["www", "\"www\"", "<<\"www\">>", "'www'", "[119,119,119]"] {
            let env = from_text(&format!("[{{rtcserver, [{{static_dir, {v}}}]}}].")).unwrap();
            assert_eq!(env.static_dir.as_deref(), Some("www"), "{v}");
        }
        let env =
            from_text("[{rtcserver, [{log_level, \"DEBUG\"}, {bind, <<\"::1\">>}]}].").unwrap();
        assert_eq!(env.log_level.as_deref(), Some("debug"));
        assert_eq!(env.bind.as_deref(), Some("::1"));
        let env = from_text("[{rtcserver, [{static_dir, <<\"caf\", 233>>}]}].").unwrap();
        assert_eq!(env.static_dir.as_deref(), Some("café"));
    }

    #[test]
    fn bind_forms() {
        let get = |v: &str| {
            from_text(&format!("[{{rtcserver, [{{bind, {v}}}]}}].")).map(|e| e.bind.unwrap())
        };
        assert_eq!(get("{0,0,0,0}").unwrap(), "0.0.0.0");
        assert_eq!(get("\"192.168.1.2\"").unwrap(), "192.168.1.2");
        assert_eq!(get("{0,0,0,0,0,0,0,1}").unwrap(), "::1");
        for bad in ["{256,0,0,1}", "{1,2,3}", "\"not an ip\"", "42", "{a,b,c,d}"] {
            let e = get(bad).unwrap_err().to_string();
            assert!(e.contains("'bind'"), "{bad}: {e}");
        }
    }

    #[test]
    fn unknown_keys_warn() {
        let env = from_text("[{rtcserver, [{foo, 1}, {port, 1}, {'Bar', x}]}].").unwrap();
        assert_eq!(env.port, Some(1));
        assert_eq!(
            env.warnings,
            [
                "unknown key 'foo' in rtcserver env, ignored",
                "unknown key 'Bar' in rtcserver env, ignored"
            ]
        );
    }

    #[test]
    fn duplicate_keys_last_wins_with_warning() {
        let env = from_text("[{rtcserver, [{port, 1}, {port, 2}]}].").unwrap();
        assert_eq!(env.port, Some(2));
        assert_eq!(env.warnings.len(), 1);
        assert!(env.warnings[0].contains("'port'"));
    }

    #[test]
    fn wrong_types_name_the_key() {
        let cases = [
            ("{port, \"abc\"}", "'port'"),
            ("{port, 65536}", "'port'"),
            ("{port, -1}", "'port'"),
            ("{acceptors, 0}", "'acceptors'"),
            ("{acceptors, many}", "'acceptors'"),
            ("{max_keepalive, 1.5}", "'max_keepalive'"),
            ("{timeout, infinity}", "'timeout'"),
            ("{timeout, -5}", "'timeout'"),
            ("{max_message_bytes, 0}", "'max_message_bytes'"),
            ("{max_messages_per_sec, -1}", "'max_messages_per_sec'"),
            ("{max_bytes_per_sec, fast}", "'max_bytes_per_sec'"),
            ("{static_dir, 12}", "'static_dir'"),
            ("{static_dir, \"\"}", "'static_dir'"),
            ("{log_level, loud}", "'log_level'"),
            ("{log_level, {info}}", "'log_level'"),
        ];
        for (entry, key) in cases {
            let msg = env_err(&format!("[{{rtcserver, [{entry}]}}]."));
            assert!(msg.contains(key), "{entry}: {msg}");
            assert!(msg.contains("bad value"), "{entry}: {msg}");
        }
        assert_eq!(
            env_err("[{rtcserver, [{port, \"abc\"}]}]."),
            "bad value for 'port' in the rtcserver env: expected an integer 0..65535, found a string \"abc\""
        );
        // Same check through the .app.src layout.
        let msg = env_err("{application, rtcserver, [{env, [{port, \"abc\"}]}]}.");
        assert!(msg.contains("'port'"), "{msg}");
    }

    #[test]
    fn malformed_file_names_the_line() {
        let msg = env_err("[{rtcserver, [\n  {port, 30000},\n  {acceptors 100}\n]}].\n");
        assert!(msg.starts_with("line 3, column "), "{msg}");
        let e = from_text("{application, rtcserver,\n [{env, []}\n").unwrap_err();
        assert!(
            matches!(&e.kind, AppEnvErrorKind::Syntax(t) if t.line == 3),
            "{e}"
        );
        assert!(std::error::Error::source(&e).is_some());
    }

    #[test]
    fn wrong_layouts() {
        assert!(env_err("").contains("empty file"));
        assert!(env_err("42.").contains("found an integer 42"));
        assert!(env_err("{application, rtcserver, []}. extra.").contains("2 terms"));
        assert!(env_err("{application, rtcserver}.").contains("expected {application"));
        assert!(env_err("[foo].").contains("found foo"));
        assert!(env_err("[{rtcserver, [port]}].").contains("{Key, Value}"));
        assert!(env_err("[{rtcserver, {port, 1}}].").contains("{Key, Value}"));
        assert_eq!(
            env_err("{application, other_app, [{env, []}]}."),
            "this .app.src describes application 'other_app', not 'rtcserver'"
        );
        let env = from_text("[\"other.config\", {rtcserver, []}].").unwrap();
        assert!(env.warnings[0].contains("other.config"));
    }

    #[test]
    fn load_reads_files_and_names_them_in_errors() {
        let dir =
            std::env::temp_dir().join(format!("rtcserver-app-env-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("sys.config");
        std::fs::write(&good, "[{rtcserver, [{port, 4242}]}].\n").unwrap();
        assert_eq!(load(&good).unwrap().port, Some(4242));

        let broken = dir.join("broken.config");
        std::fs::write(&broken, "[{rtcserver,\n [{port, 4242}}].\n").unwrap();
        let msg = load(&broken).unwrap_err().to_string();
        assert!(
            msg.starts_with(&format!("{}: line 2, column ", broken.display())),
            "{msg}"
        );

        let latin1 = dir.join("latin1.config");
        std::fs::write(&latin1, b"[{rtcserver, [{static_dir, \"caf\xe9\"}]}].\n").unwrap();
        let env = load(&latin1).unwrap();
        assert_eq!(env.static_dir.as_deref(), Some("café"));
        assert!(env.warnings[0].contains("Latin-1"));

        let missing = dir.join("missing.config");
        let e = load(&missing).unwrap_err();
        assert!(matches!(e.kind, AppEnvErrorKind::Io(_)));
        assert!(e.to_string().contains("missing.config"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_books_app_src() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("rebar-compat/apps/rtcserver/src/rtcserver.app.src");
        let env = load(&path).unwrap();
        assert_eq!(
            env,
            AppEnv {
                port: Some(30000),
                acceptors: Some(100),
                max_keepalive: Some(50),
                timeout_ms: Some(500),
                ..AppEnv::default()
            }
        );
    }
}

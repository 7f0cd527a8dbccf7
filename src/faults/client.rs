//! `?faults=<preset>` (`--client-faults`): a client that can only reach the signaling port asks
//! for a preset on its own WebSocket URL. The preset's rules act on the messages sent *to* that
//! client (see docs/faults.md, "Client faults", for why), and go when it does: the supervisor's
//! report of its end removes them ([`Faults::client_gone`]).
use super::presets;
use super::rule::RuleError;
use super::{Faults, RulesError};
use crate::registry::PeerId;
use std::fmt;

/// Why a `?faults=` was refused (HTTP 400, before the upgrade).
#[derive(Debug, Clone, PartialEq)]
pub enum ClientFaultsError {
    /// The server runs without `--client-faults`.
    NotAllowed,
    UnknownPreset(String),
    /// The preset has a rule this build refuses.
    Unavailable(String, RuleError),
    /// The rules could not be set (too many rules).
    Rules(RulesError),
}

impl fmt::Display for ClientFaultsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientFaultsError::NotAllowed => {
                f.write_str("faults: ?faults= needs the server to run with --client-faults")
            }
            ClientFaultsError::UnknownPreset(p) => {
                let known: Vec<&str> = presets::all().iter().map(|p| p.name.as_str()).collect();
                write!(f, "faults: no preset {p:?} (known: {})", known.join(", "))
            }
            ClientFaultsError::Unavailable(p, e) => {
                write!(f, "faults: preset {p:?} is not available here: {e}")
            }
            ClientFaultsError::Rules(e) => write!(f, "faults: {e}"),
        }
    }
}

impl std::error::Error for ClientFaultsError {}

/// The value of `faults` in a query string, as given (preset names need no decoding).
pub fn requested(query: &str) -> Option<&str> {
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix("faults="))
        .or_else(|| query.split('&').any(|p| p == "faults").then_some(""))
}

impl Faults {
    /// Sets the preset `query` asks for (if any) on the messages to `peer`.
    pub fn for_client(
        &self,
        allowed: bool,
        query: &str,
        peer: PeerId,
    ) -> Result<(), ClientFaultsError> {
        let Some(name) = requested(query) else {
            return Ok(());
        };
        if !allowed {
            return Err(ClientFaultsError::NotAllowed);
        }
        let preset =
            presets::get(name).ok_or_else(|| ClientFaultsError::UnknownPreset(name.to_owned()))?;
        let prefix = format!("{}{}", presets::client_prefix(peer), preset.prefix());
        let rules = preset
            .rules(&prefix, Some(peer))
            .map_err(|e| ClientFaultsError::Unavailable(name.to_owned(), e))?;
        self.set_prefixed(&prefix, rules)
            .map_err(ClientFaultsError::Rules)
    }

    /// A peer ended: the rules its `?faults=` set go with it.
    pub fn client_gone(&self, peer: PeerId) {
        self.remove_prefixed(&presets::client_prefix(peer));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_faults_parameter_is_found_among_others() {
        assert_eq!(requested("faults=late-answer"), Some("late-answer"));
        assert_eq!(requested("a=1&faults=glare&b"), Some("glare"));
        assert_eq!(requested("faults"), Some(""));
        assert_eq!(requested("faultsx=1"), None);
        assert_eq!(requested(""), None);
    }
}

//! Slowing password guessers without handing them a way to lock people out, after OWASP's
//! Authentication Cheat Sheet ("account lockout" and its denial-of-service warning) and
//! Keycloak's brute-force detection:
//!
//! - **A username at an address**: 5 failures lock that pair for 30 s, doubling up to 15 min.
//!   This is what stops a guesser. A stranger elsewhere failing the owner's password locks only
//!   their own pair, never the owner at the owner's address.
//! - **A username from anywhere**: 50 failures (a guesser spread over many addresses) lock the
//!   username, except at addresses where it has signed in before, so the owner goes on.
//! - **An address, any username**: 100 failures (credential stuffing from one host) lock the
//!   address, except for usernames that have signed in from it before: a control room behind one
//!   NAT address, with a typo now and then, never reaches it.
//!
//! Unknown usernames are counted like known ones, so a lock reveals nothing. Every lock is
//! logged (audit event `sign_in_locked`) and counted (`nmos_auth.signin.lockouts`, by limit).
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::throttle::Throttle;

const PAIR_FAILURES: u32 = 5;
const USER_FAILURES: u32 = 50;
const ADDRESS_FAILURES: u32 = 100;
/// How long a successful sign-in makes its address known for its username.
const KNOWN_FOR: Duration = Duration::from_secs(30 * 24 * 3600);
const MAX_KNOWN: usize = 100_000;

/// Which limit a sign-in met.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    Pair,
    User,
    Address,
}

impl Limit {
    pub fn as_str(self) -> &'static str {
        match self {
            Limit::Pair => "username_at_address",
            Limit::User => "username",
            Limit::Address => "address",
        }
    }
}

pub struct SignInGuard {
    pair: Throttle,
    user: Throttle,
    address: Throttle,
    /// username and address pairs that signed in, and when.
    known: Mutex<HashMap<String, Instant>>,
}

fn pair_key(username: &str, address: &str) -> String {
    format!("{username}\0{}", counted(address))
}

/// The address as the limits count it: an IPv6 address by its /64, the smallest network a site
/// is given (one host may hop through all of it), an IPv4 address (mapped or not) by itself.
fn counted(address: &str) -> String {
    match address.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
        _ => address.to_owned(),
    }
}

impl Default for SignInGuard {
    fn default() -> SignInGuard {
        SignInGuard {
            pair: Throttle::new(PAIR_FAILURES),
            user: Throttle::new(USER_FAILURES),
            address: Throttle::new(ADDRESS_FAILURES),
            known: Mutex::new(HashMap::new()),
        }
    }
}

impl SignInGuard {
    fn known(&self, pair: &str) -> bool {
        let known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        known.get(pair).is_some_and(|at| at.elapsed() < KNOWN_FOR)
    }

    /// Whether `username` may try a password from `address` now; the limit and the wait if not.
    pub fn check(&self, username: &str, address: &str) -> Result<(), (Limit, Duration)> {
        let pair = pair_key(username, address);
        if let Some(wait) = self.pair.locked(&pair) {
            return Err((Limit::Pair, wait));
        }
        if self.known(&pair) {
            return Ok(());
        }
        if let Some(wait) = self.user.locked(username) {
            return Err((Limit::User, wait));
        }
        match (address.is_empty(), self.address.locked(&counted(address))) {
            (false, Some(wait)) => Err((Limit::Address, wait)),
            _ => Ok(()),
        }
    }

    /// The lock-outs in force now, by limit.
    pub fn locked_now(&self) -> [(Limit, usize); 3] {
        [
            (Limit::Pair, self.pair.locked_now()),
            (Limit::User, self.user.locked_now()),
            (Limit::Address, self.address.locked_now()),
        ]
    }

    /// Counts a wrong password; the limits it made lock.
    pub fn failure(&self, username: &str, address: &str) -> Vec<Limit> {
        let mut locked = Vec::new();
        if self.pair.failure(&pair_key(username, address)) {
            locked.push(Limit::Pair);
        }
        if self.user.failure(username) {
            locked.push(Limit::User);
        }
        if !address.is_empty() && self.address.failure(&counted(address)) {
            locked.push(Limit::Address);
        }
        locked
    }

    /// A right password: the pair's count is forgotten and the address becomes known for the
    /// username. The username's and the address's counts stay (an attacker with one account
    /// must not reset them).
    pub fn success(&self, username: &str, address: &str) {
        let pair = pair_key(username, address);
        self.pair.success(&pair);
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        if known.len() >= MAX_KNOWN {
            known.retain(|_, at| at.elapsed() < KNOWN_FOR);
            if known.len() >= MAX_KNOWN {
                known.clear();
            }
        }
        known.insert(pair, Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stranger_elsewhere_cannot_lock_the_owner_out() {
        let guard = SignInGuard::default();
        for i in 0..PAIR_FAILURES {
            assert!(guard.check("admin", "10.0.0.66").is_ok(), "attempt {i}");
            guard.failure("admin", "10.0.0.66");
        }
        assert_eq!(guard.check("admin", "10.0.0.66").unwrap_err().0, Limit::Pair, "the guesser is slowed");
        assert!(guard.check("admin", "10.0.0.1").is_ok(), "the owner at their own address is not");
    }

    #[test]
    fn a_busy_control_room_behind_one_address_is_not_locked_out() {
        let guard = SignInGuard::default();
        // Twenty people with a typo or two each, all behind one NAT address.
        for person in 0..20 {
            let name = format!("operator{person}");
            for _ in 0..2 {
                guard.failure(&name, "192.0.2.10");
            }
            assert!(guard.check(&name, "192.0.2.10").is_ok(), "{name}");
            guard.success(&name, "192.0.2.10");
        }
        // Someone there stuffing credentials locks the address, except for those known there.
        for i in 0..ADDRESS_FAILURES {
            guard.failure(&format!("guess{i}"), "192.0.2.10");
        }
        assert_eq!(guard.check("newcomer", "192.0.2.10").unwrap_err().0, Limit::Address);
        assert!(guard.check("operator7", "192.0.2.10").is_ok(), "known here");
    }

    #[test]
    fn a_guesser_spread_over_many_addresses_locks_the_username_except_where_the_owner_is_known() {
        let guard = SignInGuard::default();
        guard.success("alice", "10.0.0.1");
        let mut locked = Vec::new();
        for i in 0..USER_FAILURES {
            locked.extend(guard.failure("alice", &format!("198.51.100.{i}")));
        }
        assert_eq!(locked, [Limit::User], "the lock is reported once, when it starts");
        assert_eq!(guard.check("alice", "203.0.113.9").unwrap_err().0, Limit::User);
        assert!(guard.check("alice", "10.0.0.1").is_ok(), "alice where she signed in before");
        assert!(guard.check("bob", "203.0.113.9").is_ok());
    }

    #[test]
    fn an_ipv6_guesser_cannot_hop_through_its_subnet() {
        let guard = SignInGuard::default();
        for i in 0..PAIR_FAILURES {
            guard.failure("admin", &format!("2001:db8:1:2::{i:x}"));
        }
        assert_eq!(guard.check("admin", "2001:db8:1:2:ffff::9").unwrap_err().0, Limit::Pair, "the same /64");
        assert!(guard.check("admin", "2001:db8:1:3::1").is_ok(), "another /64");
        for i in 0..ADDRESS_FAILURES {
            guard.failure(&format!("guess{i}"), &format!("2001:db8:9:9::{i:x}"));
        }
        assert_eq!(guard.check("newcomer", "2001:db8:9:9::abcd").unwrap_err().0, Limit::Address);
        assert_eq!(counted("::ffff:192.0.2.1"), "192.0.2.1");
    }
}

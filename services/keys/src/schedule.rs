//! The rotation schedule, as a function of the stored keys and the time: which key signs, which
//! are published, and what to store next. Every replica computes the same answer from the same
//! rows, and the unique generation makes the one planned successor unique.
use crate::store::StoredKey;

/// The configured rotation, in seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Rotate this often; `None`: only when an operator asks.
    pub period: Option<i64>,
    /// Publish a new key this long before it signs.
    pub lead: i64,
    /// The longest an access token lives.
    pub token_lifetime: i64,
    /// Keep a retired key published this long after its last token expired.
    pub grace: i64,
}

/// A key's state at a moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Published, not yet signing.
    Next,
    /// Signs new tokens.
    Active,
    /// Replaced; still published so its tokens verify.
    Retired,
    /// Out of the JWKS: by the schedule, or at once by an operator.
    Removed,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Next => "next",
            State::Active => "active",
            State::Retired => "retired",
            State::Removed => "removed",
        }
    }
}

fn removed(key: &StoredKey, now: i64) -> bool {
    key.remove_at.is_some_and(|at| at <= now)
}

/// Whether `key` was removed before it could sign: an operator took out a planned successor.
/// It counts for nothing in the schedule; the key it was to follow signs on.
fn never_signed(key: &StoredKey) -> bool {
    key.remove_at.is_some_and(|at| at < key.activate_at)
}

/// The key that signs at `now`: the newest generation already active, if it is not removed.
/// (An older key never signs again, even if the newest is removed: a new one is made instead;
/// unless the newest was removed before it ever signed.)
pub fn signing(keys: &[StoredKey], now: i64) -> Option<&StoredKey> {
    keys.iter()
        .filter(|k| k.activate_at <= now && !never_signed(k))
        .max_by_key(|k| k.generation)
        .filter(|k| !removed(k, now))
}

pub fn state(keys: &[StoredKey], key: &StoredKey, now: i64) -> State {
    if removed(key, now) {
        State::Removed
    } else if key.activate_at > now {
        State::Next
    } else if signing(keys, now).is_some_and(|k| k.kid == key.kid) {
        State::Active
    } else {
        State::Retired
    }
}

/// The keys in the JWKS at `now`.
pub fn published(keys: &[StoredKey], now: i64) -> impl Iterator<Item = &StoredKey> {
    keys.iter().filter(move |k| !removed(k, now))
}

/// What the schedule stores next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// A new key for `generation`, signing from `activate_at`.
    Create { generation: i64, activate_at: i64 },
    /// A key's removal time, once its successor's activation is known (or changed, when the
    /// successor was removed before it signed and another took its place).
    RemoveAt { kid: String, at: i64 },
}

pub fn plan(keys: &[StoredKey], now: i64, policy: Policy) -> Vec<Step> {
    let mut steps = Vec::new();
    let newest = keys.iter().map(|k| k.generation).max();
    let next_generation = newest.map_or(0, |g| g + 1);
    match signing(keys, now) {
        // No key yet, or the newest active one was removed: a key that signs at once.
        None => steps.push(Step::Create { generation: next_generation, activate_at: now }),
        Some(current) => {
            let successor = keys.iter().any(|k| k.generation > current.generation && !removed(k, now));
            if let Some(period) = policy.period
                && !successor
                && now >= current.activate_at + period - policy.lead
            {
                let activate_at = (current.activate_at + period).max(now + policy.lead);
                steps.push(Step::Create { generation: next_generation, activate_at });
            }
        }
    }
    // A key leaves the JWKS once every token it can have signed has expired, plus the grace.
    for key in keys.iter().filter(|k| !removed(k, now) && !k.removed_by_operator) {
        let successors = keys.iter().filter(|k| k.generation > key.generation && !never_signed(k));
        if let Some(handover) = successors.map(|k| k.activate_at).min() {
            let at = handover + policy.token_lifetime + policy.grace;
            if key.remove_at != Some(at) {
                steps.push(Step::RemoveAt { kid: key.kid.clone(), at });
            }
        }
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(generation: i64, activate_at: i64, remove_at: Option<i64>) -> StoredKey {
        StoredKey {
            kid: format!("k{generation}"),
            n: String::new(),
            e: String::new(),
            encrypted_private_key: Vec::new(),
            created_at: activate_at,
            generation,
            activate_at,
            remove_at,
            removed_by_operator: false,
            x5c: Vec::new(),
            kek_id: String::new(),
        }
    }

    const POLICY: Policy = Policy { period: Some(100), lead: 20, token_lifetime: 30, grace: 10 };

    #[test]
    fn a_first_key_then_a_successor_published_ahead() {
        assert_eq!(plan(&[], 5, POLICY), vec![Step::Create { generation: 0, activate_at: 5 }]);
        let keys = vec![key(0, 0, None)];
        assert_eq!(plan(&keys, 79, POLICY), vec![], "not yet within the lead");
        assert_eq!(plan(&keys, 80, POLICY), vec![Step::Create { generation: 1, activate_at: 100 }]);
        // A late check still gives the Nodes the whole lead.
        assert_eq!(plan(&keys, 95, POLICY), vec![Step::Create { generation: 1, activate_at: 115 }]);
    }

    #[test]
    fn the_old_key_signs_until_the_handover_and_stays_published_after() {
        let keys = vec![key(0, 0, None), key(1, 100, None)];
        assert_eq!(plan(&keys, 90, POLICY), vec![Step::RemoveAt { kid: "k0".into(), at: 140 }]);
        let keys = vec![key(0, 0, Some(140)), key(1, 100, None)];
        assert_eq!(signing(&keys, 99).unwrap().kid, "k0");
        assert_eq!(state(&keys, &keys[1], 99), State::Next);
        assert_eq!(signing(&keys, 100).unwrap().kid, "k1");
        assert_eq!(state(&keys, &keys[0], 139), State::Retired);
        assert_eq!(published(&keys, 139).count(), 2);
        assert_eq!(state(&keys, &keys[0], 140), State::Removed);
        assert_eq!(published(&keys, 140).count(), 1);
    }

    #[test]
    fn a_removed_active_key_is_replaced_at_once_never_by_an_older_one() {
        let keys = vec![key(0, 0, Some(140)), key(1, 100, Some(120))];
        assert!(signing(&keys, 125).is_none(), "k0 does not sign again");
        assert_eq!(plan(&keys, 125, POLICY), vec![Step::Create { generation: 2, activate_at: 125 }]);
        let no_rotation = Policy { period: None, ..POLICY };
        assert_eq!(plan(&[key(0, 0, None)], 10_000, no_rotation), vec![]);
    }

    #[test]
    fn a_successor_removed_before_it_signed_leaves_the_old_key_signing() {
        // k1 was to sign from 100 (k0 then leaving the JWKS at 140); an operator removes it at 90.
        let keys = vec![key(0, 0, Some(140)), key(1, 100, Some(90))];
        assert_eq!(signing(&keys, 100).unwrap().kid, "k0", "no gap at 100, and no unannounced key");
        // Another successor is published ahead, as k1 was, and k0 stays published until its
        // tokens have expired after that one's handover.
        assert_eq!(plan(&keys, 91, POLICY), vec![Step::Create { generation: 2, activate_at: 111 }]);
        let keys = vec![key(0, 0, Some(140)), key(1, 100, Some(90)), key(2, 111, None)];
        assert_eq!(plan(&keys, 92, POLICY), vec![Step::RemoveAt { kid: "k0".into(), at: 151 }]);
        let keys = vec![key(0, 0, Some(151)), key(1, 100, Some(90)), key(2, 111, None)];
        assert_eq!(plan(&keys, 93, POLICY), vec![]);
        assert_eq!(signing(&keys, 110).unwrap().kid, "k0");
        assert_eq!(signing(&keys, 111).unwrap().kid, "k2");
    }
}

//! Key-order sort of the input keys.
//!
//! Comparing `NodeKey`s chases two string pointers per side, a likely cache miss each at
//! 100,000 platforms. Here every key is summarised by big-endian, zero-padded prefixes of its
//! namespace (8 bytes) and name (16 bytes) plus their lengths, sorted as plain integers; the
//! strings themselves are only read when the summaries cannot decide (long or NUL-padded names).

use std::cmp::Ordering;

use super::NodeKey;

const NS_PREFIX: usize = 8;
const NAME_PREFIX: usize = 16;

#[derive(Clone, Copy)]
struct Entry {
    ns: u64,
    name0: u64,
    name1: u64,
    ns_len: u32,
    name_len: u32,
    idx: u32,
}

fn word(bytes: &[u8], from: usize) -> u64 {
    let mut w = [0u8; 8];
    if from < bytes.len() {
        let part = &bytes[from..bytes.len().min(from + 8)];
        w[..part.len()].copy_from_slice(part);
    }
    u64::from_be_bytes(w)
}

fn len32(s: &str) -> u32 {
    u32::try_from(s.len()).unwrap_or(u32::MAX)
}

impl Entry {
    fn new(key: &NodeKey, idx: u32) -> Self {
        let (ns, name) = (key.namespace.as_bytes(), key.name.as_bytes());
        Entry {
            ns: word(ns, 0),
            name0: word(name, 0),
            name1: word(name, 8),
            ns_len: len32(&key.namespace),
            name_len: len32(&key.name),
            idx,
        }
    }

    /// Key order as far as the summaries tell: `Some(Equal)` only when the keys are equal,
    /// `None` when the strings must be compared.
    ///
    /// Zero-padded big-endian prefixes never contradict byte-wise string order (a string that
    /// ends where the other has a byte is a prefix of it, hence smaller), so a strict prefix
    /// difference decides; equal prefixes decide equality only if the lengths are equal and
    /// fit in the prefix.
    fn quick_cmp(&self, other: &Entry) -> Option<Ordering> {
        match self.ns.cmp(&other.ns) {
            Ordering::Equal => {}
            o => return Some(o),
        }
        if self.ns_len != other.ns_len || self.ns_len as usize > NS_PREFIX {
            return None;
        }
        match (self.name0, self.name1).cmp(&(other.name0, other.name1)) {
            Ordering::Equal => {}
            o => return Some(o),
        }
        if self.name_len != other.name_len || self.name_len as usize > NAME_PREFIX {
            return None;
        }
        Some(Ordering::Equal)
    }
}

/// Indices into `keys` in key order, keeping only the first occurrence of each key.
pub(super) fn sorted_unique(keys: &[&NodeKey]) -> Vec<u32> {
    let mut entries: Vec<Entry> = keys
        .iter()
        .enumerate()
        .map(|(i, key)| Entry::new(key, i as u32))
        .collect();
    let key_cmp = |a: &Entry, b: &Entry| {
        a.quick_cmp(b)
            .unwrap_or_else(|| keys[a.idx as usize].cmp(keys[b.idx as usize]))
    };
    // Input position as the last criterion puts the first occurrence of a duplicate first.
    entries.sort_unstable_by(|a, b| key_cmp(a, b).then(a.idx.cmp(&b.idx)));
    entries.dedup_by(|later, first| key_cmp(later, first) == Ordering::Equal);
    entries.into_iter().map(|e| e.idx).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(keys: &[NodeKey]) {
        let refs: Vec<&NodeKey> = keys.iter().collect();
        let got: Vec<u32> = sorted_unique(&refs);
        let mut expected: Vec<(NodeKey, u32)> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| (k.clone(), i as u32))
            .collect();
        expected.sort();
        expected.dedup_by(|later, first| later.0 == first.0);
        let expected: Vec<u32> = expected.into_iter().map(|(_, i)| i).collect();
        assert_eq!(got, expected, "{keys:?}");
    }

    #[test]
    fn matches_key_order_on_tricky_keys() {
        let raw = [
            ("", ""),
            ("", "a"),
            ("a", ""),
            ("a", "\0"),
            ("a\0", ""),
            ("a", "b"),
            ("abcdefgh1", "z"),
            ("abcdefgh2", "a"),
            ("abcdefgh", "z"),
            ("abcdefgh\0", "a"),
            ("ns", "0123456789abcdef"),
            ("ns", "0123456789abcdef0"),
            ("ns", "0123456789abcdef\0"),
            ("ns", "0123456789abcdeg"),
            ("ns", "0123456789abcdeX-long-tail"),
            ("ns", "a"),
            ("ns", "a"),
            ("ns", "é"),
            ("ns", "\u{ff}"),
            ("a", "b"),
        ];
        let keys: Vec<NodeKey> = raw.iter().map(|(a, b)| NodeKey::new(*a, *b)).collect();
        check(&keys);
        let mut rev = keys.clone();
        rev.reverse();
        check(&rev);
    }

    #[test]
    fn keeps_first_duplicate_among_many() {
        let keys: Vec<NodeKey> = (0..500)
            .map(|i| NodeKey::new(format!("ns{}", i % 3), format!("svc-{}", (i * 7) % 211)))
            .collect();
        check(&keys);
        check(&[]);
    }
}

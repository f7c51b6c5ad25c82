//! Key → index lookup used while building.
//!
//! The build resolves every dependency name once, and those lookups dominate its cost. A
//! `HashMap<&NodeKey, u32>` chases three pointers to confirm a hit (entry → key → each string),
//! each a likely cache miss at 100,000 platforms. Here the interned keys' bytes sit back to back
//! in one arena and the table stores a 32-bit hash tag next to the index, so a hit costs one
//! probe plus one compact arena read.

use super::{NONE, NodeKey};

pub(super) struct Interner {
    arena: Vec<u8>,
    spans: Vec<Span>,
    slots: Vec<Slot>,
    mask: usize,
}

#[derive(Clone, Copy)]
struct Span {
    start: usize,
    ns_end: usize,
    end: usize,
}

#[derive(Clone, Copy)]
struct Slot {
    tag: u32,
    idx: u32,
}

impl Interner {
    /// `keys` must be unique (the build deduplicates before interning); index `i` is `keys[i]`.
    pub fn new(keys: &[NodeKey]) -> Self {
        // Load factor at most 1/2 keeps linear probing short and guarantees an empty slot, so
        // every probe loop terminates.
        let cap = (keys.len() * 2).next_power_of_two().max(8);
        let bytes = keys.iter().map(|k| k.namespace.len() + k.name.len()).sum();
        let mut me = Interner {
            arena: Vec::with_capacity(bytes),
            spans: Vec::with_capacity(keys.len()),
            slots: vec![Slot { tag: 0, idx: NONE }; cap],
            mask: cap - 1,
        };
        for (i, key) in keys.iter().enumerate() {
            let start = me.arena.len();
            me.arena.extend_from_slice(key.namespace.as_bytes());
            let ns_end = me.arena.len();
            me.arena.extend_from_slice(key.name.as_bytes());
            me.spans.push(Span {
                start,
                ns_end,
                end: me.arena.len(),
            });
            let h = hash_key(key);
            let mut pos = h as usize & me.mask;
            while me.slots[pos].idx != NONE {
                pos = (pos + 1) & me.mask;
            }
            me.slots[pos] = Slot {
                tag: (h >> 32) as u32,
                idx: i as u32,
            };
        }
        me
    }

    pub fn get(&self, key: &NodeKey) -> Option<u32> {
        let h = hash_key(key);
        let tag = (h >> 32) as u32;
        let mut pos = h as usize & self.mask;
        loop {
            let slot = self.slots[pos];
            if slot.idx == NONE {
                return None;
            }
            if slot.tag == tag {
                let s = self.spans[slot.idx as usize];
                if &self.arena[s.start..s.ns_end] == key.namespace.as_bytes()
                    && &self.arena[s.ns_end..s.end] == key.name.as_bytes()
                {
                    return Some(slot.idx);
                }
            }
            pos = (pos + 1) & self.mask;
        }
    }
}

/// FxHash-style word mixing plus a murmur3 finaliser. SipHash's DoS resistance buys nothing
/// for names that come from our own custom resources; the finaliser matters because the
/// multiply only carries entropy upwards while slots are picked from the low bits, and names
/// sharing a prefix (`svc-…`) would otherwise collide en masse.
fn hash_key(key: &NodeKey) -> u64 {
    const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;
    let mut h = 0u64;
    let mut add = |word: u64| h = (h.rotate_left(5) ^ word).wrapping_mul(SEED);
    for part in [key.namespace.as_bytes(), key.name.as_bytes()] {
        let mut chunks = part.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            add(u64::from_le_bytes(w));
        }
        // Length in the top byte of the last word keeps "ab"+"c" apart from "a"+"bc".
        let rest = chunks.remainder();
        let mut w = [0u8; 8];
        w[..rest.len()].copy_from_slice(rest);
        add(u64::from_le_bytes(w) ^ ((part.len() as u64) << 56));
    }
    let mut x = h;
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_every_key_and_only_those() {
        let keys: Vec<NodeKey> = (0..1000)
            .map(|i| NodeKey::new(format!("ns{}", i % 3), format!("svc-{i}")))
            .collect();
        let interner = Interner::new(&keys);
        for (i, key) in keys.iter().enumerate() {
            assert_eq!(interner.get(key), Some(i as u32), "{key}");
        }
        assert_eq!(
            interner.get(&NodeKey::new("ns0", "svc-1")),
            None,
            "svc-1 is in ns1"
        );
        assert_eq!(interner.get(&NodeKey::new("ns1", "svc-1000")), None);
        assert_eq!(Interner::new(&[]).get(&keys[0]), None);
    }

    #[test]
    fn namespace_name_boundary_matters() {
        let keys = vec![NodeKey::new("ab", "c")];
        let interner = Interner::new(&keys);
        assert_eq!(interner.get(&NodeKey::new("a", "bc")), None);
        assert_ne!(hash_key(&keys[0]), hash_key(&NodeKey::new("a", "bc")));
    }

    #[test]
    fn hash_spreads_similar_names_over_low_bits() {
        let low: std::collections::HashSet<u64> = (0..4096)
            .map(|i| hash_key(&NodeKey::new("bench", format!("svc-{i}"))) & 0xfff)
            .collect();
        // A uniform hash fills about 63% of 4096 buckets with 4096 keys.
        assert!(
            low.len() > 2300,
            "only {} distinct low-bit patterns",
            low.len()
        );
    }
}

//! How many waiting triggers of an urgency were queued before a given one, in O(log n): a
//! Fenwick tree per urgency over the sequence numbers. An urgent release says how many older,
//! less urgent triggers it overtook; counting them by walking the queue cost a scan of every
//! waiting trigger per release, the operator's busiest function with 10,000 platforms (the
//! first looks wait as routine while every start and readiness change is released ahead).

/// Waiting triggers by urgency level and sequence number.
#[derive(Debug)]
pub(super) struct Ranks {
    /// The sequence number of position 1 of every tree.
    base: u64,
    /// One Fenwick tree per level, 1-based (index 0 unused), all of the same length.
    trees: Vec<Vec<u32>>,
}

/// Positions a tree has at least.
const MIN_SPAN: usize = 1024;

impl Ranks {
    pub fn new(levels: usize) -> Self {
        Self {
            base: 0,
            trees: vec![vec![0; MIN_SPAN + 1]; levels],
        }
    }

    /// Whether `seq` has a position in the trees.
    pub fn fits(&self, seq: u64) -> bool {
        seq >= self.base && seq - self.base < self.span()
    }

    /// Rebuilds the trees for the waiting triggers `waiting` (level, seq), from the oldest of
    /// them up to past `next_seq` (the next sequence number to be handed out), with room to
    /// grow: at least twice the span in use.
    pub fn rebuild(&mut self, waiting: impl Iterator<Item = (usize, u64)> + Clone, next_seq: u64) {
        let base = waiting
            .clone()
            .map(|(_, seq)| seq)
            .min()
            .unwrap_or(next_seq);
        let in_use = usize::try_from(next_seq + 1 - base).unwrap_or(usize::MAX / 2);
        let len = in_use.saturating_mul(2).max(MIN_SPAN).saturating_add(1);
        self.base = base;
        for tree in &mut self.trees {
            tree.clear();
            tree.resize(len, 0);
        }
        for (level, seq) in waiting {
            self.add(level, seq, 1);
        }
    }

    pub fn insert(&mut self, level: usize, seq: u64) {
        self.add(level, seq, 1);
    }

    pub fn remove(&mut self, level: usize, seq: u64) {
        self.add(level, seq, -1);
    }

    /// Waiting triggers of `level` queued before `seq`.
    pub fn before(&self, level: usize, seq: u64) -> usize {
        let Some(tree) = self.trees.get(level) else {
            return 0;
        };
        let end = seq.saturating_sub(self.base).min(self.span());
        let mut index = usize::try_from(end).unwrap_or(0);
        let mut count = 0usize;
        while index > 0 {
            count += tree[index] as usize;
            index &= index - 1;
        }
        count
    }

    fn span(&self) -> u64 {
        self.trees
            .first()
            .map_or(0, |tree| tree.len().saturating_sub(1) as u64)
    }

    fn add(&mut self, level: usize, seq: u64, delta: i32) {
        if !self.fits(seq) {
            return;
        }
        let Some(tree) = self.trees.get_mut(level) else {
            return;
        };
        let mut index = usize::try_from(seq - self.base).unwrap_or(usize::MAX) + 1;
        while index < tree.len() {
            tree[index] = tree[index].saturating_add_signed(delta);
            index += index & index.wrapping_neg();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn counts_the_waiting_of_a_level_queued_before_a_sequence_number() {
        let mut ranks = Ranks::new(2);
        for seq in [3, 5, 9] {
            ranks.insert(1, seq);
        }
        ranks.insert(0, 4);
        assert_eq!(ranks.before(1, 6), 2);
        assert_eq!(ranks.before(1, 3), 0, "not itself");
        assert_eq!(ranks.before(0, 100), 1);
        ranks.remove(1, 5);
        assert_eq!(ranks.before(1, 6), 1);
    }

    proptest! {
        /// Against a plain count over the waiting set, through pushes that outgrow the trees,
        /// removals in any order and rebuilds from a later base.
        #[test]
        fn agrees_with_counting_the_waiting(ops in prop::collection::vec((0usize..3, any::<bool>(), 0usize..50), 1..400)) {
            let mut ranks = Ranks::new(3);
            let mut waiting: Vec<(usize, u64)> = Vec::new();
            let mut next_seq = 0u64;
            for (level, push, pick) in ops {
                if push || waiting.is_empty() {
                    // Large strides outgrow the trees now and then.
                    let seq = next_seq + (pick as u64) * 40;
                    next_seq = seq + 1;
                    // As the triage does: a rebuild counts the new one with the others.
                    waiting.push((level, seq));
                    if ranks.fits(seq) {
                        ranks.insert(level, seq);
                    } else {
                        ranks.rebuild(waiting.iter().copied(), next_seq);
                    }
                } else {
                    let (level, seq) = waiting.remove(pick % waiting.len());
                    ranks.remove(level, seq);
                }
                for probe in [0, next_seq / 2, next_seq] {
                    for level in 0..3 {
                        let expected = waiting.iter().filter(|(l, s)| *l == level && *s < probe).count();
                        prop_assert_eq!(ranks.before(level, probe), expected);
                    }
                }
            }
        }
    }
}

//! Cycle detection in a linked list read from another process's (or a changing) memory,
//! without a table: Brent's method, one comparison per node.

/// The walk of one list: each next node is compared with a node met before (`mark`),
/// which moves forward after 1, 2, 4, ... steps; a list that loops is caught after at
/// most three times as many steps as it has nodes (lead-in and loop).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Brent {
    mark: u64,
    span: usize,
    steps: usize,
}

impl Brent {
    /// A walk starting at node `first`.
    #[inline]
    pub(crate) fn new(first: u64) -> Brent {
        Brent {
            mark: first,
            span: 1,
            steps: 0,
        }
    }

    /// Moves to `next`: false when it is a node met before (the list loops).
    #[inline]
    pub(crate) fn step(&mut self, next: u64) -> bool {
        if next == self.mark {
            return false;
        }
        self.steps += 1;
        if self.steps == self.span {
            (self.mark, self.span, self.steps) = (next, self.span.saturating_mul(2), 0);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::Brent;

    #[test]
    fn finds_every_loop_within_three_times_its_length() {
        // Nodes 0..n, the last pointing back to `back`.
        for n in 1..40u64 {
            for back in 0..n {
                let next = |i: u64| if i + 1 < n { i + 1 } else { back };
                let (mut b, mut at, mut steps) = (Brent::new(0), 0, 0);
                while b.step(next(at)) {
                    at = next(at);
                    steps += 1;
                    assert!(steps <= 3 * n, "{n} {back}");
                }
            }
        }
        // A list without a loop is never cut.
        let mut b = Brent::new(0);
        assert!((1..10_000).all(|i| b.step(i)));
    }
}

//! Where a path finds its segment: the rule that keeps a `for_each` item inside its
//! own group, and the index that makes every lookup O(log n) so that mapping stays
//! linear in the size of the message.
//!
//! The rule (also in `mappings/README.md`): inside a `for_each = "X"` item, a path
//! naming segment `S` reads, in order,
//! 1. the current list row (if `S` is the list's segment) or the current `X`;
//! 2. in a list row, the row's own sub-group (the segments after the row, up to the
//!    next row), then the item's segments before its first row;
//! 3. the item's group (the segments after the current `X`, up to the next `X`);
//! 4. a message-level segment: the first `S` before the first `X` of the message, or
//!    the first `S` anywhere if `S` is a patient or visit header ([`HEADERS`]).
//!
//! Never a segment of a sibling group: OBR 2 does not see OBR 1's NTE.
//! A path with an explicit occurrence (`OBX(2)-5`) reads that segment of the message.

use crate::hl7::{Message, Segment};

/// Segments that describe the whole message (its sender, patient and visit) and are
/// read from anywhere: in an ADT, PV1 comes after the NK1s, but belongs to every one.
pub const HEADERS: [[u8; 3]; 8] = [*b"MSH", *b"SFT", *b"UAC", *b"EVN", *b"PID", *b"PD1", *b"PV1", *b"PV2"];

/// Every segment's index, grouped by name: built once per message in one pass and a
/// sort, so "the first `S` after index `i`" is a binary search, not a scan.
pub struct Layout {
    /// `(name, index)` for every segment, sorted: one name's segments in message order.
    by_name: Vec<([u8; 3], u32)>,
}

impl Layout {
    pub fn new(msg: &Message<'_>) -> Layout {
        let mut by_name: Vec<([u8; 3], u32)> = msg.segments().map(|s| (name(&s), s.index() as u32)).collect();
        by_name.sort_unstable();
        Layout { by_name }
    }

    /// Indices of the segments called `name`, in message order.
    pub fn all(&self, name: [u8; 3]) -> impl ExactSizeIterator<Item = usize> + '_ {
        self.by_name[self.range(name)].iter().map(|&(_, i)| i as usize)
    }

    /// Where the segments called `name` are in the layout: [`Self::at`] gives each one's
    /// segment index (a range, so a caller can hold it while mutating its own state).
    pub fn range(&self, name: [u8; 3]) -> std::ops::Range<usize> {
        self.by_name.partition_point(|&(n, _)| n < name)..self.by_name.partition_point(|&(n, _)| n <= name)
    }

    /// The segment index at place `k` of the layout.
    pub fn at(&self, k: usize) -> Option<usize> {
        self.by_name.get(k).map(|&(_, i)| i as usize)
    }

    /// Indices of the segments called `name` with `from <= index < to`.
    pub fn within(&self, name: [u8; 3], from: usize, to: usize) -> impl Iterator<Item = usize> + '_ {
        let lo = self.by_name.partition_point(|&(n, i)| (n, i as usize) < (name, from));
        let hi = self.by_name.partition_point(|&(n, i)| (n, i as usize) < (name, to));
        self.by_name[lo..hi.max(lo)].iter().map(|&(_, i)| i as usize)
    }

    /// The first segment called `name` with `from <= index < to`.
    pub fn first_within(&self, name: [u8; 3], from: usize, to: usize) -> Option<usize> {
        let lo = self.by_name.partition_point(|&(n, i)| (n, i as usize) < (name, from));
        let &(n, i) = self.by_name.get(lo)?;
        (n == name && (i as usize) < to).then_some(i as usize)
    }

    /// The first segment called `name`.
    pub fn first(&self, name: [u8; 3]) -> Option<usize> {
        self.first_within(name, 0, usize::MAX)
    }

    /// The `n`th (from 1) segment called `name`.
    pub fn nth(&self, name: [u8; 3], n: usize) -> Option<usize> {
        self.all(name).nth(n.checked_sub(1)?)
    }
}

/// The 3-byte name (the parser checked every segment has one).
pub fn name(s: &Segment<'_>) -> [u8; 3] {
    let r = s.raw();
    [r[0], r[1], r[2]]
}

/// Where paths are read while mapping one item (and one of its list rows).
#[derive(Clone, Copy, Default)]
pub struct Scope<'a> {
    /// The current `for_each` segment; `None` for an item of the whole message.
    pub item: Option<Segment<'a>>,
    /// End (exclusive) of the item's group: the next segment of the item's name.
    pub group_end: usize,
    /// Segments before this index are message-level (before the first group).
    pub message_end: usize,
    /// The current list row, its sub-group end, and where the item's own
    /// segments (those before its first row) end.
    pub list: Option<ListScope<'a>>,
}

#[derive(Clone, Copy)]
pub struct ListScope<'a> {
    pub row: Segment<'a>,
    pub row_end: usize,
    pub head_end: usize,
}

impl Layout {
    /// The segment index a path naming `seg` reads in `scope` (see the module doc).
    pub fn find(&self, seg: [u8; 3], scope: &Scope<'_>) -> Option<usize> {
        let Some(item) = scope.item else { return self.first(seg) };
        if let Some(l) = scope.list {
            if name(&l.row) == seg {
                return Some(l.row.index());
            }
        }
        if name(&item) == seg {
            return Some(item.index());
        }
        let group = match scope.list {
            Some(l) => self
                .first_within(seg, l.row.index() + 1, l.row_end)
                .or_else(|| self.first_within(seg, item.index() + 1, l.head_end)),
            None => self.first_within(seg, item.index() + 1, scope.group_end),
        };
        group.or_else(|| {
            let first = self.first(seg)?;
            (first < scope.message_end || HEADERS.contains(&seg)).then_some(first)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORU: &[u8] = b"MSH|^~\\&|LAB|RJ1|||20261121||ORU^R01|1|P|2.5\rPID|1||X\rOBR|1\rNTE|1||first\rOBX|1\rNTE|1||obx note\rOBX|2\rOBR|2\rOBX|1\rPV1|1|I\r";

    fn scope_of<'a>(msg: &Message<'a>, layout: &Layout, obr: usize) -> Scope<'a> {
        let starts: Vec<usize> = layout.all(*b"OBR").collect();
        let i = starts[obr];
        let end = starts.get(obr + 1).copied().unwrap_or(msg.segment_count());
        Scope { item: msg.segment(i), group_end: end, message_end: starts[0], list: None }
    }

    #[test]
    fn sibling_group_nte_is_not_visible() {
        let msg = Message::parse(ORU).unwrap();
        let layout = Layout::new(&msg);
        assert_eq!(layout.find(*b"NTE", &scope_of(&msg, &layout, 0)), Some(3));
        assert_eq!(layout.find(*b"NTE", &scope_of(&msg, &layout, 1)), None, "OBR 2 must not read OBR 1's NTE");
        assert_eq!(layout.find(*b"PID", &scope_of(&msg, &layout, 1)), Some(1), "message-level");
        assert_eq!(layout.find(*b"PV1", &scope_of(&msg, &layout, 0)), Some(9), "a header, wherever it is");
        assert_eq!(layout.find(*b"NTE", &Scope::default()), Some(3), "whole message: the first");
    }

    #[test]
    fn a_list_row_reads_its_own_sub_group_then_the_item_head() {
        let msg = Message::parse(ORU).unwrap();
        let layout = Layout::new(&msg);
        let item = scope_of(&msg, &layout, 0);
        let row = |i: usize, end: usize| Scope {
            list: Some(ListScope { row: msg.segment(i).unwrap(), row_end: end, head_end: 4 }),
            ..item
        };
        assert_eq!(layout.find(*b"NTE", &row(4, 6)), Some(5), "OBX 1's own note");
        assert_eq!(layout.find(*b"NTE", &row(6, 7)), Some(3), "OBX 2: the OBR's note, not OBX 1's");
        assert_eq!(layout.nth(*b"OBX", 3), Some(8));
        assert_eq!(layout.within(*b"OBX", 3, 7).collect::<Vec<_>>(), vec![4, 6]);
    }
}

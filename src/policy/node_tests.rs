//! Tests of the policy nodes: meta fields, lists, hit counts.

use super::*;

fn nodes(n: usize) -> Vec<Node> {
    (0..n).map(|_| Node::new(0)).collect()
}

#[test]
fn meta_fields_are_independent() {
    let m = meta::with_deadline(meta::with_list(meta::with_hits(0, 7), 2), Some(123_456));
    let m = meta::with_lfu(m, 0xABCD);
    assert_eq!(meta::hits(m), 7);
    assert_eq!(meta::list(m), 2);
    assert_eq!(meta::lfu(m), 0xABCD);
    assert_eq!(meta::deadline(m), Some(123_456));
    assert_eq!(meta::deadline(meta::with_deadline(m, None)), None);
    assert_eq!(meta::with_hits(m, 99) & meta::HITS_MASK, meta::HITS_MAX);
}

#[test]
fn list_push_unlink_move() {
    let mut ns = nodes(5);
    let mut l = List::new(1);
    for i in 0..4 {
        l.push_front(&mut ns, i);
    }
    assert_eq!(l.tokens(&ns), vec![0, 1, 2, 3]);
    l.unlink(&mut ns, 1);
    assert_eq!(l.tokens(&ns), vec![0, 2, 3]);
    l.move_to_front(&mut ns, 0);
    assert_eq!(l.tokens(&ns), vec![2, 3, 0]);
    assert_eq!(l.len, 3);
    assert_eq!(meta::list(ns[0].get()), 1);
}

#[test]
fn links_carry_a_niche() {
    assert_eq!(Link::new(NIL).get(), NIL);
    assert_eq!(Link::new(0).get(), 0);
    assert_eq!(
        std::mem::size_of::<Option<Node>>(),
        std::mem::size_of::<Node>()
    );
}

#[test]
fn hits_saturate_and_stop_writing() {
    let n = Node::new(0);
    for _ in 0..100 {
        n.record_hit(n.get());
    }
    assert_eq!(meta::hits(n.get()), meta::HITS_MAX);
    assert_eq!(n.take_hits(), meta::HITS_MAX);
    assert_eq!(meta::hits(n.get()), 0);
}

/// Hits of a TinyLFU entry stop being stored once its sketch could not
/// count more (its estimate copy plus its hits reach 15), but one is
/// always stored: the second chance the lists give.
#[test]
fn sketch_hits_stop_where_the_sketch_saturates() {
    for (freq, most) in [(0, 15), (1, 14), (12, 3), (14, 1), (15, 1)] {
        let n = Node::new(meta::with_freq(0, freq));
        for _ in 0..100 {
            n.record_hit_at(n.get(), HitCount::Sketch, || None);
        }
        assert_eq!(meta::hits(n.get()), most, "estimate {freq}");
        assert_eq!(meta::freq(n.get()), freq);
        // A stamped window entry takes its stamp past the cap.
        let n = Node::new(meta::with_born(meta::with_freq(0, freq), 1));
        for t in 2..20u8 {
            n.record_hit_at(n.get(), HitCount::Sketch, || Some(t));
            assert_eq!(meta::access(n.get()), t);
        }
        assert_eq!(meta::hits(n.get()), most, "stamped, estimate {freq}");
    }
    // The other policies count up to their cap whatever bits 8..12 hold.
    for (counts, most) in [(HitCount::All, meta::HITS_MAX), (HitCount::One, 1)] {
        let n = Node::new(meta::with_lfu(0, 0xFF));
        for _ in 0..100 {
            n.record_hit_at(n.get(), counts, || None);
        }
        assert_eq!(meta::hits(n.get()), most, "{counts:?}");
    }
}

//! Finds the line and column of a node in a YAML document by its path (`spec[1].users[0]`).
//!
//! serde_yaml locates syntax and type errors itself; checks that run after parsing (unknown users,
//! future timestamps, duplicate names) use this to point at the offending node. It re-reads the
//! text with yaml-rust2's event parser, which keeps marks, and runs only when there is an error.

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// One step of a path into a YAML document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    Key(String),
    Index(usize),
}

impl Seg {
    pub fn key(k: &str) -> Seg {
        Seg::Key(k.to_string())
    }
}

/// Deeper than serde_yaml accepts; the walk gives up below it rather than recurse without bound.
const MAX_DEPTH: usize = 256;

struct Collector(Vec<(Event, Marker)>);

impl MarkedEventReceiver for Collector {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        self.0.push((ev, mark));
    }
}

/// The 1-based line and column of the node at `path` in document `doc` (0-based) of `text`, or of
/// its deepest ancestor that exists.
pub fn locate(text: &str, doc: usize, path: &[Seg]) -> Option<(usize, usize)> {
    let mut events = Collector(Vec::new());
    let mut parser = Parser::new_from_str(text);
    // A syntax error only truncates the events; whatever was read before it is still usable.
    let _ = parser.load(&mut events, true);
    let ev = events.0;
    let mut seen_docs = 0usize;
    let mut i = 0usize;
    while i < ev.len() {
        if let Event::DocumentStart = ev[i].0 {
            if seen_docs == doc {
                i += 1;
                let mut best: Option<(usize, Marker)> = None;
                walk(&ev, &mut i, Some(0), path, &mut best, 0);
                return best.map(|(_, m)| (m.line().max(1), m.col() + 1));
            }
            seen_docs += 1;
        }
        i += 1;
    }
    None
}

fn walk(
    ev: &[(Event, Marker)],
    i: &mut usize,
    depth: Option<usize>,
    target: &[Seg],
    best: &mut Option<(usize, Marker)>,
    nesting: usize,
) {
    let Some((event, mark)) = ev.get(*i) else {
        return;
    };
    if let Some(d) = depth {
        if best.as_ref().is_none_or(|(bd, _)| d > *bd) {
            // A block mapping's start event is marked at its first `:`; point at its first key.
            let mark = match (event, ev.get(*i + 1)) {
                (Event::MappingStart(..), Some((Event::Scalar(..), key_mark))) => key_mark,
                _ => mark,
            };
            *best = Some((d, *mark));
        }
    }
    *i += 1;
    if nesting > MAX_DEPTH {
        *i = ev.len();
        return;
    }
    let child = |d: Option<usize>, seg: &Seg| match d {
        Some(d) if target.get(d) == Some(seg) => Some(d + 1),
        _ => None,
    };
    match event {
        Event::MappingStart(..) => loop {
            match ev.get(*i) {
                None => return,
                Some((Event::MappingEnd, _)) => {
                    *i += 1;
                    return;
                }
                Some((key_event, _)) => {
                    let key = match key_event {
                        Event::Scalar(s, ..) => Some(s.clone()),
                        _ => None,
                    };
                    walk(ev, i, None, target, best, nesting + 1);
                    let d = key.and_then(|k| child(depth, &Seg::Key(k)));
                    walk(ev, i, d, target, best, nesting + 1);
                }
            }
        },
        Event::SequenceStart(..) => {
            let mut n = 0;
            loop {
                match ev.get(*i) {
                    None => return,
                    Some((Event::SequenceEnd, _)) => {
                        *i += 1;
                        return;
                    }
                    Some(_) => {
                        let d = child(depth, &Seg::Index(n));
                        walk(ev, i, d, target, best, nesting + 1);
                        n += 1;
                    }
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str =
        "a: 1\nspec:\n  - users: [x, y]\n    b: 2\n  - group: g\n---\nspec:\n  - z: 1\n";

    #[test]
    fn finds_nodes_by_path_across_documents() {
        let users1 = [
            Seg::key("spec"),
            Seg::Index(0),
            Seg::key("users"),
            Seg::Index(1),
        ];
        assert_eq!(locate(DOC, 0, &users1), Some((3, 16)));
        assert_eq!(
            locate(DOC, 0, &[Seg::key("spec"), Seg::Index(1)]),
            Some((5, 5))
        );
        assert_eq!(
            locate(DOC, 1, &[Seg::key("spec"), Seg::Index(0), Seg::key("z")]),
            Some((8, 8))
        );
    }

    #[test]
    fn falls_back_to_the_deepest_existing_ancestor() {
        let missing = [Seg::key("spec"), Seg::Index(1), Seg::key("nope")];
        assert_eq!(locate(DOC, 0, &missing), Some((5, 5)));
    }
}

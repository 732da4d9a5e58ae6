//! JSON push-down: `->>` / `#>>` extraction computed on the shard.
//!
//! # Contract
//!
//! [`JsonExtractor::extract`] validates a whole message and, for each
//! registered [`JsonPath`], yields exactly what PostgreSQL's `->>` / `#>>`
//! return on a `json` (or `jsonb`) column holding it, or [`NotFast`]:
//!
//! - string → its unescaped text; number → its text as written; `true` /
//!   `false` → `"true"` / `"false"`; `null`, a missing key, an index out of
//!   range, or a step into a scalar → SQL NULL (`None`);
//! - object or array → its raw text for `json`;
//! - NotFast for what PostgreSQL computes differently or refuses: an object or
//!   array under `jsonb` (it is re-serialised), a number with an exponent or a
//!   negative zero under `jsonb` (numeric normalises it), a negative array
//!   index (counted from the end), a key repeated on the path (json keeps the
//!   last match found, jsonb the last key), an empty path (`#>> '{}'` returns
//!   quirky text for scalars), and any `\u0000` in the document (the
//!   extraction functions de-escape every string and raise an error on it).
//!
//! The document is validated at least as strictly as PostgreSQL's json input
//! (RFC 8259: no trailing commas, no leading zeros, only the four JSON
//! whitespace characters, escapes checked), so a document PostgreSQL rejects
//! never yields a fast row. Where the extractor is stricter (a lone UTF-16
//! surrogate escape, which `json_in` stores as is) the message is simply slow.
//! For `jsonb` the document must also be accepted by `jsonb_in`: no `\u0000`,
//! numbers that fit `numeric`. Nesting deeper than [`MAX_DEPTH`] is NotFast
//! rather than a recursion risk (PostgreSQL decides on the slow path).
//!
//! # Implementation
//!
//! [`JsonExtractor`] is a hand-written single-pass scanner over the bytes
//! (`json_scan.rs`): it validates, follows only the branches of the registered
//! paths and unescapes only what it returns. [`sonic_walker`] keeps the
//! previous implementation (sonic-rs's parser as the lexer, the structure
//! walked here), with exactly the same observable behaviour, for differential
//! tests and benchmarks.
//!
//! # Allocation
//!
//! The extractor reuses its buffers: once warm, extraction allocates nothing,
//! malformed documents included. (The sonic-rs walker builds an error value
//! for a malformed document.)

use super::pgtype::NotFast;

/// Type of the source column holding the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JsonKind {
    Json,
    Jsonb,
}

/// One step of a path: `->>'k'` gives a key step; each element of
/// `#>>'{a,0}'` gives a step that is a key on an object and, when it parses as
/// an integer, an index on an array (PostgreSQL's rule).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PathStep {
    pub key: String,
    pub index: Option<i64>,
}

/// A `->>` or `#>>` extraction path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct JsonPath(pub Vec<PathStep>);

impl JsonPath {
    /// `col->>'k'`: a key on an object, NULL on an array.
    pub fn key(k: &str) -> Self {
        JsonPath(vec![PathStep { key: k.to_owned(), index: None }])
    }

    /// `col#>>'{e1,e2,...}'`.
    pub fn elements(elems: &[&str]) -> Self {
        JsonPath(
            elems.iter().map(|e| PathStep { key: (*e).to_owned(), index: pg_strtoint(e).map(i64::from) }).collect(),
        )
    }
}

/// What `strtoint(e, &end, 10)` accepts in PostgreSQL's path code: optional
/// leading white space, an optional sign, digits, nothing after, within int.
fn pg_strtoint(s: &str) -> Option<i32> {
    let t = s.trim_start_matches([' ', '\t', '\n', '\x0b', '\x0c', '\r']);
    let (negative, digits) = match (t.strip_prefix('-'), t.strip_prefix('+')) {
        (Some(rest), _) => (true, rest),
        (None, Some(rest)) => (false, rest),
        (None, None) => (false, t),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let magnitude: i64 = digits.parse().ok()?;
    i32::try_from(if negative { -magnitude } else { magnitude }).ok()
}

/// Deepest nesting validated on the shard.
pub const MAX_DEPTH: usize = 512;

/// Properties of a valid document that decide whether other consumers accept it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsonFacts {
    /// Some string holds `\u0000` (json accepts it, jsonb and the extraction
    /// functions do not).
    pub has_nul_escape: bool,
    /// Every number fits PostgreSQL's numeric, as jsonb requires.
    pub numbers_fit_numeric: bool,
}

impl JsonFacts {
    /// `jsonb_in` accepts the document.
    pub fn jsonb_ok(self) -> bool {
        !self.has_nul_escape && self.numbers_fit_numeric
    }
}

/// Validates `doc` as PostgreSQL's input function for `kind` would accept it.
pub fn validate(doc: &str, kind: JsonKind) -> Result<JsonFacts, NotFast> {
    // No paths: nothing is allocated.
    JsonExtractor::new(kind).extract(doc)
}

#[path = "json_scan.rs"]
mod scan;

pub use scan::JsonExtractor;

/// The previous implementation of [`JsonExtractor`], sonic-rs's parser as the
/// lexer: same API and behaviour, kept to compare against (differential tests,
/// benchmarks).
#[doc(hidden)]
pub mod sonic_walker {
    use sonic_rs::Read;
    use sonic_rs::parser::{ParseStatus, Parser, Reference};

    use super::{JsonFacts, JsonKind, JsonPath, MAX_DEPTH, NotFast, jsonb_number_text_is_kept, number_fits_numeric};

    /// [`super::validate`] with this implementation.
    pub fn validate(doc: &str, kind: JsonKind) -> Result<JsonFacts, NotFast> {
        SonicJsonExtractor::new(kind).extract(doc)
    }

    const NONE: u32 = u32::MAX;
    const ROOT: u32 = 0;

    #[derive(Debug, Clone)]
    struct Node {
        key: Box<str>,
        index: Option<i64>,
        children: Vec<u32>,
        slot: Option<u32>,
        has_negative_index_child: bool,
        /// Stamp of the last object instance this key was seen in, to spot
        /// duplicate keys on a path.
        seen_in: u32,
    }

    #[derive(Debug, Clone, Copy)]
    enum Found {
        Null,
        /// `doc[start..end]`.
        Span(usize, usize),
        /// The slot's unescaped string buffer.
        Unescaped,
        Bool(bool),
    }

    /// A container the walk is inside that lies on a registered path.
    #[derive(Debug, Clone, Copy)]
    struct Active {
        depth: usize,
        node: u32,
        next_index: i64,
        stamp: u32,
        start: usize,
    }

    /// Extracts a fixed set of paths from JSON documents.
    #[derive(Debug, Clone)]
    pub struct SonicJsonExtractor {
        kind: JsonKind,
        /// Trie of the registered paths; empty when there are none.
        nodes: Vec<Node>,
        found: Vec<Found>,
        unescaped: Vec<String>,
        scratch: Vec<u8>,
        active: Vec<Active>,
        stamp: u32,
        /// A registered path can never be computed exactly (empty path, or a key
        /// that is both a key step and an element step at the same level).
        always_slow: bool,
    }

    impl SonicJsonExtractor {
        pub fn new(kind: JsonKind) -> Self {
            SonicJsonExtractor {
                kind,
                nodes: Vec::new(),
                found: Vec::new(),
                unescaped: Vec::new(),
                scratch: Vec::new(),
                active: Vec::new(),
                stamp: 0,
                always_slow: false,
            }
        }

        /// Registers a path; returns its slot for [`SonicJsonExtractor::value`]. The
        /// same path registered twice shares a slot.
        pub fn add_path(&mut self, path: &JsonPath) -> usize {
            if self.nodes.is_empty() {
                self.nodes.push(Node {
                    key: "".into(),
                    index: None,
                    children: Vec::new(),
                    slot: None,
                    has_negative_index_child: false,
                    seen_in: 0,
                });
            }
            if path.0.is_empty() {
                self.always_slow = true;
            }
            let mut node = ROOT;
            for step in &path.0 {
                let existing =
                    self.nodes[node as usize].children.iter().copied().find(|c| {
                        *self.nodes[*c as usize].key == *step.key && self.nodes[*c as usize].index == step.index
                    });
                node = match existing {
                    Some(c) => c,
                    None => {
                        // The walk follows one child per key; two steps that share
                        // a key but differ on arrays cannot both be followed.
                        // Nor can two spellings of one array index (`{1}` and `{01}`).
                        if self.nodes[node as usize].children.iter().any(|c| {
                            let sibling = &self.nodes[*c as usize];
                            *sibling.key == *step.key || (step.index.is_some() && sibling.index == step.index)
                        }) {
                            self.always_slow = true;
                        }
                        let id = self.nodes.len() as u32;
                        self.nodes.push(Node {
                            key: step.key.as_str().into(),
                            index: step.index,
                            children: Vec::new(),
                            slot: None,
                            has_negative_index_child: false,
                            seen_in: 0,
                        });
                        let parent = &mut self.nodes[node as usize];
                        parent.children.push(id);
                        parent.has_negative_index_child |= step.index.is_some_and(|i| i < 0);
                        id
                    }
                };
            }
            let n = &mut self.nodes[node as usize];
            match n.slot {
                Some(slot) => slot as usize,
                None => {
                    let slot = self.found.len();
                    n.slot = Some(slot as u32);
                    self.found.push(Found::Null);
                    self.unescaped.push(String::new());
                    // One active container per path level, plus the root.
                    self.active.reserve(path.0.len() + 1);
                    slot
                }
            }
        }

        /// Number of distinct paths registered.
        pub fn slot_count(&self) -> usize {
            self.found.len()
        }

        /// Validates `doc` and computes every registered path's value, read back
        /// with [`SonicJsonExtractor::value`].
        pub fn extract(&mut self, doc: &str) -> Result<JsonFacts, NotFast> {
            if self.always_slow {
                return Err(NotFast);
            }
            self.found.fill(Found::Null);
            let facts = self.walk(doc)?;
            if self.kind == JsonKind::Jsonb && !facts.jsonb_ok() {
                return Err(NotFast);
            }
            if !self.found.is_empty() && facts.has_nul_escape {
                return Err(NotFast);
            }
            Ok(facts)
        }

        /// A path's value from the last successful [`SonicJsonExtractor::extract`] of
        /// `doc`; `None` is SQL NULL.
        pub fn value<'a>(&'a self, doc: &'a str, slot: usize) -> Option<&'a str> {
            match *self.found.get(slot)? {
                Found::Null => None,
                Found::Span(start, end) => doc.get(start..end),
                Found::Unescaped => Some(&self.unescaped[slot]),
                Found::Bool(true) => Some("true"),
                Found::Bool(false) => Some("false"),
            }
        }

        fn walk(&mut self, doc: &str) -> Result<JsonFacts, NotFast> {
            let mut parser = Parser::new(Read::from(doc));
            let mut facts = JsonFacts { has_nul_escape: false, numbers_fit_numeric: true };
            // Bit d set: the container at depth d+1 is an object.
            let mut objects = [0u64; MAX_DEPTH / 64];
            let is_object = |objects: &[u64; MAX_DEPTH / 64], depth: usize| {
                (objects[(depth - 1) / 64] >> ((depth - 1) % 64)) & 1 == 1
            };
            let mut depth = 0usize;
            self.active.clear();
            let mut node = if self.nodes.is_empty() { NONE } else { ROOT };

            'value: loop {
                // A value starts here; `node` is its trie node, or NONE off the paths.
                let first = parser.skip_space_peek().ok_or(NotFast)?;
                if first == b'{' || first == b'[' {
                    parser.skip_space();
                    let start = parser.offset() - 1;
                    if depth == MAX_DEPTH {
                        return Err(NotFast);
                    }
                    depth += 1;
                    let word = &mut objects[(depth - 1) / 64];
                    let bit = 1u64 << ((depth - 1) % 64);
                    if first == b'{' {
                        *word |= bit;
                    } else {
                        *word &= !bit;
                    }
                    if node != NONE {
                        let n = &self.nodes[node as usize];
                        if n.slot.is_some() && self.kind == JsonKind::Jsonb {
                            return Err(NotFast);
                        }
                        if first == b'[' && n.has_negative_index_child {
                            return Err(NotFast);
                        }
                        self.stamp = self.stamp.wrapping_add(1);
                        self.active.push(Active { depth, node, next_index: 0, stamp: self.stamp, start });
                    }
                    let close = if first == b'{' { b'}' } else { b']' };
                    match parser.skip_space_peek() {
                        Some(c) if c == close => {
                            parser.skip_space();
                            self.close(depth, parser.offset());
                            depth -= 1;
                        }
                        Some(_) if first == b'{' => {
                            node = self.member(&mut parser, doc, depth, &mut facts)?;
                            continue 'value;
                        }
                        Some(_) => {
                            node = self.element(depth);
                            continue 'value;
                        }
                        None => return Err(NotFast),
                    }
                } else {
                    let (raw, status) = parser.skip_one(true).map_err(|_| NotFast)?;
                    let end = parser.offset();
                    self.scalar(node, doc, end - raw.len(), end, status, &mut facts)?;
                }

                // After a value: separators and closing brackets.
                loop {
                    if depth == 0 {
                        return if parser.skip_space().is_none() { Ok(facts) } else { Err(NotFast) };
                    }
                    let in_object = is_object(&objects, depth);
                    match parser.skip_space() {
                        Some(b',') if in_object => {
                            node = self.member(&mut parser, doc, depth, &mut facts)?;
                            continue 'value;
                        }
                        Some(b',') => {
                            node = self.element(depth);
                            continue 'value;
                        }
                        Some(b'}') if in_object => {}
                        Some(b']') if !in_object => {}
                        _ => return Err(NotFast),
                    }
                    self.close(depth, parser.offset());
                    depth -= 1;
                }
            }
        }

        /// The active container at `depth`, if the walk is on a path there.
        fn active_at(&mut self, depth: usize) -> Option<&mut Active> {
            self.active.last_mut().filter(|a| a.depth == depth)
        }

        /// A container at `depth` ended just before `end`.
        fn close(&mut self, depth: usize, end: usize) {
            let Some(active) = self.active_at(depth).copied() else {
                return;
            };
            self.active.pop();
            if let Some(slot) = self.nodes[active.node as usize].slot {
                self.found[slot as usize] = Found::Span(active.start, end);
            }
        }

        /// Reads `"key":` in the object at `depth`; returns the value's node.
        fn member(
            &mut self,
            parser: &mut Parser<Read<'_>>,
            doc: &str,
            depth: usize,
            facts: &mut JsonFacts,
        ) -> Result<u32, NotFast> {
            if parser.skip_space_peek() != Some(b'"') {
                return Err(NotFast);
            }
            let (raw, status) = parser.skip_one(true).map_err(|_| NotFast)?;
            let end = parser.offset();
            let start = end - raw.len();
            let escaped = status == ParseStatus::HasEscaped;
            if escaped {
                facts.has_nul_escape |= check_escapes(raw)?;
            }
            if parser.skip_space() != Some(b':') {
                return Err(NotFast);
            }
            let Some(active) = self.active_at(depth).copied() else {
                return Ok(NONE);
            };
            let key: &str = if escaped {
                unescape(&doc[start..end], &mut self.scratch)?;
                std::str::from_utf8(&self.scratch).map_err(|_| NotFast)?
            } else {
                &doc[start + 1..end - 1]
            };
            let nodes = &mut self.nodes;
            let child = nodes[active.node as usize].children.iter().copied().find(|c| *nodes[*c as usize].key == *key);
            let Some(child) = child else { return Ok(NONE) };
            let child_node = &mut nodes[child as usize];
            if child_node.seen_in == active.stamp {
                return Err(NotFast);
            }
            child_node.seen_in = active.stamp;
            Ok(child)
        }

        /// The next element of the array at `depth`; returns its node.
        fn element(&mut self, depth: usize) -> u32 {
            let Some(active) = self.active_at(depth) else {
                return NONE;
            };
            let index = active.next_index;
            active.next_index += 1;
            let node = active.node;
            let nodes = &self.nodes;
            nodes[node as usize]
                .children
                .iter()
                .copied()
                .find(|c| nodes[*c as usize].index == Some(index))
                .unwrap_or(NONE)
        }

        /// A scalar token `doc[start..end]`.
        fn scalar(
            &mut self,
            node: u32,
            doc: &str,
            start: usize,
            end: usize,
            status: ParseStatus,
            facts: &mut JsonFacts,
        ) -> Result<(), NotFast> {
            let raw = &doc.as_bytes()[start..end];
            let escaped = status == ParseStatus::HasEscaped;
            let first = raw[0];
            if first == b'"' && escaped {
                facts.has_nul_escape |= check_escapes(raw)?;
            }
            let is_number = first == b'-' || first.is_ascii_digit();
            if is_number && !number_fits_numeric(raw) {
                facts.numbers_fit_numeric = false;
            }
            let Some(slot) = self.nodes.get(node as usize).and_then(|n| n.slot) else {
                return Ok(());
            };
            let slot = slot as usize;
            self.found[slot] = match first {
                b'"' if escaped => {
                    unescape(&doc[start..end], &mut self.scratch)?;
                    let text = std::str::from_utf8(&self.scratch).map_err(|_| NotFast)?;
                    let out = &mut self.unescaped[slot];
                    out.clear();
                    out.push_str(text);
                    Found::Unescaped
                }
                b'"' => Found::Span(start + 1, end - 1),
                b't' => Found::Bool(true),
                b'f' => Found::Bool(false),
                b'n' => Found::Null,
                _ if self.kind == JsonKind::Jsonb && !jsonb_number_text_is_kept(raw) => {
                    return Err(NotFast);
                }
                _ => Found::Span(start, end),
            };
            Ok(())
        }
    }

    /// Unescapes a validated string token (with its quotes) into `buf` with
    /// sonic-rs.
    fn unescape(token: &str, buf: &mut Vec<u8>) -> Result<(), NotFast> {
        let mut parser = Parser::new(Read::from(token));
        if parser.skip_space() != Some(b'"') {
            return Err(NotFast);
        }
        // Escaped text is copied into `buf`; text sonic-rs could borrow is not.
        let borrowed = match parser.parse_str(buf).map_err(|_| NotFast)? {
            Reference::Borrowed(text) => Some(text),
            Reference::Copied(_) => None,
        };
        if let Some(text) = borrowed {
            buf.clear();
            buf.extend_from_slice(text.as_bytes());
        }
        Ok(())
    }

    /// Checks every escape of a string token PostgreSQL's lexer would check
    /// (sonic-rs skips `\u` digits unchecked when only skipping), and requires
    /// UTF-16 surrogates to be paired, as PostgreSQL does whenever it de-escapes.
    /// Returns whether the string holds `\u0000`.
    fn check_escapes(token: &[u8]) -> Result<bool, NotFast> {
        let content = &token[1..token.len() - 1];
        let hex4 = |at: usize| -> Result<u32, NotFast> {
            let digits = content.get(at..at + 4).ok_or(NotFast)?;
            digits.iter().try_fold(0u32, |acc, b| Ok((acc << 4) | (*b as char).to_digit(16).ok_or(NotFast)?))
        };
        let mut has_nul = false;
        let mut i = 0;
        while i < content.len() {
            if content[i] != b'\\' {
                i += 1;
                continue;
            }
            match content.get(i + 1) {
                Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => i += 2,
                Some(b'u') => {
                    let code = hex4(i + 2)?;
                    i += 6;
                    has_nul |= code == 0;
                    if (0xD800..0xDC00).contains(&code) {
                        if content.get(i..i + 2) != Some(b"\\u") || !(0xDC00..0xE000).contains(&hex4(i + 2)?) {
                            return Err(NotFast);
                        }
                        i += 6;
                    } else if (0xDC00..0xE000).contains(&code) {
                        return Err(NotFast);
                    }
                }
                _ => return Err(NotFast),
            }
        }
        Ok(has_nul)
    }
}

/// Whether jsonb (numeric) can hold the number. Conservative: numbers beyond
/// these bounds are valid in PostgreSQL up to 131072 integer digits and 16383
/// fraction digits, but older servers limit exponents to ±1000.
fn number_fits_numeric(raw: &[u8]) -> bool {
    match raw.iter().position(|b| matches!(b, b'e' | b'E')) {
        None => raw.len() <= 16_000,
        Some(e) => {
            let exponent = raw[e + 1..].iter().filter(|b| b.is_ascii_digit());
            let magnitude = exponent.fold(0u32, |acc, b| acc.saturating_mul(10).saturating_add(u32::from(b - b'0')));
            raw.len() <= 1000 && magnitude <= 1000
        }
    }
}

/// jsonb stores numbers as numeric, whose text drops exponents and the sign
/// of zero; other number text comes back unchanged.
fn jsonb_number_text_is_kept(raw: &[u8]) -> bool {
    if raw.iter().any(|b| matches!(b, b'e' | b'E')) {
        return false;
    }
    let negative_zero = raw[0] == b'-' && raw[1..].iter().all(|b| matches!(b, b'0' | b'.'));
    !negative_zero
}

/// The unit tests, run against each implementation.
#[cfg(test)]
macro_rules! extractor_tests {
    ($module:ident, $extractor:ty) => {
        mod $module {
            use crate::codec::json::*;

            type JsonExtractor = $extractor;

            fn validate(doc: &str, kind: JsonKind) -> Result<JsonFacts, NotFast> {
                JsonExtractor::new(kind).extract(doc)
            }

            /// Extracts `paths` from `doc`: Err for NotFast, else each value.
            fn extract(kind: JsonKind, doc: &str, paths: &[JsonPath]) -> Result<Vec<Option<String>>, NotFast> {
                let mut extractor = JsonExtractor::new(kind);
                let slots: Vec<usize> = paths.iter().map(|p| extractor.add_path(p)).collect();
                extractor.extract(doc)?;
                Ok(slots.iter().map(|s| extractor.value(doc, *s).map(str::to_owned)).collect())
            }

            fn one(kind: JsonKind, doc: &str, path: JsonPath) -> Result<Option<String>, NotFast> {
                extract(kind, doc, &[path]).map(|mut v| v.remove(0))
            }

            fn both(doc: &str, path: JsonPath) -> (Result<Option<String>, NotFast>, Result<Option<String>, NotFast>) {
                (one(JsonKind::Json, doc, path.clone()), one(JsonKind::Jsonb, doc, path))
            }

            fn some(s: &str) -> Result<Option<String>, NotFast> {
                Ok(Some(s.to_owned()))
            }

            const NULL: Result<Option<String>, NotFast> = Ok(None);

            #[test]
            fn path_elements_follow_strtoint() {
                let p = JsonPath::elements(&["a", "0", " 1", "+1", "01", "-1", "1 ", "", "99999999999", "x1"]);
                let indexes: Vec<Option<i64>> = p.0.iter().map(|s| s.index).collect();
                assert_eq!(indexes, [None, Some(0), Some(1), Some(1), Some(1), Some(-1), None, None, None, None]);
                assert_eq!(p.0[2].key, " 1");
                assert_eq!(JsonPath::key("0").0, [PathStep { key: "0".into(), index: None }]);
            }

            #[test]
            fn two_spellings_of_one_index_are_never_fast() {
                // PostgreSQL: '[1,2]'::json #>> '{01}' and #>> '{1}' are both 2; the
                // walk follows one child per index, so such a plan is always slow.
                let mut extractor = JsonExtractor::new(JsonKind::Json);
                extractor.add_path(&JsonPath::elements(&["01"]));
                extractor.add_path(&JsonPath::elements(&["1"]));
                assert_eq!(extractor.extract("[1,2]").map(|_| ()), Err(NotFast));
            }

            #[test]
            fn scalars_as_postgres_returns_them() {
                use JsonKind::*;
                // SELECT '{"a":1.50E+2}'::json->>'a' → 1.50E+2, jsonb → 150; '{"a":-0}' jsonb → 0, json → -0;
                //        '{"a":0.10}'::jsonb->>'a' → 0.10; '{"a":null}' → NULL; true/false → 'true'/'false'.
                assert_eq!(one(Json, r#"{"a":1.50E+2}"#, JsonPath::key("a")), some("1.50E+2"));
                assert_eq!(one(Jsonb, r#"{"a":1.50E+2}"#, JsonPath::key("a")), Err(NotFast));
                assert_eq!(one(Json, r#"{"a":-0}"#, JsonPath::key("a")), some("-0"));
                assert_eq!(one(Jsonb, r#"{"a":-0}"#, JsonPath::key("a")), Err(NotFast));
                assert_eq!(one(Jsonb, r#"{"a":-0.0}"#, JsonPath::key("a")), Err(NotFast));
                assert_eq!(one(Jsonb, r#"{"a":0.10}"#, JsonPath::key("a")), some("0.10"));
                assert_eq!(one(Jsonb, r#"{"a":-0.5}"#, JsonPath::key("a")), some("-0.5"));
                assert_eq!(both(r#"{"a":null}"#, JsonPath::key("a")), (NULL, NULL));
                assert_eq!(both(r#"{"a":true}"#, JsonPath::key("a")), (some("true"), some("true")));
                assert_eq!(both(r#"{"a":false}"#, JsonPath::key("a")), (some("false"), some("false")));
                assert_eq!(both(r#"{"a":"x"}"#, JsonPath::key("b")), (NULL, NULL));
                assert_eq!(both(r#"{"a" : "x y" }"#, JsonPath::key("a")), (some("x y"), some("x y")));
                // Unescaping: '{"a":"\"q\" \u00e9 \ud83d\ude00 \/ \\ \n"}'.
                let doc = r#"{"a":"\"q\" \u00e9 \ud83d\ude00 \/ \\ \n\t"}"#;
                assert_eq!(both(doc, JsonPath::key("a")), (some("\"q\" é 😀 / \\ \n\t"), some("\"q\" é 😀 / \\ \n\t")));
                // SELECT '{"\u0061":1}'::json->>'a' → 1: keys are matched unescaped.
                assert_eq!(both(r#"{"\u0061":1}"#, JsonPath::key("a")), (some("1"), some("1")));
            }

            #[test]
            fn containers() {
                use JsonKind::*;
                // SELECT '{"a": {"b" : 1 } , "c":2}'::json->>'a' → '{"b" : 1 }';
                //        '{"a": [1, 2 ] }'::json->>'a' → '[1, 2 ]';
                //        '{"a":[[1 ,2] , 3]}'::json #>> '{a,0}' → '[1 ,2]'
                assert_eq!(one(Json, r#"{"a": {"b" : 1 } , "c":2}"#, JsonPath::key("a")), some(r#"{"b" : 1 }"#));
                assert_eq!(one(Json, r#"{"a": [1, 2 ] }"#, JsonPath::key("a")), some("[1, 2 ]"));
                assert_eq!(one(Json, r#"{"a":[[1 ,2] , 3]}"#, JsonPath::elements(&["a", "0"])), some("[1 ,2]"));
                assert_eq!(one(Json, r#"{"a":{}}"#, JsonPath::key("a")), some("{}"));
                assert_eq!(one(Json, r#"{"a":[]}"#, JsonPath::key("a")), some("[]"));
                // jsonb re-serialises containers.
                assert_eq!(one(Jsonb, r#"{"a": {"b" : 1 }}"#, JsonPath::key("a")), Err(NotFast));
                assert_eq!(one(Jsonb, r#"{"a":[]}"#, JsonPath::key("a")), Err(NotFast));
                // A container on the path but not at its end is fine for jsonb.
                let path = JsonPath::elements(&["a", "b", "1", "c"]);
                assert_eq!(one(Jsonb, r#"{"a": {"b" : [1, {"c": 2}]}}"#, path), some("2"));
            }

            #[test]
            fn paths_and_arrays() {
                // SELECT '[1,2]'::json->>'0' → NULL; '[1,2]'::json#>>'{0}' → 1; #>>'{ 1}', '{+1}', '{01}' → 2;
                //        #>>'{"1 "}' → NULL; '{-1}' → 2 (from the end: not fast);
                //        '[1,2]'::json#>>'{99999999999}' → NULL; '{"99999999999":5}'::json#>>'{99999999999}' → 5
                assert_eq!(both("[1,2]", JsonPath::key("0")), (NULL, NULL));
                assert_eq!(both("[1,2]", JsonPath::elements(&["0"])), (some("1"), some("1")));
                for e in [" 1", "+1", "01", "1"] {
                    assert_eq!(both("[1,2]", JsonPath::elements(&[e])), (some("2"), some("2")), "{e:?}");
                }
                assert_eq!(both("[1,2]", JsonPath::elements(&["1 "])), (NULL, NULL));
                assert_eq!(both("[1,2]", JsonPath::elements(&["2"])), (NULL, NULL));
                assert_eq!(both("[1,2]", JsonPath::elements(&["-1"])), (Err(NotFast), Err(NotFast)));
                assert_eq!(both("[1,2]", JsonPath::elements(&["99999999999"])), (NULL, NULL));
                assert_eq!(both(r#"{"99999999999":5}"#, JsonPath::elements(&["99999999999"])), (some("5"), some("5")));
                // An element step is a key on objects.
                assert_eq!(both(r#"{"0":"zero"}"#, JsonPath::elements(&["0"])), (some("zero"), some("zero")));
                // A negative index only matters when it meets an array.
                assert_eq!(both(r#"{"-1":"m"}"#, JsonPath::elements(&["-1"])), (some("m"), some("m")));
                // SELECT '"abc"'::json->>'k', '1'::json#>>'{a}', '{"a":1}'::json#>>'{a,b}',
                //        '{"a":"x"}'::json#>>'{a,0}' → all NULL (stepping into scalars)
                assert_eq!(both(r#""abc""#, JsonPath::key("k")), (NULL, NULL));
                assert_eq!(both("1", JsonPath::elements(&["a"])), (NULL, NULL));
                assert_eq!(both(r#"{"a":1}"#, JsonPath::elements(&["a", "b"])), (NULL, NULL));
                assert_eq!(both(r#"{"a":"x"}"#, JsonPath::elements(&["a", "0"])), (NULL, NULL));
                assert_eq!(both("null", JsonPath::key("a")), (NULL, NULL));
                // Deep paths and siblings.
                let doc = r#"{"a":{"b":[{"c":1},{"c":2,"d":[true]}]},"e":"f"}"#;
                let paths = [
                    JsonPath::elements(&["a", "b", "1", "c"]),
                    JsonPath::elements(&["a", "b", "1", "d", "0"]),
                    JsonPath::key("e"),
                    JsonPath::elements(&["a", "b", "0", "c"]),
                    JsonPath::elements(&["a", "b", "5", "c"]),
                    JsonPath::key("e"),
                ];
                let found = ["2", "true", "f", "1"].iter().map(|s| Some(s.to_string()));
                let expected: Vec<Option<String>> = found.chain([None, Some("f".into())]).collect();
                assert_eq!(extract(JsonKind::Json, doc, &paths), Ok(expected.clone()));
                assert_eq!(extract(JsonKind::Jsonb, doc, &paths), Ok(expected));
            }

            #[test]
            fn duplicate_keys_on_the_path_are_not_fast() {
                // SELECT '{"a":1,"a":2}'::json->>'a' → 2 (jsonb: 2);
                //        '{"a":{"b":1},"a":{"c":2}}'::json#>>'{a,b}' → 1, but jsonb → NULL.
                assert_eq!(both(r#"{"a":1,"a":2}"#, JsonPath::key("a")), (Err(NotFast), Err(NotFast)));
                let nested = r#"{"a":{"b":1},"a":{"c":2}}"#;
                assert_eq!(both(nested, JsonPath::elements(&["a", "b"])), (Err(NotFast), Err(NotFast)));
                // Duplicates off the path, or in different objects, do not matter.
                assert_eq!(both(r#"{"x":1,"x":2,"a":3}"#, JsonPath::key("a")), (some("3"), some("3")));
                let separate = r#"{"l":[{"k":1},{"k":2}],"k":3}"#;
                assert_eq!(both(separate, JsonPath::key("k")), (some("3"), some("3")));
                let in_array = r#"[{"k":1},{"k":2}]"#;
                assert_eq!(both(in_array, JsonPath::elements(&["1", "k"])), (some("2"), some("2")));
                // The same extractor reused on a second document does not see stale keys.
                let mut ex = JsonExtractor::new(JsonKind::Json);
                let slot = ex.add_path(&JsonPath::key("a"));
                for doc in [r#"{"a":1}"#, r#"{"a":2}"#] {
                    ex.extract(doc).unwrap();
                    assert!(ex.value(doc, slot).is_some());
                }
            }

            #[test]
            fn a_reused_extractor_follows_keys_in_any_order() {
                let mut ex = JsonExtractor::new(JsonKind::Json);
                let slots = [
                    ex.add_path(&JsonPath::key("a")),
                    ex.add_path(&JsonPath::key("b")),
                    ex.add_path(&JsonPath::elements(&["c", "x"])),
                    ex.add_path(&JsonPath::key("long key name")),
                ];
                let docs = [
                    r#"{"a":1,"b":2,"c":{"x":3},"long key name":4}"#,
                    r#"{"long key name":4,"c":{"x":3},"b":2,"a":1}"#,
                    r#"{"b":2,"z":0,"a":1,"c":{"y":0,"x":3},"long key nam":0,"\u006cong key name":4}"#,
                    r#"{"a":1,"b":2,"c":{"x":3},"long key name":4}"#,
                ];
                for doc in docs {
                    ex.extract(doc).unwrap();
                    let values: Vec<Option<&str>> = slots.iter().map(|s| ex.value(doc, *s)).collect();
                    assert_eq!(values, [Some("1"), Some("2"), Some("3"), Some("4")], "{doc}");
                }
                // A duplicate after the order was learnt, and a missing key.
                assert_eq!(ex.extract(r#"{"a":1,"b":2,"b":2}"#), Err(NotFast));
                let doc = r#"{"c":{"x":5},"a":6}"#;
                ex.extract(doc).unwrap();
                let values: Vec<Option<&str>> = slots.iter().map(|s| ex.value(doc, *s)).collect();
                assert_eq!(values, [Some("6"), None, Some("5"), None]);
            }

            #[test]
            fn nul_escapes() {
                // SELECT '{"a":1,"b":"\u0000"}'::json → accepted; ->>'a' on it → ERROR: unsupported
                // Unicode escape sequence (the whole document is de-escaped); ::jsonb → same ERROR.
                let doc = r#"{"a":1,"b":"\u0000"}"#;
                assert_eq!(validate(doc, JsonKind::Json).map(|f| f.has_nul_escape), Ok(true));
                assert_eq!(validate(doc, JsonKind::Jsonb), Err(NotFast));
                assert_eq!(both(doc, JsonPath::key("a")), (Err(NotFast), Err(NotFast)));
                assert_eq!(both(r#"{"\u0000":1,"a":1}"#, JsonPath::key("a")), (Err(NotFast), Err(NotFast)));
                // An escaped backslash followed by "u0000" is not a NUL.
                assert_eq!(both(r#"{"a":"\\u0000"}"#, JsonPath::key("a")), (some("\\u0000"), some("\\u0000")));
            }

            #[test]
            fn validation_is_at_least_as_strict_as_postgres() {
                // Each is rejected by PostgreSQL's json input ("invalid input syntax for type json").
                let invalid = [
                    "",
                    " ",
                    "{",
                    "}",
                    "[1,]",
                    r#"{"a":1,}"#,
                    r#"{"a"}"#,
                    r#"{"a":}"#,
                    r#"{a:1}"#,
                    "{'a':1}",
                    r#"{"a":1 "b":2}"#,
                    "[1 2]",
                    "01",
                    "-",
                    "1.",
                    ".5",
                    "+1",
                    "1e",
                    "1e+",
                    "NaN",
                    "Infinity",
                    "tru",
                    "truex",
                    "nul",
                    "[true false]",
                    r#"{"a":1}x"#,
                    r#"{"a":1}}"#,
                    "[1]]",
                    r#""abc"#,
                    r#""\x""#,
                    r#""\uZZZZ""#,
                    r#""\u12""#,
                    "\"a\tb\"",
                    "\"a\nb\"",
                    "\u{c}{\"a\":1}",
                    "\u{b}1",
                    "[1,\u{0}]",
                    "1\u{0}",
                    r#"{"a":[1,2}"#,
                    r#"[{"a":1]}"#,
                    "[01]",
                    "[-]",
                    "[1.e5]",
                ];
                for doc in invalid {
                    for kind in [JsonKind::Json, JsonKind::Jsonb] {
                        assert_eq!(validate(doc, kind), Err(NotFast), "{doc:?}");
                        assert_eq!(one(kind, doc, JsonPath::key("a")), Err(NotFast), "{doc:?}");
                    }
                }
                // Accepted by json_in, rejected here (lone surrogates): merely slow.
                assert_eq!(validate(r#""\ud800""#, JsonKind::Json), Err(NotFast));
                assert_eq!(validate(r#""\udc00\ud800""#, JsonKind::Json), Err(NotFast));
                let valid = [
                    "0",
                    "-0",
                    "1.5e-3",
                    "1E+2",
                    r#""""#,
                    "[]",
                    "{}",
                    " \t\r\n[ 1 , { } , [ ] , \"x\" , null , true , false ] \n",
                    r#"{"a":{"b":{"c":[[[]]]}}}"#,
                    r#""é😀 \u00e9 \ud83d\ude00""#,
                    r#""\"\\\/\b\f\n\r\t""#,
                ];
                for doc in valid {
                    assert!(validate(doc, JsonKind::Json).is_ok(), "{doc:?}");
                    assert!(validate(doc, JsonKind::Jsonb).is_ok(), "{doc:?}");
                }
            }

            #[test]
            fn jsonb_numbers_must_fit_numeric() {
                // SELECT '1e131072'::jsonb, '1e-16384'::jsonb, '1e-20000'::jsonb → value overflows numeric format.
                for doc in ["1e131072", "1e-16384", "1e-20000", "[1e1001]"] {
                    assert_eq!(validate(doc, JsonKind::Json).map(|f| f.numbers_fit_numeric), Ok(false), "{doc}");
                    assert_eq!(validate(doc, JsonKind::Jsonb), Err(NotFast), "{doc}");
                }
                assert!(validate("1e1000", JsonKind::Jsonb).is_ok());
                let long = "9".repeat(16_000);
                assert!(validate(&long, JsonKind::Jsonb).is_ok());
                // A number elsewhere in the document still decides whether jsonb accepts it.
                assert_eq!(one(JsonKind::Jsonb, r#"{"a":1,"b":1e999999}"#, JsonPath::key("a")), Err(NotFast));
                assert_eq!(one(JsonKind::Json, r#"{"a":1,"b":1e999999}"#, JsonPath::key("a")), some("1"));
            }

            #[test]
            fn nesting_depth_is_bounded() {
                let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
                assert!(validate(&deep(MAX_DEPTH), JsonKind::Json).is_ok());
                assert_eq!(validate(&deep(MAX_DEPTH + 1), JsonKind::Json), Err(NotFast));
                assert_eq!(validate(&deep(100_000), JsonKind::Json), Err(NotFast));
                let objects = format!("{}1{}", r#"{"a":"#.repeat(200), "}".repeat(200));
                let path: Vec<&str> = vec!["a"; 200];
                assert_eq!(one(JsonKind::Json, &objects, JsonPath::elements(&path)), some("1"));
                assert_eq!(one(JsonKind::Jsonb, &objects, JsonPath::elements(&path[..199])), Err(NotFast));
            }

            #[test]
            fn paths_that_are_never_fast() {
                // SELECT ' 12 '::json #>> '{}' → ' 12' (kept leading space): the empty path is quirky.
                assert_eq!(one(JsonKind::Json, "12", JsonPath(Vec::new())), Err(NotFast));
                // `->>'0'` and `#>>'{0}'` together: the walk cannot follow both.
                let paths = [JsonPath::key("0"), JsonPath::elements(&["0"])];
                assert_eq!(extract(JsonKind::Json, r#"{"0":1}"#, &paths), Err(NotFast));
                // The same path twice shares a slot.
                let mut ex = JsonExtractor::new(JsonKind::Json);
                assert_eq!(ex.add_path(&JsonPath::key("a")), ex.add_path(&JsonPath::key("a")));
                assert_eq!(ex.slot_count(), 1);
            }

            #[test]
            fn long_strings_and_whitespace_cross_simd_blocks() {
                let long = "x".repeat(300);
                let doc = format!("{{{}\"pad\":\"{long}\",{}\"a\":\"{long}\\n\"}}", " ".repeat(70), "\n".repeat(130));
                let expected = format!("{long}\n");
                assert_eq!(both(&doc, JsonPath::key("a")), (some(&expected), some(&expected)));
                let doc = format!("{{\"a\":\"{}\"}}", "é".repeat(100));
                assert_eq!(both(&doc, JsonPath::key("a")), (some(&"é".repeat(100)), some(&"é".repeat(100))));
            }
        }
    };
}

#[cfg(test)]
mod tests {
    extractor_tests!(scanner, crate::codec::json::JsonExtractor);
    extractor_tests!(sonic_walker, crate::codec::json::sonic_walker::SonicJsonExtractor);
}

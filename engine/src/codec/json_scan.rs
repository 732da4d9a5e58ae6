//! The single-pass byte scanner behind [`JsonExtractor`]; the contract is the
//! parent module's.
//!
//! # Design
//!
//! One left-to-right walk over the document's bytes, without recursion and
//! without a separate lexer:
//!
//! - structure: a depth counter and a bit per level (object or array), so
//!   separators and closing brackets are checked exactly, up to [`MAX_DEPTH`];
//! - strings: eight bytes at a time (SWAR) up to the next `"`, `\` or control
//!   character; an escape is checked where it stands (the simple escapes,
//!   `\uXXXX` with four hex digits, a high surrogate only when a low one
//!   follows, no lone low surrogate, `\u0000` noted). The text is never copied
//!   unless it is needed: a matched value with escapes, or an escaped key in
//!   an object on a path, is unescaped into reusable space;
//! - numbers: RFC 8259's grammar, digits eight at a time, keeping the text
//!   span and whether it has an exponent (jsonb's rules, numeric's bounds);
//! - literals and the four JSON whitespace bytes.
//!
//! The registered paths form a trie. Only containers on a path are tracked
//! (the `active` stack): an object's keys are compared with the node's
//! children as raw bytes (the child that followed the same key in the
//! previous document is tried first, then all of them after a check on the
//! key length), an array's elements by position. Everything else is skipped
//! while being validated by the same loop.

use super::{JsonFacts, JsonKind, JsonPath, MAX_DEPTH, NotFast, jsonb_number_text_is_kept, number_fits_numeric};

const NONE: u32 = u32::MAX;
const ROOT: u32 = 0;

#[derive(Debug, Clone)]
struct Node {
    key: Box<str>,
    /// The key's first eight bytes, zero-padded: most comparisons stop there.
    key_head: u64,
    index: Option<i64>,
    children: Vec<u32>,
    /// Bit `min(len, 63)` is set for the length of each child's key.
    child_key_lengths: u64,
    slot: u32,
    has_negative_index_child: bool,
    /// Stamp of the last object instance this key was seen in, to spot
    /// duplicate keys on a path.
    seen_in: u64,
    /// The child matched first in the last object of this node.
    first_guess: u32,
    /// The sibling matched after this key in the last object of its parent.
    next_guess: u32,
}

impl Node {
    /// Whether this node's key is `key`, whose [`head`] is `key_head`.
    #[inline(always)]
    fn has_key(&self, key: &[u8], key_head: u64) -> bool {
        let own = self.key.as_bytes();
        self.key_head == key_head && own.len() == key.len() && (key.len() <= 8 || own[8..] == key[8..])
    }

    fn new(key: &str, index: Option<i64>) -> Self {
        Node {
            key: key.into(),
            key_head: head(key.as_bytes()),
            index,
            children: Vec::new(),
            child_key_lengths: 0,
            slot: NONE,
            has_negative_index_child: false,
            seen_in: 0,
            first_guess: NONE,
            next_guess: NONE,
        }
    }
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
    stamp: u64,
    start: usize,
    /// The child matched last in this object, NONE before the first.
    last: u32,
}

/// Extracts a fixed set of paths from JSON documents.
#[derive(Debug, Clone)]
pub struct JsonExtractor {
    kind: JsonKind,
    /// Trie of the registered paths; empty when there are none.
    nodes: Vec<Node>,
    found: Vec<Found>,
    unescaped: Vec<String>,
    scratch: String,
    active: Vec<Active>,
    stamp: u64,
    /// A registered path can never be computed exactly (empty path, or a key
    /// that is both a key step and an element step at the same level).
    always_slow: bool,
}

impl JsonExtractor {
    pub fn new(kind: JsonKind) -> Self {
        JsonExtractor {
            kind,
            nodes: Vec::new(),
            found: Vec::new(),
            unescaped: Vec::new(),
            scratch: String::new(),
            active: Vec::new(),
            stamp: 0,
            always_slow: false,
        }
    }

    /// Registers a path; returns its slot for [`JsonExtractor::value`]. The
    /// same path registered twice shares a slot.
    pub fn add_path(&mut self, path: &JsonPath) -> usize {
        if self.nodes.is_empty() {
            self.nodes.push(Node::new("", None));
        }
        if path.0.is_empty() {
            self.always_slow = true;
        }
        let mut node = ROOT;
        for step in &path.0 {
            let nodes = &self.nodes;
            let existing = nodes[node as usize]
                .children
                .iter()
                .copied()
                .find(|c| *nodes[*c as usize].key == *step.key && nodes[*c as usize].index == step.index);
            node = match existing {
                Some(c) => c,
                None => {
                    // The walk follows one child per key; two steps that share
                    // a key but differ on arrays cannot both be followed.
                    // Nor can two spellings of one array index (`{1}` and `{01}`).
                    if nodes[node as usize].children.iter().any(|c| {
                        let sibling = &nodes[*c as usize];
                        *sibling.key == *step.key || (step.index.is_some() && sibling.index == step.index)
                    }) {
                        self.always_slow = true;
                    }
                    let id = self.nodes.len() as u32;
                    self.nodes.push(Node::new(&step.key, step.index));
                    let parent = &mut self.nodes[node as usize];
                    parent.children.push(id);
                    parent.child_key_lengths |= key_length_bit(step.key.len());
                    parent.has_negative_index_child |= step.index.is_some_and(|i| i < 0);
                    id
                }
            };
        }
        let n = &mut self.nodes[node as usize];
        if n.slot != NONE {
            return n.slot as usize;
        }
        let slot = self.found.len();
        n.slot = slot as u32;
        self.found.push(Found::Null);
        self.unescaped.push(String::new());
        // One active container per path level, plus the root.
        self.active.reserve(path.0.len() + 1);
        slot
    }

    /// Number of distinct paths registered.
    pub fn slot_count(&self) -> usize {
        self.found.len()
    }

    /// Validates `doc` and computes every registered path's value, read back
    /// with [`JsonExtractor::value`].
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

    /// A path's value from the last successful [`JsonExtractor::extract`] of
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
        let mut s = Scan { b: doc.as_bytes(), i: 0, has_nul_escape: false, numbers_fit_numeric: true };
        let jsonb = self.kind == JsonKind::Jsonb;
        // Bit d set: the container at depth d+1 is an object.
        let mut objects = [0u64; MAX_DEPTH / 64];
        let is_object = |objects: &[u64; MAX_DEPTH / 64], depth: usize| {
            depth > 0 && (objects[(depth - 1) / 64] >> ((depth - 1) % 64)) & 1 == 1
        };
        let mut depth = 0usize;
        // The container at `depth` is an object.
        let mut in_object = false;
        // Depth of the innermost active container; 0 when there is none.
        let mut active_depth = 0usize;
        self.active.clear();
        let mut node = if self.nodes.is_empty() { NONE } else { ROOT };

        'value: loop {
            // A value starts here; `node` is its trie node, or NONE off the paths.
            let first = s.peek();
            let start = s.i;
            match first {
                open @ (b'{' | b'[') => {
                    s.i += 1;
                    if depth == MAX_DEPTH {
                        return Err(NotFast);
                    }
                    depth += 1;
                    let word = &mut objects[(depth - 1) / 64];
                    let bit = 1u64 << ((depth - 1) % 64);
                    in_object = open == b'{';
                    if in_object {
                        *word |= bit;
                    } else {
                        *word &= !bit;
                    }
                    if node != NONE {
                        let n = &self.nodes[node as usize];
                        if n.slot != NONE && jsonb {
                            return Err(NotFast);
                        }
                        if open == b'[' && n.has_negative_index_child {
                            return Err(NotFast);
                        }
                        self.stamp += 1;
                        self.active.push(Active { depth, node, next_index: 0, stamp: self.stamp, start, last: NONE });
                        active_depth = depth;
                    }
                    // `{` + 2 is `}`, `[` + 2 is `]`.
                    if s.peek() == open + 2 {
                        s.i += 1;
                        active_depth = self.close(depth, active_depth, s.i);
                        depth -= 1;
                        in_object = is_object(&objects, depth);
                    } else if in_object {
                        node = self.member(&mut s, doc, depth, active_depth)?;
                        continue 'value;
                    } else {
                        node = self.element(depth, active_depth);
                        continue 'value;
                    }
                }
                b'"' => {
                    s.i += 1;
                    let escaped = s.string()?;
                    if let Some(slot) = self.slot_of(node) {
                        self.found[slot] = if escaped {
                            unescape(&doc[start + 1..s.i - 1], &mut self.unescaped[slot])?;
                            Found::Unescaped
                        } else {
                            Found::Span(start + 1, s.i - 1)
                        };
                    }
                }
                b'-' | b'0'..=b'9' => {
                    s.number()?;
                    if let Some(slot) = self.slot_of(node) {
                        if jsonb && !jsonb_number_text_is_kept(&s.b[start..s.i]) {
                            return Err(NotFast);
                        }
                        self.found[slot] = Found::Span(start, s.i);
                    }
                }
                b't' => {
                    s.literal(b"true")?;
                    if let Some(slot) = self.slot_of(node) {
                        self.found[slot] = Found::Bool(true);
                    }
                }
                b'f' => {
                    s.literal(b"false")?;
                    if let Some(slot) = self.slot_of(node) {
                        self.found[slot] = Found::Bool(false);
                    }
                }
                b'n' => {
                    s.literal(b"null")?;
                    if let Some(slot) = self.slot_of(node) {
                        self.found[slot] = Found::Null;
                    }
                }
                _ => return Err(NotFast),
            }

            // After a value: separators and closing brackets.
            loop {
                let c = s.peek();
                if depth == 0 {
                    return if s.i == s.b.len() {
                        Ok(JsonFacts { has_nul_escape: s.has_nul_escape, numbers_fit_numeric: s.numbers_fit_numeric })
                    } else {
                        Err(NotFast)
                    };
                }
                s.i += 1;
                match c {
                    b',' if in_object => {
                        node = self.member(&mut s, doc, depth, active_depth)?;
                        continue 'value;
                    }
                    b',' => {
                        node = self.element(depth, active_depth);
                        continue 'value;
                    }
                    b'}' if in_object => {}
                    b']' if !in_object => {}
                    _ => return Err(NotFast),
                }
                active_depth = self.close(depth, active_depth, s.i);
                depth -= 1;
                in_object = is_object(&objects, depth);
            }
        }
    }

    #[inline(always)]
    fn slot_of(&self, node: u32) -> Option<usize> {
        if node == NONE {
            return None;
        }
        let slot = self.nodes[node as usize].slot;
        (slot != NONE).then_some(slot as usize)
    }

    /// The container at `depth` ended just before `end`; returns the new
    /// innermost active depth.
    #[inline(always)]
    fn close(&mut self, depth: usize, active_depth: usize, end: usize) -> usize {
        if active_depth != depth {
            return active_depth;
        }
        if let Some(active) = self.active.pop() {
            let slot = self.nodes[active.node as usize].slot;
            if slot != NONE {
                self.found[slot as usize] = Found::Span(active.start, end);
            }
        }
        self.active.last().map_or(0, |a| a.depth)
    }

    /// Reads `"key":` in the object at `depth`; returns the value's node.
    #[inline(always)]
    fn member(&mut self, s: &mut Scan<'_>, doc: &str, depth: usize, active_depth: usize) -> Result<u32, NotFast> {
        if s.peek() != b'"' {
            return Err(NotFast);
        }
        s.i += 1;
        let start = s.i;
        let escaped = s.string()?;
        let end = s.i - 1;
        if s.peek() != b':' {
            return Err(NotFast);
        }
        s.i += 1;
        if active_depth != depth {
            return Ok(NONE);
        }
        let Some(active) = self.active.last_mut() else {
            return Ok(NONE);
        };
        let (key, key_head): (&[u8], u64) = if escaped {
            unescape(&doc[start..end], &mut self.scratch)?;
            (self.scratch.as_bytes(), head(self.scratch.as_bytes()))
        } else {
            // The closing quote follows: eight bytes are often there to load.
            let len = end - start;
            let key_head = match s.b.get(start..start + 8) {
                Some(chunk) if len < 8 => load(chunk) & ((1u64 << (8 * len)) - 1),
                Some(chunk) => load(chunk),
                None => head(&s.b[start..end]),
            };
            (&s.b[start..end], key_head)
        };
        let nodes = &mut self.nodes;
        let guess = if active.last == NONE {
            nodes[active.node as usize].first_guess
        } else {
            nodes[active.last as usize].next_guess
        };
        let child = if guess != NONE && nodes[guess as usize].has_key(key, key_head) {
            guess
        } else {
            let parent = &nodes[active.node as usize];
            if parent.child_key_lengths & key_length_bit(key.len()) == 0 {
                return Ok(NONE);
            }
            match parent.children.iter().copied().find(|c| nodes[*c as usize].has_key(key, key_head)) {
                Some(c) => c,
                None => return Ok(NONE),
            }
        };
        // Learn the order of keys for the next object of this node.
        if active.last == NONE {
            nodes[active.node as usize].first_guess = child;
        } else {
            nodes[active.last as usize].next_guess = child;
        }
        active.last = child;
        let child_node = &mut nodes[child as usize];
        if child_node.seen_in == active.stamp {
            return Err(NotFast);
        }
        child_node.seen_in = active.stamp;
        Ok(child)
    }

    /// The next element of the array at `depth`; returns its node.
    #[inline(always)]
    fn element(&mut self, depth: usize, active_depth: usize) -> u32 {
        if active_depth != depth {
            return NONE;
        }
        let Some(active) = self.active.last_mut() else {
            return NONE;
        };
        let index = active.next_index;
        active.next_index += 1;
        let nodes = &self.nodes;
        nodes[active.node as usize]
            .children
            .iter()
            .copied()
            .find(|c| nodes[*c as usize].index == Some(index))
            .unwrap_or(NONE)
    }
}

fn key_length_bit(len: usize) -> u64 {
    1 << len.min(63)
}

/// The first eight bytes of `key`, zero-padded, as a little-endian word.
fn head(key: &[u8]) -> u64 {
    key.iter().take(8).rev().fold(0, |acc, b| (acc << 8) | u64::from(*b))
}

/// Eight bytes as a little-endian word (`chunk` holds at least eight).
#[inline(always)]
fn load(chunk: &[u8]) -> u64 {
    u64::from_le_bytes(chunk[..8].try_into().unwrap_or_default())
}

/// The lexer: a cursor over the document and the facts gathered so far.
struct Scan<'a> {
    b: &'a [u8],
    i: usize,
    has_nul_escape: bool,
    numbers_fit_numeric: bool,
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// The high bit of each byte of `w` that is `"`, `\` or below 0x20. Exact for
/// the lowest such byte (borrows only run towards higher bytes), which is all
/// the caller uses.
#[inline(always)]
fn string_specials(w: u64) -> u64 {
    // `^ 0x02` maps `"` to 0x20 and the control characters onto themselves:
    // both are then the bytes below 0x21.
    let quote_or_control = w ^ (ONES * 0x02);
    let backslash = w ^ (ONES * u64::from(b'\\'));
    ((quote_or_control.wrapping_sub(ONES * 0x21) & !quote_or_control) | (backslash.wrapping_sub(ONES) & !backslash))
        & HIGHS
}

/// How many of the bytes of `w`, lowest first, are ASCII digits before the
/// first that is not (8 when all are).
#[inline(always)]
fn leading_digits(w: u64) -> usize {
    // A byte is a digit when `b ^ 0x30` < 10; the masking keeps carries inside bytes.
    let t = w ^ (ONES * 0x30);
    let non_digits = (((t & !HIGHS) + ONES * 0x76) | t) & HIGHS;
    (non_digits.trailing_zeros() / 8) as usize
}

impl Scan<'_> {
    /// The byte at `i`, 0 past the end (0 is invalid wherever it is looked at).
    #[inline(always)]
    fn at(&self, i: usize) -> u8 {
        self.b.get(i).copied().unwrap_or(0)
    }

    /// Skips the four JSON whitespace bytes; returns the byte after them (0
    /// at the end).
    #[inline(always)]
    fn peek(&mut self) -> u8 {
        match self.at(self.i) {
            c @ 0x21.. => c,
            _ => self.skip_ws(),
        }
    }

    #[cold]
    #[inline(never)]
    fn skip_ws(&mut self) -> u8 {
        while let Some(&c) = self.b.get(self.i) {
            if !matches!(c, b' ' | b'\t' | b'\n' | b'\r') {
                return c;
            }
            self.i += 1;
        }
        0
    }

    /// With `i` just after an opening quote: checks the string and moves just
    /// past its closing quote. Returns whether it holds escapes.
    #[inline(always)]
    fn string(&mut self) -> Result<bool, NotFast> {
        let b = self.b;
        let mut i = self.i;
        let mut escaped = false;
        loop {
            // Find the next `"`, `\` or control character, eight bytes at a time.
            loop {
                let Some(chunk) = b.get(i..i + 8) else {
                    while i < b.len() && !matches!(b[i], b'"' | b'\\' | 0..0x20) {
                        i += 1;
                    }
                    break;
                };
                let mask = string_specials(load(chunk));
                if mask != 0 {
                    i += (mask.trailing_zeros() / 8) as usize;
                    break;
                }
                i += 8;
            }
            match self.at(i) {
                b'"' => {
                    self.i = i + 1;
                    return Ok(escaped);
                }
                b'\\' => {
                    escaped = true;
                    i = self.escape(i)?;
                }
                // A control character, or the end of the document.
                _ => return Err(NotFast),
            }
        }
    }

    /// Checks the escape at the backslash `b[i]`; returns the index after it.
    #[inline(never)]
    fn escape(&mut self, i: usize) -> Result<usize, NotFast> {
        match self.at(i + 1) {
            b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => Ok(i + 2),
            b'u' => {
                let code = hex4(self.b, i + 2).ok_or(NotFast)?;
                self.has_nul_escape |= code == 0;
                if (0xD800..0xDC00).contains(&code) {
                    // A high surrogate must be followed by a low one.
                    if self.b.get(i + 6..i + 8) != Some(b"\\u") {
                        return Err(NotFast);
                    }
                    let low = hex4(self.b, i + 8).ok_or(NotFast)?;
                    if !(0xDC00..0xE000).contains(&low) {
                        return Err(NotFast);
                    }
                    Ok(i + 12)
                } else if (0xDC00..0xE000).contains(&code) {
                    Err(NotFast)
                } else {
                    Ok(i + 6)
                }
            }
            _ => Err(NotFast),
        }
    }

    /// Checks the number starting at `i` (a `-` or a digit) and moves past it.
    #[inline(always)]
    fn number(&mut self) -> Result<(), NotFast> {
        let start = self.i;
        let mut i = start;
        if self.at(i) == b'-' {
            i += 1;
        }
        match self.at(i) {
            b'0' => i += 1,
            b'1'..=b'9' => i = self.digits(i + 1),
            _ => return Err(NotFast),
        }
        if self.at(i) == b'.' {
            let end = self.digits(i + 1);
            if end == i + 1 {
                return Err(NotFast);
            }
            i = end;
        }
        let mut exponent = false;
        if (self.at(i) | 0x20) == b'e' {
            exponent = true;
            i += 1;
            if matches!(self.at(i), b'+' | b'-') {
                i += 1;
            }
            let end = self.digits(i);
            if end == i {
                return Err(NotFast);
            }
            i = end;
        }
        self.i = i;
        let fits = if exponent { number_fits_numeric(&self.b[start..i]) } else { i - start <= 16_000 };
        self.numbers_fit_numeric &= fits;
        Ok(())
    }

    /// The index of the first byte from `i` on that is not a digit.
    #[inline(always)]
    fn digits(&self, mut i: usize) -> usize {
        while let Some(chunk) = self.b.get(i..i + 8) {
            let n = leading_digits(load(chunk));
            i += n;
            if n < 8 {
                return i;
            }
        }
        while self.at(i).is_ascii_digit() {
            i += 1;
        }
        i
    }

    /// Checks that `word` is at `i` and moves past it.
    #[inline(always)]
    fn literal(&mut self, word: &[u8]) -> Result<(), NotFast> {
        if self.b.get(self.i..self.i + word.len()) != Some(word) {
            return Err(NotFast);
        }
        self.i += word.len();
        Ok(())
    }
}

/// Four hex digits at `b[at..]`.
#[inline(always)]
fn hex4(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4)?.iter().try_fold(0u32, |acc, c| Some((acc << 4) | (*c as char).to_digit(16)?))
}

/// Unescapes the content (between the quotes) of a string the scanner has
/// checked into `out`.
#[inline(never)]
fn unescape(content: &str, out: &mut String) -> Result<(), NotFast> {
    out.clear();
    let b = content.as_bytes();
    let mut segment = 0;
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            i += 1;
            continue;
        }
        out.push_str(&content[segment..i]);
        let c = match b.get(i + 1).copied().ok_or(NotFast)? {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let mut code = hex4(b, i + 2).ok_or(NotFast)?;
                i += 4;
                if (0xD800..0xDC00).contains(&code) {
                    let low = hex4(b, i + 4).ok_or(NotFast)?;
                    code = 0x10000 + ((code - 0xD800) << 10) + low.wrapping_sub(0xDC00);
                    i += 6;
                }
                char::from_u32(code).ok_or(NotFast)?
            }
            _ => return Err(NotFast),
        };
        out.push(c);
        i += 2;
        segment = i;
    }
    out.push_str(&content[segment..]);
    Ok(())
}

//! Differential test of the JSON extractors: the byte scanner
//! (`codec::JsonExtractor`) must behave exactly as the sonic-rs walker it
//! replaced (`codec::json::sonic_walker::SonicJsonExtractor`): the same
//! NotFast, or the same facts and the same value in every slot, for `json` and
//! `jsonb`, on
//!
//! - generated documents: random nesting, strings with every escape, surrogate
//!   pairs and lone surrogates, control characters, numbers of every shape,
//!   duplicate keys, whitespace variants, depth around the limit, and random
//!   paths (mostly drawn from the document, so that values are found);
//! - mutations of them: replaced, deleted and inserted characters, truncations,
//!   duplicated and swapped pieces.
//!
//! Extractors are reused across documents, as the row encoder does. The
//! generator is a fixed-seed PRNG: a failure names the document and paths.

use flowserver_engine::codec::json::sonic_walker::{self, SonicJsonExtractor};
use flowserver_engine::codec::json::validate;
use flowserver_engine::codec::{JsonExtractor, JsonKind, JsonPath};

/// SplitMix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// True with probability `percent` / 100 (fractions allowed).
    fn chance(&mut self, percent: f64) -> bool {
        (self.next() % 1_000_000) as f64 <= percent * 10_000.0 - 1.0
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    fn pick_str(&mut self, items: &[&'static str]) -> &'static str {
        items[self.below(items.len())]
    }
}

#[derive(Debug, Clone)]
enum Value {
    /// A scalar as JSON text (possibly invalid on purpose).
    Raw(String),
    /// A string's logical content, escaped at random when rendered.
    Str(String),
    Array(Vec<Value>),
    Object(Vec<(String, Value)>),
}

const KEYS: &[&str] = &[
    "a",
    "b",
    "c",
    "id",
    "k",
    "name",
    "0",
    "1",
    "2",
    "-1",
    "01",
    " 1",
    "+1",
    "x y",
    "é",
    "😀",
    "\"q",
    "a\\b",
    "",
    "long_key_name_over_16",
    "\u{1}",
    "/",
    "ab",
    "ba",
];

/// Characters of generated string content.
const CHARS: &[char] = &[
    'a',
    'b',
    'z',
    'A',
    '0',
    '9',
    ' ',
    ' ',
    '"',
    '\\',
    '/',
    '\n',
    '\t',
    '\r',
    '\u{8}',
    '\u{c}',
    '\u{1}',
    '\u{1f}',
    '\u{7f}',
    'é',
    '€',
    '😀',
    '\u{ffff}',
    '\u{fffd}',
    '\u{10ffff}',
    '\u{800}',
    'u',
    ':',
    ',',
    '{',
    ']',
    'e',
    '-',
];

/// Raw text inserted into a string: escapes that are invalid, lone
/// surrogates (valid json, NotFast here), and raw control characters.
const BAD_STRING_PIECES: &[&str] = &[
    "\\x",
    "\\u12",
    "\\uZZZZ",
    "\\u12G4",
    "\\ud800",
    "\\uDBFF",
    "\\udc00",
    "\\uDFFF",
    "\\ud800\\u0041",
    "\\ud800\\ud800",
    "\\ud800x",
    "\\ud83d\\",
    "\\ud83d\\u",
    "\\ud83d\\ude0",
    "\\ud83d\\uDE00",
    "\u{1}",
    "\t",
    "\n",
    "\u{0}",
    "\\U0041",
    "\\'",
    "\\",
    "\\u0000",
    "\\u0000\\u0000",
];

const BAD_NUMBERS: &[&str] = &[
    "01",
    "-",
    "1.",
    "+1",
    "1e",
    "1e+",
    ".5",
    "-01",
    "1.e5",
    "0x1",
    "1_0",
    "--1",
    "NaN",
    "Infinity",
    "-Infinity",
    "1.5.5",
    "1e5e5",
    "00",
    "-.5",
    "1E",
    "- 1",
    "1e-",
    "0.",
    "-0.",
    "1ee5",
    "tru",
    "nul",
    "True",
    "falsey",
];

const BAD_WHITESPACE: &[&str] = &["\u{c}", "\u{b}", "\u{a0}", "\u{0}", "\u{feff}", "\u{2028}", "\u{85}"];

struct Gen {
    rng: Rng,
    /// Whether this document (or template) may get invalid pieces.
    dirty: bool,
}

impl Gen {
    fn key(&mut self) -> String {
        self.rng.pick_str(KEYS).to_owned()
    }

    fn digits(&mut self, n: usize, out: &mut String) {
        for _ in 0..n {
            out.push(char::from(b'0' + self.rng.below(10) as u8));
        }
    }

    fn number(&mut self) -> String {
        let rng = &mut self.rng;
        if self.dirty && rng.chance(3.0) {
            return rng.pick_str(BAD_NUMBERS).to_owned();
        }
        let mut s = String::new();
        if rng.chance(0.05) {
            // Around numeric's bounds: 16000 characters without exponent,
            // 1000 characters or exponent 1000 with one.
            let len = 15_995 + self.rng.below(10);
            s.push('9');
            self.digits(len - 1, &mut s);
            return s;
        }
        if self.rng.chance(0.1) {
            let len = 990 + self.rng.below(15);
            s.push('1');
            s.push('.');
            self.digits(len - 6, &mut s);
            s.push_str("e1");
            self.digits(2, &mut s);
            return s;
        }
        if self.rng.chance(30.0) {
            s.push('-');
        }
        match self.rng.below(10) {
            0 | 1 => s.push('0'),
            _ => {
                s.push(char::from(b'1' + self.rng.below(9) as u8));
                let n = if self.rng.chance(10.0) { self.rng.below(40) } else { self.rng.below(8) };
                self.digits(n, &mut s);
            }
        }
        if self.rng.chance(30.0) {
            s.push('.');
            let max = if self.rng.chance(10.0) { 30 } else { 6 };
            let n = 1 + self.rng.below(max);
            self.digits(n, &mut s);
        }
        if self.rng.chance(20.0) {
            s.push(*self.rng.pick(&['e', 'E']));
            s.push_str(self.rng.pick_str(&["", "", "+", "-"]));
            match self.rng.below(6) {
                0 => s.push_str(self.rng.pick_str(&["1000", "1001", "0999", "01001", "999999", "4294967296"])),
                _ => {
                    let n = 1 + self.rng.below(4);
                    self.digits(n, &mut s);
                }
            }
        }
        s
    }

    fn string_content(&mut self) -> String {
        let len = match self.rng.below(10) {
            0 => 0,
            1 => 20 + self.rng.below(120),
            _ => self.rng.below(12),
        };
        let plain = self.rng.chance(50.0);
        let nul = self.rng.chance(0.3).then_some('\u{0}');
        (0..len)
            .map(|_| if plain { char::from(b'a' + self.rng.below(26) as u8) } else { *self.rng.pick(CHARS) })
            .chain(nul)
            .collect()
    }

    fn scalar(&mut self) -> Value {
        match self.rng.below(10) {
            0..=3 => Value::Raw(self.number()),
            4..=6 => Value::Str(self.string_content()),
            7 => Value::Raw("true".into()),
            8 => Value::Raw("false".into()),
            _ => Value::Raw("null".into()),
        }
    }

    fn value(&mut self, depth: usize) -> Value {
        if depth >= 4 || !self.rng.chance(if depth == 0 { 85.0 } else { 30.0 }) {
            return self.scalar();
        }
        let n = match self.rng.below(10) {
            0 => 0,
            1 => 8 + self.rng.below(16),
            _ => 1 + self.rng.below(5),
        };
        if self.rng.chance(60.0) {
            let mut members: Vec<(String, Value)> = (0..n).map(|_| (self.key(), self.value(depth + 1))).collect();
            if !members.is_empty() && self.rng.chance(3.0) {
                // A duplicated key, maybe on a path.
                let (k, _) = members[self.rng.below(members.len())].clone();
                let v = self.value(depth + 1);
                members.insert(self.rng.below(members.len() + 1), (k, v));
            }
            Value::Object(members)
        } else {
            Value::Array((0..n).map(|_| self.value(depth + 1)).collect())
        }
    }

    /// Nested arrays and objects around the depth limit, a scalar inside.
    fn deep(&mut self) -> (Value, Vec<String>) {
        let depth = 505 + self.rng.below(12);
        let mut v = self.scalar();
        let mut path = Vec::new();
        for _ in 0..depth {
            if self.rng.chance(50.0) {
                v = Value::Array(vec![v]);
                path.push("0".to_owned());
            } else {
                v = Value::Object(vec![("a".to_owned(), v)]);
                path.push("a".to_owned());
            }
        }
        path.reverse();
        path.truncate(self.rng.below(depth + 1).max(1));
        (v, path)
    }

    fn ws(&mut self, out: &mut String) {
        if self.dirty && self.rng.chance(0.5) {
            out.push_str(self.rng.pick_str(BAD_WHITESPACE));
        } else if self.rng.chance(20.0) {
            out.push_str(self.rng.pick_str(&[" ", "\n", "\t", "\r", "\r\n  ", "    ", " \t\n\r "]));
        }
    }

    fn render_string(&mut self, content: &str, out: &mut String) {
        out.push('"');
        let escape_often = self.rng.chance(30.0);
        for c in content.chars() {
            let escape = self.rng.chance(if escape_often { 50.0 } else { 5.0 });
            let hex = |out: &mut String, unit: u32, upper: bool| {
                if upper {
                    out.push_str(&format!("\\u{unit:04X}"));
                } else {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            };
            let upper = self.rng.chance(50.0);
            match c {
                '"' if !escape => out.push_str("\\\""),
                '\\' if !escape => out.push_str("\\\\"),
                '\u{8}' if !escape => out.push_str("\\b"),
                '\u{c}' if !escape => out.push_str("\\f"),
                '\n' if !escape => out.push_str("\\n"),
                '\r' if !escape => out.push_str("\\r"),
                '\t' if !escape => out.push_str("\\t"),
                '/' if escape && self.rng.chance(50.0) => out.push_str("\\/"),
                c if (c as u32) < 0x20 || escape => {
                    let mut units = [0u16; 2];
                    for unit in c.encode_utf16(&mut units) {
                        hex(out, u32::from(*unit), upper);
                    }
                }
                c => out.push(c),
            }
        }
        if self.dirty && self.rng.chance(3.0) {
            out.push_str(self.rng.pick_str(BAD_STRING_PIECES));
        }
        out.push('"');
    }

    fn render(&mut self, v: &Value, out: &mut String) {
        match v {
            Value::Raw(text) => out.push_str(text),
            Value::Str(content) => self.render_string(content, out),
            Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        self.ws(out);
                        out.push(',');
                    }
                    self.ws(out);
                    self.render(item, out);
                }
                self.ws(out);
                if self.dirty && self.rng.chance(1.0) {
                    out.push(',');
                }
                out.push(']');
            }
            Value::Object(members) => {
                out.push('{');
                for (i, (k, item)) in members.iter().enumerate() {
                    if i > 0 {
                        self.ws(out);
                        out.push(',');
                    }
                    self.ws(out);
                    self.render_string(k, out);
                    self.ws(out);
                    if !(self.dirty && self.rng.chance(0.3)) {
                        out.push(':');
                    }
                    self.ws(out);
                    self.render(item, out);
                }
                self.ws(out);
                out.push('}');
            }
        }
    }

    fn document(&mut self, v: &Value) -> String {
        self.dirty = self.rng.chance(20.0);
        let mut out = String::new();
        self.ws(&mut out);
        self.render(v, &mut out);
        self.ws(&mut out);
        if self.dirty && self.rng.chance(1.0) {
            out.push_str(self.rng.pick_str(&["x", "}", "]", ",", "1", "{}", "\"\""]));
        }
        out
    }

    /// An array index as a path element, in one of the spellings
    /// PostgreSQL's `strtoint` reads (or not).
    fn index_step(&mut self, i: usize) -> String {
        match self.rng.below(40) {
            0 => format!(" {i}"),
            1 => format!("+{i}"),
            2 => format!("0{i}"),
            3 | 4 => "-1".to_owned(),
            5 => format!("{i} "),
            6 => "99999999999".to_owned(),
            _ => i.to_string(),
        }
    }

    /// A path into `v` (usually down to an existing value).
    fn path(&mut self, v: &Value) -> JsonPath {
        let mut steps: Vec<String> = Vec::new();
        let mut current = Some(v);
        while let Some(v) = current.take() {
            if !steps.is_empty() && self.rng.chance(15.0) {
                break;
            }
            match v {
                Value::Object(members) if !members.is_empty() && self.rng.chance(95.0) => {
                    let (k, child) = &members[self.rng.below(members.len())];
                    steps.push(k.clone());
                    current = Some(child);
                }
                Value::Array(items) if !items.is_empty() && self.rng.chance(95.0) => {
                    let i = self.rng.below(items.len() + 1);
                    steps.push(self.index_step(i));
                    current = items.get(i);
                }
                _ => {
                    if self.rng.chance(30.0) || steps.is_empty() {
                        let step = if self.rng.chance(50.0) { self.key() } else { self.index_step(0) };
                        steps.push(step);
                    }
                }
            }
        }
        // `->>'k'` and `#>>'{k}'` on the same number-like key make the set
        // always slow (see `paths`): keep that rare.
        let number_like = steps.first().is_some_and(|s| s.bytes().any(|b| b.is_ascii_digit()));
        if steps.len() == 1 && !number_like && self.rng.chance(50.0) {
            JsonPath::key(&steps[0])
        } else {
            let refs: Vec<&str> = steps.iter().map(String::as_str).collect();
            JsonPath::elements(&refs)
        }
    }

    fn paths(&mut self, template: &Value) -> Vec<JsonPath> {
        let count = if self.rng.chance(10.0) { 0 } else { 1 + self.rng.below(6) };
        let mut paths: Vec<JsonPath> = (0..count).map(|_| self.path(template)).collect();
        if self.rng.chance(1.0) {
            paths.push(JsonPath(Vec::new()));
        }
        if self.rng.chance(1.0) {
            paths.push(JsonPath::key("0"));
            paths.push(JsonPath::elements(&["0"]));
        }
        paths
    }

    /// A mutation of `doc`, on character boundaries.
    fn mutate(&mut self, doc: &str) -> String {
        const PIECES: &[&str] = &[
            ",", "\"", "\\", "\\u", "\\ud800", "}", "]", "[", "{", ":", "-", "0", "1", "e", ".", " ", "\u{0}", "é",
            "\n", "\u{1}", "\\n", "\\u0000", "null", "tru", "\"a\":1", "[]", "{}", "\u{c}",
        ];
        let bounds: Vec<usize> = doc.char_indices().map(|(i, _)| i).chain([doc.len()]).collect();
        let at = |rng: &mut Rng| bounds[rng.below(bounds.len())];
        let mut out = doc.to_owned();
        for _ in 0..1 + self.rng.below(2) {
            let bounds: Vec<usize> = out.char_indices().map(|(i, _)| i).chain([out.len()]).collect();
            let pos = bounds[self.rng.below(bounds.len())];
            let next = bounds.iter().copied().find(|b| *b > pos).unwrap_or(pos);
            match self.rng.below(7) {
                // Replace one character.
                0 | 1 => out.replace_range(pos..next, self.rng.pick_str(PIECES)),
                // Delete one.
                2 => out.replace_range(pos..next, ""),
                // Insert.
                3 | 4 => out.insert_str(pos, self.rng.pick_str(PIECES)),
                // Truncate.
                5 => out.truncate(pos),
                // Duplicate a piece of the original, or swap two characters.
                _ => {
                    if self.rng.chance(50.0) {
                        let (a, b) = (at(&mut self.rng), at(&mut self.rng));
                        let piece = doc[a.min(b)..a.max(b)].to_owned();
                        out.insert_str(pos, &piece);
                    } else if next < out.len() {
                        let after = out[next..].chars().next().map_or(0, char::len_utf8);
                        let (first, second) = (out[pos..next].to_owned(), out[next..next + after].to_owned());
                        out.replace_range(pos..next + after, &(second + &first));
                    }
                }
            }
        }
        out
    }
}

/// The four extractors (scanner and walker, json and jsonb) of one path set.
struct Pair {
    paths: Vec<JsonPath>,
    new: [JsonExtractor; 2],
    old: [SonicJsonExtractor; 2],
    slots: Vec<usize>,
}

const KINDS: [JsonKind; 2] = [JsonKind::Json, JsonKind::Jsonb];

impl Pair {
    fn new(paths: Vec<JsonPath>) -> Self {
        let mut new = KINDS.map(JsonExtractor::new);
        let mut old = KINDS.map(SonicJsonExtractor::new);
        let mut slots = Vec::new();
        for path in &paths {
            let slot = new[0].add_path(path);
            assert_eq!(new[1].add_path(path), slot, "{paths:?}");
            assert_eq!(old[0].add_path(path), slot, "{paths:?}");
            assert_eq!(old[1].add_path(path), slot, "{paths:?}");
            slots.push(slot);
        }
        assert_eq!(new[0].slot_count(), old[0].slot_count());
        Pair { paths, new, old, slots }
    }
}

#[derive(Debug, Default)]
struct Stats {
    documents: usize,
    ok: [usize; 2],
    not_fast: [usize; 2],
    values: usize,
    nul: usize,
    not_numeric: usize,
}

/// Compares both implementations on `doc`, with `pair`'s paths and without.
fn check(pair: &mut Pair, doc: &str, stats: &mut Stats) {
    stats.documents += 1;
    for (k, kind) in KINDS.into_iter().enumerate() {
        let new = pair.new[k].extract(doc);
        let old = pair.old[k].extract(doc);
        assert_eq!(new, old, "{kind:?} {doc:?} with {:?}", pair.paths);
        match new {
            Ok(facts) => {
                stats.ok[k] += 1;
                stats.nul += usize::from(facts.has_nul_escape);
                stats.not_numeric += usize::from(!facts.numbers_fit_numeric);
                for slot in &pair.slots {
                    let value = pair.new[k].value(doc, *slot);
                    let expected = pair.old[k].value(doc, *slot);
                    assert_eq!(value, expected, "{kind:?} {doc:?} slot {slot} of {:?}", pair.paths);
                    stats.values += usize::from(value.is_some());
                }
            }
            Err(_) => stats.not_fast[k] += 1,
        }
        assert_eq!(validate(doc, kind), sonic_walker::validate(doc, kind), "{kind:?} {doc:?}");
    }
}

/// Hand-written documents at the edges of the rules.
const EDGE_CASES: &[&str] = &[
    r#"{"a":"\u0000"}"#,
    r#"{"a":"\\u0000"}"#,
    r#"{"\u0000":1}"#,
    r#"{"a":"\ud83d\ude00"}"#,
    r#"{"a":"\uD83D\uDE00\u00e9\u20AC"}"#,
    r#"{"a":"\ud800"}"#,
    r#"{"a":"\udc00"}"#,
    r#"{"a":"\ud800\udc00\udc00"}"#,
    r#"{"a":"\"\\\/\b\f\n\r\t"}"#,
    r#"{"\u0061":1,"a":2}"#,
    r#"{"a":1,"\u0061":2}"#,
    r#"{"a":-0,"b":-0.0,"c":-0e0,"d":0.0,"e":-0.5}"#,
    r#"[1e1000,1e1001,1E+1000,1e-1000,1e-1001]"#,
    r#"{"a":[1,2,[3,4,{"b":5}]]}"#,
    r#"{"a":{"a":{"a":1}}}"#,
    r#"[[[[]]],{},[{}],{"":""}]"#,
    " \t\n\r{ \"a\" : [ 1 , 2 ] , \"b\" : { } } \r\n\t ",
    "{\"a\":1}\u{0}",
    "\u{feff}{\"a\":1}",
    r#"{"a":"x","a":"y"}"#,
    r#"[{"a":1},{"a":2},{"a":3,"a":4}]"#,
    r#"{"0":"zero","1":"one"}"#,
    r#"["zero","one",{"0":"x"}]"#,
    r#""just a string""#,
    "123",
    "-0",
    "null",
    "true",
    "false",
    r#"{"a":truefalse}"#,
    r#"{"a":nulll}"#,
    r#"{"a":01}"#,
    r#"{"a":1.}"#,
    r#"{"a":.1}"#,
    r#"{"a":1e}"#,
    r#"{"a":+1}"#,
    r#"{"a":"\x"}"#,
    r#"{"a":"\u00"}"#,
    r#"{"a":"\u00G0"}"#,
    "{\"a\":\"\u{1}\"}",
    "{\"a\":\"\u{7f}\"}",
];

#[test]
fn scanner_matches_the_sonic_walker() {
    let mut g = Gen { rng: Rng(0x5EED_F10E_5E4F_0001), dirty: false };
    let mut generated = Stats::default();
    let mut mutated = Stats::default();

    // Edge cases with a few path sets.
    let edge_paths = [
        vec![JsonPath::key("a")],
        vec![JsonPath::key("a"), JsonPath::key("b"), JsonPath::key("c"), JsonPath::key("d"), JsonPath::key("e")],
        vec![JsonPath::elements(&["a", "2", "2", "b"]), JsonPath::elements(&["0"]), JsonPath::elements(&["2", "0"])],
        vec![JsonPath::elements(&["a", "a", "a"]), JsonPath::elements(&["1", "a"]), JsonPath::key("0")],
        vec![],
    ];
    for paths in edge_paths {
        let mut pair = Pair::new(paths);
        for doc in EDGE_CASES {
            check(&mut pair, doc, &mut generated);
        }
    }

    // Generated documents, in batches sharing extractors and paths drawn
    // from the batch's template.
    const BATCHES: usize = 10_000;
    const PER_BATCH: usize = 20;
    for _ in 0..BATCHES {
        g.dirty = g.rng.chance(15.0);
        let (template, deep_path) = if g.rng.chance(0.5) { g.deep() } else { (g.value(0), Vec::new()) };
        let mut paths = g.paths(&template);
        if !deep_path.is_empty() {
            let refs: Vec<&str> = deep_path.iter().map(String::as_str).collect();
            paths.push(JsonPath::elements(&refs));
        }
        let mut pair = Pair::new(paths);
        for i in 0..PER_BATCH {
            // Mostly the template re-rendered (new whitespace and escapes),
            // sometimes another document.
            let value = if i % 5 == 4 {
                g.dirty = g.rng.chance(15.0);
                g.value(0)
            } else {
                template.clone()
            };
            let doc = g.document(&value);
            check(&mut pair, &doc, &mut generated);
            let mutation = g.mutate(&doc);
            check(&mut pair, &mutation, &mut mutated);
        }
    }

    eprintln!("generated: {generated:?}");
    eprintln!("mutated: {mutated:?}");
    assert!(generated.documents >= 200_000);
    assert!(mutated.documents >= 200_000);
    // The corpus exercises both outcomes and real values.
    let ok = |stats: &Stats, kind: usize, percent: usize| stats.ok[kind] * 100 > stats.documents * percent;
    assert!(ok(&generated, 0, 65) && ok(&generated, 1, 45), "{generated:?}");
    assert!(generated.not_fast[0] * 100 > generated.documents * 10, "{generated:?}");
    assert!(generated.values > generated.documents, "{generated:?}");
    assert!(generated.nul > 100 && generated.not_numeric > 1000, "{generated:?}");
    // Most mutations break the document; the ones that do not (about one
    // in ten) are the interesting near-misses, so a few percent must remain.
    assert!(ok(&mutated, 0, 5) && ok(&mutated, 1, 5), "{mutated:?}");
    assert!(mutated.values > mutated.documents / 10, "{mutated:?}");
}

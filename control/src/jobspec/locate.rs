//! Where things are in a job file: key paths, their lines, and the YAML checks
//! that come before serde.
//!
//! [`Document::parse`] drives yaml-rust2's marked event parser over the whole file
//! once and keeps a small tree of nodes with the line of every key and list item.
//! Building it also catches what serde would report late or without a useful line:
//! syntax errors, duplicate keys (at the second occurrence), an empty file and a
//! file with more than one document. Later errors, from serde or from validation,
//! carry only a [`KeyPath`]; [`Problem::into_error`] looks the path up here.
//!
//! The tree keeps no scalar values and never expands aliases (an alias shares its
//! anchor's node), so its size is linear in the file's. Building it is linear
//! too: a mapping's keys are hashed, so the duplicate check of each key and the
//! lookup of each path step cost the same in a mapping of 100,000 entries as
//! in one of two.

use std::collections::HashMap;
use std::fmt;

use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::Marker;

use super::JobFileError;

/// One step of a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Segment {
    Key(String),
    Index(usize),
}

/// A dotted key path with list indexes: `target.database.tables[0].mapping`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct KeyPath(Vec<Segment>);

impl KeyPath {
    pub(crate) fn root() -> KeyPath {
        KeyPath(Vec::new())
    }

    /// This path followed by a key.
    pub(crate) fn key(&self, key: &str) -> KeyPath {
        let mut segments = self.0.clone();
        segments.push(Segment::Key(key.to_owned()));
        KeyPath(segments)
    }

    /// This path followed by a list index.
    pub(crate) fn index(&self, index: usize) -> KeyPath {
        let mut segments = self.0.clone();
        segments.push(Segment::Index(index));
        KeyPath(segments)
    }

    pub(crate) fn push(&mut self, segment: Segment) {
        self.0.push(segment);
    }

    pub(crate) fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn segments(&self) -> &[Segment] {
        &self.0
    }

    /// The path without its last step (the root stays the root).
    pub(crate) fn parent(&self) -> KeyPath {
        let mut segments = self.0.clone();
        segments.pop();
        KeyPath(segments)
    }

    /// The dotted form with list indexes left out (`target.database.tables.mode`),
    /// which names the kind of mapping a path leads to.
    pub(crate) fn shape(&self) -> String {
        let keys: Vec<&str> = self
            .0
            .iter()
            .filter_map(|segment| match segment {
                Segment::Key(key) => Some(key.as_str()),
                Segment::Index(_) => None,
            })
            .collect();
        keys.join(".")
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (position, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Key(key) if position == 0 => write!(f, "{key}")?,
                Segment::Key(key) => write!(f, ".{key}")?,
                Segment::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

/// A problem found at a key path, before the line is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem {
    pub(crate) path: KeyPath,
    pub(crate) reason: String,
    /// The line, when the finder knows it (syntax errors).
    pub(crate) line: Option<usize>,
    /// A line to use when the path is not in the document (serde's location).
    pub(crate) fallback_line: Option<usize>,
}

impl Problem {
    pub(crate) fn at(path: KeyPath, reason: impl Into<String>) -> Problem {
        Problem { path, reason: reason.into(), line: None, fallback_line: None }
    }

    /// The user-facing error, with the line of the path's key in `document`.
    pub(crate) fn into_error(self, file: &str, document: Option<&Document>) -> JobFileError {
        let located = document.and_then(|document| document.line_of(&self.path));
        JobFileError {
            file: file.to_owned(),
            path: self.path.to_string(),
            line: self.line.or(located).or(self.fallback_line),
            reason: self.reason,
        }
    }
}

/// `bytes` as text, or where they stop being UTF-8.
pub(crate) fn text_of(bytes: &[u8]) -> Result<&str, Problem> {
    std::str::from_utf8(bytes).map_err(|error| {
        let valid = bytes.get(..error.valid_up_to()).unwrap_or_default();
        // The valid prefix is UTF-8 by definition; count its lines and characters.
        let before = std::str::from_utf8(valid).unwrap_or_default();
        let (line, column) = line_and_column(before, before.len());
        let byte = bytes.get(error.valid_up_to()).copied().unwrap_or_default();
        Problem {
            path: KeyPath::root(),
            reason: format!("not a YAML text file: invalid UTF-8 (byte 0x{byte:02x}) at column {column}"),
            line: Some(line),
            fallback_line: None,
        }
    })
}

/// Refuses a character YAML does not allow anywhere in a file (outside its
/// printable set: C0 and C1 controls but tab, line breaks and NEL; DEL;
/// U+FFFE and U+FFFF). Without this check a NUL byte ends yaml-rust2's input,
/// and a file of NULs would be "empty".
pub(crate) fn check_printable(text: &str) -> Result<(), Problem> {
    let printable = |c: char| {
        matches!(c, '\t' | '\n' | '\r' | '\u{85}')
            || (' '..='~').contains(&c)
            || ('\u{a0}'..='\u{fffd}').contains(&c)
            || c >= '\u{10000}'
    };
    let Some((offset, found)) = text.char_indices().find(|(_, c)| !printable(*c)) else {
        return Ok(());
    };
    let (line, column) = line_and_column(text, offset);
    let what = if found == '\0' {
        "a NUL byte".to_owned()
    } else {
        format!("the control character U+{:04X}", u32::from(found))
    };
    Err(Problem {
        path: KeyPath::root(),
        reason: format!("not a YAML text file: {what} at column {column}"),
        line: Some(line),
        fallback_line: None,
    })
}

/// The 1-based line and character column of byte `offset` of `text` (a
/// character boundary), lines ended by LF.
fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
    let line = before.bytes().filter(|byte| *byte == b'\n').count() + 1;
    let column = before.get(line_start..).map_or(0, |line| line.chars().count()) + 1;
    (line, column)
}

/// Why [`Document::parse`] failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ParseError {
    /// yaml-rust2 cannot read the text. serde_yaml (libyaml) decides what is
    /// YAML, so the caller asks it before reporting this.
    Syntax(Problem),
    /// The text is YAML but not one non-empty document without duplicate keys.
    Invalid(Problem),
}

type NodeId = usize;

/// Each child as (node, line of its key or list item).
#[derive(Debug)]
enum Node {
    Scalar,
    Sequence {
        items: Vec<(NodeId, usize)>,
    },
    /// Entries by their scalar key; an entry whose key is a list or a mapping
    /// cannot be named by a key path and is left out.
    Mapping {
        entries: HashMap<String, (NodeId, usize)>,
    },
}

/// An open list or mapping while the events are read.
#[derive(Debug)]
struct Frame {
    node: NodeId,
    /// How the parent reaches this node.
    segment: Option<Segment>,
    /// Line of the node's first event.
    line: usize,
    items: Vec<(NodeId, usize)>,
    entries: HashMap<String, (NodeId, usize)>,
    /// For a mapping: the key read, waiting for its value (`None` for a key
    /// that is itself a list or a mapping).
    pending_key: Option<(Option<String>, usize)>,
    is_mapping: bool,
}

/// The YAML tree of a job file, for finding the line of a key path.
#[derive(Debug)]
pub(crate) struct Document {
    nodes: Vec<Node>,
    root: NodeId,
}

impl Document {
    /// Reads `text` as one YAML document.
    ///
    /// Fails on invalid YAML, an empty document, more than one document and
    /// duplicate keys in a mapping.
    pub(crate) fn parse(text: &str) -> Result<Document, ParseError> {
        let mut builder =
            Builder { nodes: Vec::new(), anchors: HashMap::new(), frames: Vec::new(), root: None, root_is_null: false };
        let mut parser = Parser::new_from_str(text);
        let mut documents = 0usize;
        loop {
            let (event, mark) = parser.next_token().map_err(|error| {
                ParseError::Syntax(Problem {
                    path: KeyPath::root(),
                    reason: format!("invalid YAML: {}", error.info()),
                    line: Some(error.marker().line()),
                    fallback_line: None,
                })
            })?;
            match event {
                Event::StreamEnd => break,
                Event::DocumentStart => {
                    documents += 1;
                    if documents > 1 {
                        return Err(ParseError::Invalid(Problem {
                            path: KeyPath::root(),
                            reason: "invalid YAML: more than one document".to_owned(),
                            line: Some(mark.line()),
                            fallback_line: None,
                        }));
                    }
                }
                other => builder.event(other, mark).map_err(ParseError::Invalid)?,
            }
        }
        match builder.root {
            // Any other scalar document is the wrong type: serde says so, with its line.
            Some(root) if !builder.root_is_null => Ok(Document { nodes: builder.nodes, root }),
            _ => Err(ParseError::Invalid(Problem::at(KeyPath::root(), "empty job file"))),
        }
    }

    /// The 1-based line of the last key (or list item) of `path`; when the path
    /// leaves the document, the line of the deepest part that exists. `None` for
    /// the root.
    pub(crate) fn line_of(&self, path: &KeyPath) -> Option<usize> {
        let mut node = self.root;
        let mut line = None;
        for segment in path.segments() {
            let next = match (&self.nodes[node], segment) {
                (Node::Mapping { entries }, Segment::Key(key)) => entries.get(key).copied(),
                (Node::Sequence { items }, Segment::Index(index)) => items.get(*index).copied(),
                _ => None,
            };
            match next {
                Some((child, child_line)) => {
                    node = child;
                    line = Some(child_line);
                }
                None => break,
            }
        }
        line
    }
}

struct Builder {
    nodes: Vec<Node>,
    anchors: HashMap<usize, NodeId>,
    frames: Vec<Frame>,
    root: Option<NodeId>,
    /// The document is a null scalar (`~`, `null` or nothing).
    root_is_null: bool,
}

impl Builder {
    fn event(&mut self, event: Event, mark: Marker) -> Result<(), Problem> {
        match event {
            Event::Scalar(value, _, anchor, _) => {
                let node = self.new_node(Node::Scalar, anchor);
                self.attach(node, mark.line(), Some(value))
            }
            Event::Alias(anchor) => match self.anchors.get(&anchor).copied() {
                Some(node) => self.attach(node, mark.line(), None),
                // The parser rejects unknown aliases; stay total anyway.
                None => {
                    let node = self.new_node(Node::Scalar, 0);
                    self.attach(node, mark.line(), None)
                }
            },
            Event::SequenceStart(anchor, _) => {
                self.open(anchor, mark.line(), false);
                Ok(())
            }
            Event::MappingStart(anchor, _) => {
                self.open(anchor, mark.line(), true);
                Ok(())
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let Some(frame) = self.frames.pop() else {
                    return Ok(());
                };
                self.nodes[frame.node] = if frame.is_mapping {
                    Node::Mapping { entries: frame.entries }
                } else {
                    Node::Sequence { items: frame.items }
                };
                self.attach(frame.node, frame.line, None)
            }
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentStart | Event::DocumentEnd => {
                Ok(())
            }
        }
    }

    fn new_node(&mut self, node: Node, anchor: usize) -> NodeId {
        self.nodes.push(node);
        let id = self.nodes.len() - 1;
        if anchor != 0 {
            self.anchors.insert(anchor, id);
        }
        id
    }

    fn open(&mut self, anchor: usize, line: usize, is_mapping: bool) {
        let segment = self.next_segment();
        let node = self.new_node(Node::Scalar, anchor);
        self.frames.push(Frame {
            node,
            segment,
            line,
            items: Vec::new(),
            entries: HashMap::new(),
            pending_key: None,
            is_mapping,
        });
    }

    /// The segment that the next node will be reached by from its parent.
    fn next_segment(&self) -> Option<Segment> {
        let frame = self.frames.last()?;
        if frame.is_mapping {
            match &frame.pending_key {
                Some((Some(key), _)) => Some(Segment::Key(key.clone())),
                _ => None,
            }
        } else {
            Some(Segment::Index(frame.items.len()))
        }
    }

    /// Hands a finished node to its parent: a list item, a mapping key or a
    /// mapping value. `key_text` is the scalar's text, for keys.
    fn attach(&mut self, node: NodeId, line: usize, key_text: Option<String>) -> Result<(), Problem> {
        let Some(frame) = self.frames.last() else {
            self.root = Some(node);
            self.root_is_null = matches!(key_text.as_deref(), Some("" | "~" | "null" | "Null" | "NULL"));
            return Ok(());
        };
        if let (true, None, Some(key)) = (frame.is_mapping, &frame.pending_key, &key_text)
            && frame.entries.contains_key(key)
        {
            let mut path = KeyPath::root();
            for segment in self.frames.iter().filter_map(|frame| frame.segment.clone()) {
                path.push(segment);
            }
            return Err(Problem {
                path: path.key(key),
                reason: "duplicate key".to_owned(),
                line: Some(line),
                fallback_line: None,
            });
        }
        let Some(frame) = self.frames.last_mut() else {
            return Ok(());
        };
        if !frame.is_mapping {
            frame.items.push((node, line));
            return Ok(());
        }
        match frame.pending_key.take() {
            Some((key, key_line)) => {
                if let Some(key) = key {
                    frame.entries.insert(key, (node, key_line));
                }
                Ok(())
            }
            None => {
                frame.pending_key = Some((key_text, line));
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(segments: &[Segment]) -> KeyPath {
        KeyPath(segments.to_vec())
    }

    fn key(name: &str) -> Segment {
        Segment::Key(name.to_owned())
    }

    const TEXT: &str = "\
version: v1.0
source:
  kafka:
    brokers:
      - a:9092
      - b:9092
    anchored: &shared
      x: 1
    aliased: *shared
target:
  database:
    tables:
    - table: one
      mode:
        insert: {}
    - table: two
";

    #[test]
    fn finds_lines_of_keys_and_items() {
        let document = Document::parse(TEXT).expect("valid yaml");
        assert_eq!(document.line_of(&KeyPath::root()), None);
        assert_eq!(document.line_of(&path(&[key("version")])), Some(1));
        assert_eq!(document.line_of(&path(&[key("source"), key("kafka")])), Some(3));
        assert_eq!(document.line_of(&path(&[key("source"), key("kafka"), key("brokers"), Segment::Index(1)])), Some(6));
        assert_eq!(document.line_of(&path(&[key("source"), key("kafka"), key("aliased"), key("x")])), Some(8));
        let tables = path(&[key("target"), key("database"), key("tables")]);
        assert_eq!(document.line_of(&tables.index(1)), Some(16));
        assert_eq!(document.line_of(&tables.index(0).key("mode").key("insert")), Some(15));
        // Past the end of the document: the deepest part that exists.
        assert_eq!(document.line_of(&tables.index(1).key("mode").key("merge")), Some(16));
    }

    #[test]
    fn reports_duplicates_at_the_second_key() {
        let Err(ParseError::Invalid(problem)) = Document::parse("a:\n  b: 1\n  c: 2\n  b: 3\n") else {
            panic!("duplicate key accepted")
        };
        assert_eq!(problem.path.to_string(), "a.b");
        assert_eq!(problem.line, Some(4));
        assert_eq!(problem.reason, "duplicate key");
    }

    #[test]
    fn reports_syntax_errors_and_document_counts() {
        let Err(ParseError::Syntax(problem)) = Document::parse("a: b: c\n") else { panic!("syntax accepted") };
        assert_eq!(problem.line, Some(1));
        assert!(problem.reason.starts_with("invalid YAML: "), "{}", problem.reason);
        let Err(ParseError::Invalid(problem)) = Document::parse("a: 1\n---\nb: 2\n") else {
            panic!("two documents accepted")
        };
        assert_eq!(problem.reason, "invalid YAML: more than one document");
        assert_eq!(problem.line, Some(2));
        let Err(ParseError::Invalid(problem)) = Document::parse("# nothing\n") else { panic!("empty accepted") };
        assert_eq!(problem.reason, "empty job file");
    }

    #[test]
    fn displays_paths() {
        let p = KeyPath::root().key("target").key("database").key("tables").index(0).key("mapping");
        assert_eq!(p.to_string(), "target.database.tables[0].mapping");
        assert_eq!(p.shape(), "target.database.tables.mapping");
        assert_eq!(p.parent().to_string(), "target.database.tables[0]");
    }
}
